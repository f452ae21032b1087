/**
 * npm run bench:devnet [-- --runs N] [--write] — what `npm start` costs, end to end, as a user sees it:
 *
 *   - time from starting `npm start` (scripts/devnet/start.mjs in a child process, --no-demo) to the
 *     first generated token of a streamed chat completion sent the moment it says ready, and its
 *     phases (chain up, contracts, servers and verifiers, gateway) as the devnet reports them;
 *   - peak memory: the resident set of the whole process tree (the devnet and every process it
 *     started), sampled every 200 ms from /proc;
 *   - time to stop: from SIGINT to the devnet's exit, every process gone.
 *
 * Hardhat's node (the default) against anvil in the same run: the chain's share of the startup.
 * The compressed variant is cached in node_modules/.cache after the first start (the first run
 * of a fresh checkout pays about 2 s more). Prints a table; with --write replaces the
 * "Startup, memory, shutdown" section of docs/devnet.md. Every devnet is stopped, also on error.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, readFileSync, readdirSync, rmSync } from "node:fs";
import { cpus, loadavg, tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import type { Devnet } from "../devnet/devnet.js";
import { writeDocSections } from "./lib/docs.js";
import { fmtNum, markdownTable } from "./lib/markdown.js";
import { median } from "./lib/stats.js";

const here = dirname(fileURLToPath(import.meta.url));
const START = join(here, "..", "devnet", "start.mjs");
const DOC = join(here, "..", "..", "docs", "devnet.md");
const READY_TIMEOUT_MS = 180_000;
const SAMPLE_MS = 200;
const PAGE_BYTES = 4096;

const runsArg = process.argv.indexOf("--runs");
const RUNS = runsArg === -1 ? 1 : Number(process.argv[runsArg + 1]);
if (!Number.isInteger(RUNS) || RUNS < 1) throw new Error(`--runs must be a whole number >= 1, got ${process.argv[runsArg + 1]}`);

interface Measured {
  readyMs: number;
  firstTokenMs: number;
  phases: Record<string, number>;
  peakRssBytes: number;
  stopMs: number;
  processes: number;
}

/** Resident bytes of `root` and all its descendants, read from /proc (Linux). */
function treeRss(root: number): number {
  const parent = new Map<number, number>();
  const rss = new Map<number, number>();
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      // fields after the command (which may hold spaces, inside parentheses): state ppid … rss is field 24
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      parent.set(Number(entry), Number(fields[1]));
      rss.set(Number(entry), Number(fields[21]) * PAGE_BYTES);
    } catch {
      continue; // the process ended between the listing and the read
    }
  }
  let total = 0;
  const inTree = (pid: number): boolean => {
    for (let p: number | undefined = pid; p !== undefined && p > 1; p = parent.get(p)) if (p === root) return true;
    return false;
  };
  for (const [pid, bytes] of rss) if (inTree(pid)) total += bytes;
  return total;
}

function exited(child: ChildProcess): Promise<number | null> {
  return new Promise((resolve) => (child.exitCode !== null ? resolve(child.exitCode) : child.once("exit", (code) => resolve(code))));
}

