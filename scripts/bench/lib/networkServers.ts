/**
 * `efed server` child processes for the network benchmark: each one serves a layer range of a
 * model on a free loopback port. Every child started here is remembered and killed by
 * `stopAll()`, and, as a last resort, when this process exits or is interrupted.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { join } from "node:path";

export interface RunningServer {
  url: string;
  first: number;
  last: number;
  child: ChildProcess;
}

const children = new Set<ChildProcess>();
let handlersInstalled = false;

function installHandlers(): void {
  if (handlersInstalled) return;
  handlersInstalled = true;
  // 'exit' handlers run synchronously: SIGKILL whatever is still alive.
  process.on("exit", () => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill("SIGKILL");
  });
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    process.once(signal, () => {
      console.error(`\n${signal}: stopping ${children.size} child process(es)`);
      process.exit(130);
    });
  }
}

/** Layer boundaries of an even split of `layers` layers into `parts` contiguous ranges. */
export function evenSplit(layers: number, parts: number): [number, number][] {
  if (parts < 1 || parts > layers) throw new Error(`cannot split ${layers} layers into ${parts} ranges`);
  const cuts = Array.from({ length: parts + 1 }, (_, i) => Math.round((i * layers) / parts));
  return Array.from({ length: parts }, (_, i) => [cuts[i]!, cuts[i + 1]!]);
}

/**
 * Starts `efed server --model DIR --layers FIRST:LAST --port 0` and resolves once it prints its
 * {"event":"listening"} line; rejects with its stderr if it exits first or takes over `timeoutMs`.
 */
export async function startServer(
  root: string,
  modelDir: string,
  first: number,
  last: number,
  storeDir: string,
  timeoutMs = 300_000,
  /** More `efed server` flags, e.g. ["--kv-slots", "0"]. */
  extraArgs: readonly string[] = [],
): Promise<RunningServer> {
  const bin = join(root, "bin", "efed.mjs");
  const store = join(storeDir, `store-${first}-${last}-${serial++}.sqlite`);
  const args = [bin, "server", "--model", modelDir, "--layers", `${first}:${last}`, "--port", "0", "--store", store, "--forward-private", ...extraArgs];
  const { url, child } = await spawnListening(root, args, `efed server --layers ${first}:${last}`, timeoutMs);
  return { url, first, last, child };
}

/**
 * A bare WebSocket echo server in its own Node process (the `ws` package, as the shard server
 * uses): the floor of a loopback round trip to another process on this machine.
 */
export async function startEcho(root: string): Promise<RunningServer> {
  const code = `
    const { WebSocketServer } = require("ws");
    const wss = new WebSocketServer({ host: "127.0.0.1", port: 0, perMessageDeflate: false });
    wss.on("listening", () => console.log(JSON.stringify({ event: "listening", url: "ws://127.0.0.1:" + wss.address().port })));
    wss.on("connection", (ws) => ws.on("message", (data, isBinary) => ws.send(data, { binary: isBinary })));
    process.once("SIGTERM", () => process.exit(0));
  `;
  const { url, child } = await spawnListening(root, ["-e", code], "echo server", 60_000);
  return { url, first: 0, last: 0, child };
}

let serial = 0;

function spawnListening(root: string, args: string[], label: string, timeoutMs: number): Promise<{ url: string; child: ChildProcess }> {
  installHandlers();
  const child = spawn(process.execPath, args, {
    cwd: root,
    env: { ...process.env, EFED_LOG_LEVEL: "warn" },
    stdio: ["ignore", "pipe", "pipe"],
  });
  children.add(child);
  child.once("exit", () => children.delete(child));
  return new Promise((resolve, reject) => {
    let out = "";
    let err = "";
    let listening = false;
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`${label} did not listen within ${timeoutMs} ms\n${err}`));
    }, timeoutMs);
    child.stdout!.on("data", (d: Buffer) => {
      out += d.toString();
      let nl: number;
      while ((nl = out.indexOf("\n")) !== -1) {
        const line = out.slice(0, nl).trim();
        out = out.slice(nl + 1);
        if (line === "") continue;
        if (!listening && line.includes('"listening"')) {
          listening = true;
          clearTimeout(timer);
          resolve({ url: (JSON.parse(line) as { url: string }).url, child });
        } else {
          // the server's pino warnings and errors (log level warn): shown, they explain bad numbers
          console.error(`[${label}] ${line}`);
        }
      }
    });
    child.stderr!.on("data", (d: Buffer) => {
      err += d.toString();
      if (listening) process.stderr.write(`[${label}] ${d.toString()}`);
    });
    child.once("exit", (code, signal) => {
      clearTimeout(timer);
      if (!listening) reject(new Error(`${label} exited (${code ?? signal}) before listening:\n${err}`));
    });
  });
}

/** SIGTERM the given servers (each shuts down cleanly), SIGKILL those still alive after `graceMs`. */
export async function stopServers(servers: readonly RunningServer[], graceMs = 5_000): Promise<void> {
  await Promise.all(servers.map((s) => stopChild(s.child, graceMs)));
}

/** Stops every child started here. */
export async function stopAll(graceMs = 5_000): Promise<void> {
  await Promise.all([...children].map((c) => stopChild(c, graceMs)));
}

function stopChild(c: ChildProcess, graceMs: number): Promise<void> {
  return new Promise<void>((resolve) => {
    if (c.exitCode !== null || c.signalCode !== null) return resolve();
    const timer = setTimeout(() => {
      c.kill("SIGKILL");
      resolve();
    }, graceMs);
    c.once("exit", () => {
      clearTimeout(timer);
      resolve();
    });
    c.kill("SIGTERM");
  });
}
