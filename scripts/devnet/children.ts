import { spawn, type ChildProcess } from "node:child_process";
import { createWriteStream } from "node:fs";
import { join } from "node:path";

/** One process the devnet started. `stage`: processes stop from the highest stage down (clients before servers before the chain). */
export interface DevnetChild {
  name: string;
  pid: number;
  stage: number;
  /** Its stdout and stderr. */
  logFile: string;
  process: ChildProcess;
}

export interface SpawnRequest {
  name: string;
  command: string;
  args: readonly string[];
  env?: NodeJS.ProcessEnv;
  stage: number;
  /** The stdout line that says the process is ready; the promise resolves with it. */
  ready: (line: string) => boolean;
  timeoutMs: number;
}

/** A process that ended or did not become ready; the message ends with the last lines it wrote. */
export class ChildStartError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ChildStartError";
  }
}

const TAIL_CHARS = 2_000;

/**
 * The processes of one devnet. Each gets its own process group (`detached`), so a Ctrl-C in the
 * terminal reaches only the devnet, which stops them in order: the gateway and the servers still
 * reach the chain to commit and redeem on their way out. Should the devnet itself exit without
 * stopping them, the `exit` hook kills what is left.
 */
export class ChildSet {
  readonly children: DevnetChild[] = [];
  private closed = false;
  private readonly killLeftovers = (): void => {
    for (const c of this.children) if (running(c.process)) c.process.kill("SIGKILL");
  };

  constructor(private readonly logDir: string) {
    process.on("exit", this.killLeftovers);
  }

  /** Starts a process and resolves with its ready line; rejects (the process killed) if it exits or times out first. */
  start(r: SpawnRequest): Promise<{ child: DevnetChild; line: string }> {
    if (this.closed) return Promise.reject(new ChildStartError(`${r.name} was not started: the devnet is stopping`));
    const logFile = join(this.logDir, `${r.name}.log`);
    const log = createWriteStream(logFile, { flags: "a" });
    const proc = spawn(r.command, [...r.args], { env: r.env ?? process.env, stdio: ["ignore", "pipe", "pipe"], detached: true });
    let tail = "";
    const keep = (chunk: Buffer): void => {
      log.write(chunk);
      tail = (tail + chunk.toString()).slice(-TAIL_CHARS);
    };
    proc.stderr!.on("data", keep);
    proc.once("exit", () => log.end());
    const child: DevnetChild = { name: r.name, pid: proc.pid ?? -1, stage: r.stage, logFile, process: proc };
    this.children.push(child);
    return new Promise((resolve, reject) => {
      let pending = "";
      let done = false;
      const fail = (why: string): void => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        if (running(proc)) proc.kill("SIGKILL");
        reject(new ChildStartError(`${r.name} ${why} (log: ${logFile}); its last output:\n${tail.trim()}`));
      };
      const timer = setTimeout(() => fail(`was not ready within ${r.timeoutMs} ms`), r.timeoutMs);
      proc.once("error", (err) => fail(`could not start: ${err.message}`));
      proc.once("exit", (code, signal) => fail(`exited (${signal ?? `code ${code}`}) before it was ready`));
      proc.stdout!.on("data", (chunk: Buffer) => {
        keep(chunk);
        if (done) return;
        pending += chunk.toString();
        const lines = pending.split("\n");
        pending = lines.pop() ?? "";
        const line = lines.find(r.ready);
        if (line === undefined) return;
        done = true;
        clearTimeout(timer);
        resolve({ child, line });
      });
    });
  }

  /** Stops every process, highest stage first (one stage at a time, its processes together); `onKilled` names each that needed SIGKILL. */
  async stopAll(graceMs: number, onKilled: (name: string) => void = () => undefined): Promise<void> {
    this.closed = true;
    const stages = [...new Set(this.children.map((c) => c.stage))].sort((a, b) => b - a);
    for (const stage of stages) {
      await Promise.all(this.children.filter((c) => c.stage === stage).map((c) => stopChild(c.process, graceMs, () => onKilled(c.name))));
    }
    process.off("exit", this.killLeftovers);
  }
}

function running(p: ChildProcess): boolean {
  return p.exitCode === null && p.signalCode === null;
}

/** SIGTERM, then SIGKILL after `graceMs`; resolves once the process has exited. */
function stopChild(p: ChildProcess, graceMs: number, onKilled: () => void): Promise<void> {
  return new Promise((resolve) => {
    if (!running(p)) return resolve();
    const timer = setTimeout(() => {
      onKilled();
      p.kill("SIGKILL");
    }, graceMs);
    p.once("exit", () => {
      clearTimeout(timer);
      resolve();
    });
    p.kill("SIGTERM");
  });
}
