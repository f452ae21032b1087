import { execFile, spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";

export const EFED_BIN = fileURLToPath(new URL("../../bin/efed.mjs", import.meta.url));

/** `efed server ARGS` in a child process (with `env` added to this one's); resolves with what it prints once listening. */
export function spawnEfedServer(args: readonly string[], children: ChildProcess[], env: Readonly<Record<string, string>> = {}): Promise<{ url: string; address: string }> {
  // each server gets its own data directory (its key file and default store), removed when it exits
  const dataDir = mkdtempSync(join(tmpdir(), "efed-server-"));
  const child = spawn(process.execPath, [EFED_BIN, "server", ...args], {
    env: { ...process.env, EFED_LOG_LEVEL: "warn", EFED_DATA_DIR: dataDir, ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  child.once("exit", () => rmSync(dataDir, { recursive: true, force: true }));
  children.push(child);
  return new Promise((resolve, reject) => {
    let out = "";
    let err = "";
    child.stdout!.on("data", (d: Buffer) => {
      out += d.toString();
      const line = out.split("\n").find((l) => l.includes('"listening"'));
      if (line !== undefined) resolve(JSON.parse(line) as { url: string; address: string });
    });
    child.stderr!.on("data", (d: Buffer) => (err += d.toString()));
    child.once("exit", (code) => reject(new Error(`efed server exited with ${code}: ${err}`)));
  });
}

/**
 * Stops a child process with SIGTERM and waits for it to exit; one still running after `killAfterMs`
 * gets SIGKILL (cleanup must end: tests of graceful shutdown check the exit themselves).
 */
export function stopProcess(child: ChildProcess, killAfterMs = 8_000): Promise<void> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve();
    const timer = setTimeout(() => child.kill("SIGKILL"), killAfterMs);
    child.once("exit", () => {
      clearTimeout(timer);
      resolve();
    });
    child.kill("SIGTERM");
  });
}

/** Runs `efed ARGS…` to completion; resolves with its output and exit code (0 on success). */
export async function runEfed(...args: string[]): Promise<{ stdout: string; stderr: string; code: number }> {
  try {
    const { stdout, stderr } = await promisify(execFile)(process.execPath, [EFED_BIN, ...args]);
    return { stdout, stderr, code: 0 };
  } catch (err) {
    const e = err as { stdout: string; stderr: string; code: number };
    return { stdout: e.stdout, stderr: e.stderr, code: e.code };
  }
}
