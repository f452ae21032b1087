import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";

const run = promisify(execFile);
const bin = new URL("../../bin/efed.mjs", import.meta.url).pathname;

describe("efed CLI", () => {
  it("prints help naming the command and exits 0", async () => {
    const { stdout } = await run(process.execPath, [bin, "--help"]);
    expect(stdout).toContain("Usage: efed [options] [command]");
    expect(stdout).toContain("--version");
  });

  it("prints the package version", async () => {
    const { stdout } = await run(process.execPath, [bin, "--version"]);
    expect(stdout.trim()).toBe("0.1.0");
  });

  it("rejects an unknown option with a non-zero exit and a message naming it", async () => {
    const err = await run(process.execPath, [bin, "--frobnicate"]).then(
      () => undefined,
      (e: unknown) => e as { code: number; stderr: string },
    );
    expect(err?.code).toBe(1);
    expect(err?.stderr).toContain("unknown option '--frobnicate'");
  });
});
