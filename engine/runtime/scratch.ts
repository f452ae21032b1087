import { lstatSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { EngineError } from "../errors.js";

/** Scratch directories not yet removed; removed at process exit if their owner never released them. */
const live = new Set<string>();
let exitHookInstalled = false;

function removeLive(): void {
  for (const dir of live) rmSync(dir, { recursive: true, force: true });
  live.clear();
}

/**
 * A private directory for a session's graph files (model protobuf and weight data): created under
 * `<base>/efed-<uid>` (base: os.tmpdir()), which must be a real directory owned by this user with
 * no access for others; each scratch directory inside is made by mkdtemp (mode 0700, unique name),
 * so another local user can neither read the weights nor plant files or links in our way.
 */
export class ScratchDir {
  readonly path: string;

  private constructor(path: string) {
    this.path = path;
  }

  static create(base: string = tmpdir()): ScratchDir {
    const parent = join(base, `efed-${process.getuid?.() ?? "user"}`);
    const fail = (why: string, cause?: unknown): never => {
      throw new EngineError("SCRATCH_UNAVAILABLE", `cannot use ${parent} for graph scratch files: ${why}`, {
        path: parent,
        ...(cause === undefined ? {} : { cause: (cause as Error).message }),
      });
    };
    try {
      mkdirSync(parent, { mode: 0o700 });
    } catch (cause) {
      if ((cause as NodeJS.ErrnoException).code !== "EEXIST") fail((cause as Error).message, cause);
    }
    let stat;
    try {
      stat = lstatSync(parent);
    } catch (cause) {
      return fail((cause as Error).message, cause);
    }
    if (!stat.isDirectory()) fail("it is not a directory (or is a symbolic link)");
    const uid = process.getuid?.();
    if (uid !== undefined && stat.uid !== uid) fail(`it is owned by uid ${stat.uid}, not by this user (uid ${uid})`);
    if ((stat.mode & 0o077) !== 0) fail(`its mode is ${(stat.mode & 0o777).toString(8)}, open to other users (expected 700)`);
    let path: string;
    try {
      path = mkdtempSync(join(parent, "graph-"));
    } catch (cause) {
      return fail((cause as Error).message, cause);
    }
    if (!exitHookInstalled) {
      process.on("exit", removeLive);
      exitHookInstalled = true;
    }
    live.add(path);
    return new ScratchDir(path);
  }

  file(name: string): string {
    return join(this.path, name);
  }

  /** Deletes the directory and everything in it; safe to call twice. */
  remove(): void {
    rmSync(this.path, { recursive: true, force: true });
    live.delete(this.path);
  }
}
