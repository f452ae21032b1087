import { chmodSync, existsSync, mkdirSync, readdirSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { execFileSync } from "node:child_process";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import { EngineError } from "../../engine/errors.js";
import { Head } from "../../engine/runtime/head.js";
import { ScratchDir } from "../../engine/runtime/scratch.js";
import { Shard } from "../../engine/runtime/shard.js";
import { randomModel, scratchDir } from "./helpers.js";

const scratch = scratchDir();
afterAll(() => scratch.cleanup());
const root = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const uidDir = `efed-${process.getuid!()}`;

function expectScratchError(fn: () => unknown, message: string | RegExp): void {
  let caught: unknown;
  try {
    fn();
  } catch (err) {
    caught = err;
  }
  expect(caught).toBeInstanceOf(EngineError);
  expect((caught as EngineError).code).toBe("SCRATCH_UNAVAILABLE");
  expect((caught as Error).message).toMatch(message);
}

describe("graph scratch directories", () => {
  it("are private (0700, under a 0700 per-user directory), and gone once the session has loaded the graph", async () => {
    const base = join(scratch.dir, "base");
    mkdirSync(base);
    const dir = ScratchDir.create(base);
    const parent = join(base, uidDir);
    expect(statSync(parent).mode & 0o777).toBe(0o700);
    expect(statSync(dir.path).mode & 0o777).toBe(0o700);
    dir.remove();
    const model = randomModel(scratch.dir, "m");
    const shard = await Shard.load(model, 0, model.config.numLayers, { scratchDir: base });
    const head = await Head.load(model, { scratchDir: base });
    expect(readdirSync(parent)).toEqual([]);
    // and the sessions still run from what ORT loaded
    const out = await head.logits(await shard.compute(head.embed([1, 2]), shard.newCache()));
    expect(out.length).toBe(2 * model.config.vocabSize);
    expect(out.every(Number.isFinite)).toBe(true);
    await shard.release();
    await head.release();
  });

  it("are removed at process exit when never released, and by remove() twice without error", () => {
    const base = join(scratch.dir, "exit");
    mkdirSync(base);
    const script = `import { ScratchDir } from ${JSON.stringify(join(root, "engine/runtime/scratch.ts"))};
      const d = ScratchDir.create(${JSON.stringify(base)}); console.log(d.path); process.exit(0);`;
    const path = execFileSync(process.execPath, ["--import", "tsx", "--input-type=module", "-e", script], { encoding: "utf8", cwd: root }).trim();
    expect(path.startsWith(join(base, uidDir, "graph-"))).toBe(true);
    expect(existsSync(path)).toBe(false);

    const dir = ScratchDir.create(base);
    expect(existsSync(dir.path)).toBe(true);
    dir.remove();
    dir.remove();
    expect(existsSync(dir.path)).toBe(false);
  });

  it("refuse a base that cannot hold one, a per-user directory open to others, and a symbolic link in its place", () => {
    const file = join(scratch.dir, "a-file");
    writeFileSync(file, "");
    expectScratchError(() => ScratchDir.create(file), new RegExp(`cannot use ${file}/${uidDir} for graph scratch files: ENOTDIR`));

    const open = join(scratch.dir, "open");
    mkdirSync(join(open, uidDir), { recursive: true });
    chmodSync(join(open, uidDir), 0o755);
    expectScratchError(() => ScratchDir.create(open), "its mode is 755, open to other users (expected 700)");

    const linked = join(scratch.dir, "linked");
    mkdirSync(linked);
    const target = join(scratch.dir, "target");
    mkdirSync(target, { mode: 0o700 });
    symlinkSync(target, join(linked, uidDir));
    expectScratchError(() => ScratchDir.create(linked), "it is not a directory (or is a symbolic link)");
    expect(readdirSync(target)).toEqual([]);
  });

  it("a failed load leaves no scratch directory behind", async () => {
    const base = join(scratch.dir, "failed");
    mkdirSync(base);
    const model = randomModel(scratch.dir, "m2");
    // threads is checked when the session is created: after the graph files are written
    await expect(Shard.load(model, 0, 1, { scratchDir: base, threads: 0 })).rejects.toThrow("threads must be an integer in 1..256, got 0");
    expect(readdirSync(join(base, uidDir))).toEqual([]);
  });
});