/** The first content token of a streamed chat completion: milliseconds after `t0`. */
async function firstToken(gateway: string, model: string, t0: number): Promise<number> {
  const res = await fetch(`${gateway}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ model, stream: true, max_tokens: 8, temperature: 0, messages: [{ role: "user", content: "In the beginning" }] }),
    signal: AbortSignal.timeout(60_000),
  });
  if (!res.ok || res.body === null) throw new Error(`the gateway answered HTTP ${res.status}: ${await res.text()}`);
  const decoder = new TextDecoder();
  let text = "";
  let at: number | undefined;
  for await (const chunk of res.body) {
    text += decoder.decode(chunk as Uint8Array, { stream: true });
    if (at === undefined && /"content":"[^"]/.test(text)) at = performance.now() - t0;
  }
  // read to the end: a stream the client abandons keeps the gateway's connection open past SIGTERM
  if (at === undefined) throw new Error(`the stream ended without a token:\n${text}`);
  return at;
}

async function measure(chain: "hardhat" | "anvil", scratch: string, run: number): Promise<Measured> {
  const readyFile = join(scratch, `${chain}-${run}.json`);
  const t0 = performance.now();
  const child = spawn(process.execPath, ["--disable-warning=ExperimentalWarning", START, "--chain", chain, "--chain-port", "0", "--gateway-port", "0", "--no-demo", "--ready-file", readyFile], { stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  child.stdout.on("data", (d: Buffer) => (out += d.toString()));
  child.stderr.on("data", (d: Buffer) => (out += d.toString()));
  let peak = 0;
  const sampler = setInterval(() => (peak = Math.max(peak, treeRss(child.pid!))), SAMPLE_MS);
  let ready: Omit<Devnet, "stop"> | undefined;
  try {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`not ready within ${READY_TIMEOUT_MS} ms:\n${out}`)), READY_TIMEOUT_MS);
      child.stdout.on("data", () => {
        if (!/^ready in /m.test(out)) return;
        clearTimeout(timer);
        resolve();
      });
      void exited(child).then((code) => {
        clearTimeout(timer);
        reject(new Error(`npm start exited with ${code} before it was ready:\n${out}`));
      });
    });
    const readyMs = performance.now() - t0;
    ready = JSON.parse(readFileSync(readyFile, "utf8")) as Omit<Devnet, "stop">;
    const firstTokenMs = await firstToken(ready.urls.gateway, ready.modelId, t0);
    await new Promise((r) => setTimeout(r, 2_000)); // the redemptions and commitments that follow an answer, in the peak
    const stopping = performance.now();
    child.kill("SIGINT");
    const code = await exited(child);
    const stopMs = performance.now() - stopping;
    if (code !== 0) throw new Error(`npm start exited with ${code} on SIGINT:\n${out}`);
    const left = ready.processes.filter((p) => alive(p.pid));
    if (left.length > 0) throw new Error(`processes left after stop: ${left.map((p) => p.name).join(", ")}`);
    return { readyMs, firstTokenMs, phases: ready.timings, peakRssBytes: peak, stopMs, processes: ready.processes.length + 1 };
  } finally {
    clearInterval(sampler);
    if (child.exitCode === null) child.kill("SIGKILL");
    for (const p of ready?.processes ?? []) if (alive(p.pid)) process.kill(p.pid, "SIGKILL");
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function main(): Promise<void> {
  const scratch = mkdtempSync(join(tmpdir(), "efed-bench-devnet-"));
  const machine = `${cpus().length} cores, load average ${loadavg().map((l) => l.toFixed(1)).join(" ")} at start`;
  console.error(`bench:devnet: ${RUNS} run(s) per chain; ${machine}`);
  try {
    const results: { chain: string; runs: Measured[] }[] = [];
    for (const chain of ["hardhat", "anvil"] as const) {
      const runs: Measured[] = [];
      for (let i = 0; i < RUNS; i++) {
        runs.push(await measure(chain, scratch, i));
        console.error(`  ${chain} run ${i + 1}: first token ${fmtNum(runs.at(-1)!.firstTokenMs / 1000)} s`);
      }
      results.push({ chain, runs });
    }
    const s = (ms: number): string => `${fmtNum(ms / 1000)} s`;
    const med = (runs: Measured[], f: (m: Measured) => number): number => median(runs.map(f));
    const rows = results.map(({ chain, runs }) => [
      chain === "hardhat" ? "Hardhat node (default)" : "anvil (--chain anvil, --state)",
      s(med(runs, (m) => m.firstTokenMs)),
      s(med(runs, (m) => m.readyMs)),
      `${s(med(runs, (m) => m.phases.chain ?? 0))} / ${s(med(runs, (m) => m.phases.deploy ?? 0))} / ${s(med(runs, (m) => m.phases.servers ?? 0))} / ${s(med(runs, (m) => m.phases.gateway ?? 0))}`,
      `${fmtNum(med(runs, (m) => m.peakRssBytes) / 2 ** 20, 0)} MiB (${runs[0]!.processes} processes)`,
      s(med(runs, (m) => m.stopMs)),
    ]);
    const table = markdownTable(
      ["chain", "start → first token", "start → ready", "chain / contracts / servers / gateway up at", "peak RSS, whole tree", "SIGINT → all exited"],
      rows,
      ["left", "right", "right", "right", "right", "right"],
    );
    console.log(table);
    const body =
      `\`npm run bench:devnet -- --runs ${RUNS}\` on ${machine}; medians of ${RUNS} run(s). Goal: first token < 30 s on a 2-core machine.\n\n` +
      `${table}\n\n` +
      "Start → first token: from spawning `npm start -- --no-demo` to the first token of a streamed chat completion sent the moment it says ready " +
      "(the gateway opens the wallet's two channels on that request). The phases are when each was up, from the devnet's own start. " +
      "Peak RSS sums every process of the tree (the devnet, the chain, 4 servers, 2 verifiers, the gateway), sampled every 200 ms. " +
      "A load average above the core count means other work shared the machine: the times are then upper bounds (seven processes start at once, CPU-bound).";
    writeDocSections(DOC, "The devnet (`npm start`): measured", { "Startup, memory, shutdown": body });
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
}

await main();
