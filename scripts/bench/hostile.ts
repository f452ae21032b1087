/**
 * npm run bench:hostile [-- --write] [-- --only NAME,NAME] [-- --window-ms MS]
 *
 * Runs each attack of issue 9 (scripts/bench/lib/attacks.ts) beside an honest client, on a fresh
 * route of two `efed server` child processes serving the shipped model (layers 0:4 and 4:8, default
 * options, 127.0.0.1), and prints per attack:
 *
 *   - the honest client's tokens/s under attack as a ratio of its tokens/s with no attack, both the
 *     median of short greedy generations (connect + 8-token prompt + 16 tokens, forwarded route)
 *     on the same servers just before the attack;
 *   - server peak RSS minus idle RSS (the larger of the two servers; peak = VmHWM, reset through
 *     /proc/PID/clear_refs when the attack starts, and VmRSS sampled every 100 ms);
 *   - recovery: from the attack's end until the start of the first honest generation that runs
 *     at most 1.5× its idle median time (capped at 20 s);
 *   - shutdown: SIGTERM to exit of the servers, while anything the attack keeps alive still is.
 *
 * The attacker runs in its own process (this script with --attacker NAME), bound to 127.0.0.2, so
 * it shares no event loop with the honest client. Then the client side: how long a client takes to
 * notice that a server of its route was killed (SIGKILL) or hung (SIGSTOP) mid-generation, with
 * the client's default timeouts. Goals (issue 9): throughput ≥ 50% of idle, RSS growth ≤ 256 MB,
 * recovery ≤ 5 s; a dead server detected in ≤ 2 s, a hung one in ≤ 5 s. With --write, replaces the
 * measured section of docs/reliability.md. Every child process is stopped at the end, also on error.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { cpus, loadavg, tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { generate, type LayerPipeline, type LayerSequence } from "../../client/generate.js";
import { RemotePipeline } from "../../client/remotePipeline.js";
import { ModelDirectory } from "../../engine/model/modelDir.js";
import { Head } from "../../engine/runtime/head.js";
import { receiptLeaf } from "../../protocol/receipt.js";
import { ATTACKS, serverFailsMidGeneration, type Attack, type AttackOutcome } from "./lib/attacks.js";
import { writeDocSections } from "./lib/docs.js";
import { fmtNum, markdownTable } from "./lib/markdown.js";
import { startServer, stopAll, stopServers, type RunningServer } from "./lib/networkServers.js";
import { memoryOf } from "./lib/procMemory.js";
import { median } from "./lib/stats.js";

const SELF = fileURLToPath(import.meta.url);
const root = join(dirname(SELF), "..", "..");
const MODEL_DIR = join(root, "models", "kjv-llama-6m");
const ATTACKER_ADDRESS = "127.0.0.2";

/** Greedy prompt of the honest client (token ids of the shipped model's 2,048-token vocabulary). */
const PROMPT = [1, 306, 1090, 29, 4, 87, 512, 11];
/** Tokens per honest generation. */
const HONEST_TOKENS = 16;
/** Honest generations measured before each attack (their median is "idle"). */
const IDLE_GENERATIONS = 6;
/** How long each attack loads the servers, ms (--window-ms). */
const DEFAULT_WINDOW_MS = 8_000;
/** A generation at most this many times its idle median time counts as recovered. */
const RECOVERED_SLACK = 1.5;
const RECOVERY_CAP_MS = 20_000;
/** A server's SIGTERM gets this long before SIGKILL, ms. */
const SHUTDOWN_GRACE_MS = 20_000;
/** Client side: tokens of the generation during which a server fails, and the longest wait for the client to notice. */
const LONG_TOKENS = 500;
const DETECT_CAP_MS = 30_000;

const GOALS = { throughputRatio: 0.5, rssGrowthMb: 256, recoveryS: 5, deadS: 2, hungS: 5 };

// ---------------------------------------------------------------- the attacker process

/** `hostile.ts --attacker NAME CONTEXT`: runs one attack, reports on stdout; closes what it keeps when stdin ends. */
async function attackerMain(name: string, contextJson: string): Promise<void> {
  const attack = ATTACKS.find((a) => a.name === name);
  if (attack === undefined) throw new Error(`unknown attack ${name}; known: ${ATTACKS.map((a) => a.name).join(", ")}`);
  const { urls, leakedLeaves, windowMs } = JSON.parse(contextJson) as { urls: string[]; leakedLeaves: string[]; windowMs: number };
  setTimeout(() => process.exit(3), windowMs + 120_000).unref(); // never outlives a lost parent for long
  const emit = (event: object): void => void process.stdout.write(`${JSON.stringify(event)}\n`);
  let outcome: AttackOutcome;
  try {
    outcome = await attack.run({
      urls,
      leakedLeaves,
      address: ATTACKER_ADDRESS,
      begin: () => {
        emit({ event: "ready" });
        return Date.now() + windowMs;
      },
    });
  } catch (err) {
    outcome = { saw: `the attack failed: ${(err as Error).message}` };
  }
  emit({ event: "end", saw: outcome.saw });
  await new Promise<void>((resolve) => {
    process.stdin.once("end", resolve).once("close", resolve).resume();
  });
  await outcome.linger?.();
  process.exit(0);
}

/** The attacker child process, as the parent sees it. */
class AttackerProcess {
  readonly ready: Promise<void>;
  readonly ended: Promise<{ atMs: number; saw: string }>;
  hasEnded = false;

  constructor(private readonly child: ChildProcess) {
    let ready!: () => void;
    let ended!: (v: { atMs: number; saw: string }) => void;
    this.ready = new Promise((resolve) => (ready = resolve));
    this.ended = new Promise((resolve) => (ended = resolve));
    createInterface({ input: child.stdout! }).on("line", (line) => {
      const event = JSON.parse(line) as { event: string; saw?: string };
      if (event.event === "ready") ready();
      if (event.event === "end") {
        this.hasEnded = true;
        ready();
        ended({ atMs: Date.now(), saw: event.saw ?? "" });
      }
    });
    child.once("exit", (code, signal) => {
      this.hasEnded = true;
      ready();
      ended({ atMs: Date.now(), saw: `the attacker exited early (${code ?? signal})` });
    });
  }

  static start(attack: Attack, urls: readonly string[], leakedLeaves: readonly string[], windowMs: number): AttackerProcess {
    const context = JSON.stringify({ urls, leakedLeaves, windowMs });
    const child = spawn(process.execPath, ["--import", "tsx", SELF, "--attacker", attack.name, context], { cwd: root, stdio: ["pipe", "pipe", "inherit"] });
    attackers.add(child);
    child.once("exit", () => attackers.delete(child));
    return new AttackerProcess(child);
  }

  /** Ends its stdin (it closes what it kept alive and exits); SIGKILL after 10 s. */
  stop(): Promise<void> {
    return new Promise((resolve) => {
      if (this.child.exitCode !== null || this.child.signalCode !== null) return resolve();
      const timer = setTimeout(() => this.child.kill("SIGKILL"), 10_000);
      this.child.once("exit", () => {
        clearTimeout(timer);
        resolve();
      });
      this.child.stdin!.end();
    });
  }
}

const attackers = new Set<ChildProcess>();
process.on("exit", () => {
  for (const c of attackers) c.kill("SIGKILL");
});

// ---------------------------------------------------------------- servers and their memory

const dataDirs: string[] = [];

/** A fresh route: layers 0:4 and 4:8 of the shipped model, each server with its own data directory (key file, store). */
async function startRoute(): Promise<RunningServer[]> {
  const starting = [
    [0, 4],
    [4, 8],
  ].map(([first, last]) => {
    const dir = mkdtempSync(join(tmpdir(), "efed-hostile-"));
    dataDirs.push(dir);
    process.env.EFED_DATA_DIR = dir; // read by the child when it is spawned, synchronously inside startServer
    return startServer(root, MODEL_DIR, first!, last!, dir);
  });
  return Promise.all(starting);
}

/** SIGTERM to exit of all `servers`, ms (SIGKILL after the grace period). */
async function stopTimed(servers: readonly RunningServer[]): Promise<number> {
  const t0 = performance.now();
  await stopServers(servers, SHUTDOWN_GRACE_MS);
  return performance.now() - t0;
}

/** Peak RSS of processes from now on: VmHWM reset through clear_refs where allowed, and VmRSS sampled. */
class PeakWatch {
  private readonly sampled: number[];
  private readonly timer: NodeJS.Timeout;
  private readonly hwmReset: boolean[];

  constructor(private readonly pids: readonly number[]) {
    this.hwmReset = pids.map((pid) => {
      try {
        writeFileSync(`/proc/${pid}/clear_refs`, "5");
        return true;
      } catch {
        return false;
      }
    });
    this.sampled = pids.map((pid) => memoryOf(pid).rss);
    this.timer = setInterval(() => this.pids.forEach((pid, i) => (this.sampled[i] = Math.max(this.sampled[i]!, memoryOf(pid).rss))), 100);
  }

  /** Each process's peak since construction, bytes. */
  peaks(): number[] {
    return this.pids.map((pid, i) => Math.max(this.sampled[i]!, this.hwmReset[i] ? memoryOf(pid).peak : 0));
  }

  stop(): void {
    clearInterval(this.timer);
  }
}

// ---------------------------------------------------------------- the honest client

interface Generation {
  ms: number;
  /** 0 when the generation failed. */
  tokensPerSecond: number;
  tokens: number[];
  error?: string;
}

/** Connects to the route from 127.0.0.1 and generates `HONEST_TOKENS` greedy tokens per call. */
class HonestClient {
  /** Receipt leaves of its steps on the first server (what a stranger might see on the path). */
  readonly leaves: string[] = [];
  /** When a step first failed since this was last cleared (generate() reports it only after closing the sequence). */
  stepFailedAtMs: number | undefined;

  constructor(
    private readonly head: Head,
    private readonly urls: readonly string[],
    private readonly numLayers: number,
  ) {}

  async generation(maxTokens = HONEST_TOKENS, timeouts: { connectTimeoutMs?: number; requestTimeoutMs?: number } = { connectTimeoutMs: 5_000, requestTimeoutMs: 10_000 }): Promise<Generation> {
    const t0 = performance.now();
    let pipeline: RemotePipeline | undefined;
    try {
      pipeline = await RemotePipeline.connect(this.urls, this.numLayers, {
        ...timeouts,
        maxLength: PROMPT.length + maxTokens,
        onReceipt: (r) => {
          if (r.receipt.firstLayer === 0 && this.leaves.length < 64) this.leaves.push(receiptLeaf(r.receipt));
        },
      });
      const { generatedIds } = await generate(this.head, this.noteFailures(pipeline), PROMPT, { maxTokens, temperature: 0 });
      const ms = performance.now() - t0;
      return { ms, tokensPerSecond: generatedIds.length / (ms / 1000), tokens: generatedIds };
    } catch (err) {
      return { ms: performance.now() - t0, tokensPerSecond: 0, tokens: [], error: (err as Error).message };
    } finally {
      pipeline?.close();
    }
  }

  /** `pipeline`, noting the time its steps fail. */
  private noteFailures(pipeline: LayerPipeline): LayerPipeline {
    return {
      openSequence: async (): Promise<LayerSequence> => {
        const sequence = await pipeline.openSequence();
        return {
          compute: (hidden) =>
            sequence.compute(hidden).catch((err: unknown) => {
              this.stepFailedAtMs ??= Date.now();
              throw err;
            }),
          close: () => sequence.close(),
        };
      },
    };
  }
}

// ---------------------------------------------------------------- one attack

interface AttackRow {
  attack: Attack;
  idleTokensPerSecond: number;
  attackTokensPerSecond: number;
  generations: number;
  failed: number;
  wrongTokens: number;
  errors: string[];
  rssGrowthMb: number;
  rssAfterMb: number;
  recoveryMs: number | undefined;
  shutdownMs: number;
  saw: string;
}

async function runAttack(attack: Attack, head: Head, numLayers: number, windowMs: number): Promise<AttackRow> {
  const servers = await startRoute();
  let attacker: AttackerProcess | undefined;
  try {
    const urls = servers.map((s) => s.url);
    const pids = servers.map((s) => s.child.pid!);
    const honest = new HonestClient(head, urls, numLayers);
    const reference = await honest.generation(); // warm-up: JIT, pooled next-hop link; its tokens are the reference
    if (reference.error !== undefined) throw new Error(`the honest client fails with no attack: ${reference.error}`);
    const idle: Generation[] = [];
    for (let i = 0; i < IDLE_GENERATIONS; i++) idle.push(await honest.generation());
    const idleMs = median(idle.map((g) => g.ms));
    const idleRss = pids.map((pid) => memoryOf(pid).rss);

    const watch = new PeakWatch(pids);
    attacker = AttackerProcess.start(attack, urls, honest.leaves, windowMs);
    await attacker.ready;
    const during: Generation[] = [];
    while (!attacker.hasEnded) during.push(await honest.generation());
    const end = await attacker.ended;

    // recovery: honest generations back to back until one runs at (about) idle speed
    let recoveryMs: number | undefined;
    while (Date.now() - end.atMs < RECOVERY_CAP_MS) {
      const startedMs = Date.now();
      const g = await honest.generation();
      if (g.error === undefined && g.ms <= RECOVERED_SLACK * idleMs) {
        recoveryMs = Math.max(0, startedMs - end.atMs);
        break;
      }
    }
    watch.stop();
    const peaks = watch.peaks();
    const after = pids.map((pid) => memoryOf(pid).rss);
    const shutdownMs = await stopTimed(servers); // while the attack's leftovers (fake next hops) are still up
    const failed = during.filter((g) => g.error !== undefined);
    return {
      attack,
      idleTokensPerSecond: median(idle.map((g) => g.tokensPerSecond)),
      attackTokensPerSecond: during.length === 0 ? 0 : median(during.map((g) => g.tokensPerSecond)),
      generations: during.length,
      failed: failed.length,
      wrongTokens: during.filter((g) => g.error === undefined && g.tokens.join() !== reference.tokens.join()).length,
      errors: [...new Set(failed.map((g) => g.error!))],
      rssGrowthMb: Math.max(...peaks.map((p, i) => p - idleRss[i]!)) / 2 ** 20,
      rssAfterMb: Math.max(...after.map((r, i) => r - idleRss[i]!)) / 2 ** 20,
      recoveryMs,
      shutdownMs,
      saw: end.saw,
    };
  } finally {
    await attacker?.stop();
    await stopServers(servers, 1_000);
  }
}

// ---------------------------------------------------------------- the client side

interface DetectionRow {
  what: string;
  signal: "SIGKILL" | "SIGSTOP";
  goalS: number;
  /** From the signal until a step failed, and until generate() returned the error. */
  stepFailedMs: number | undefined;
  returnedMs: number | undefined;
  error: string;
}

/**
 * A client generating `LONG_TOKENS` tokens through a fresh route (default client options,
 * forwarded) while server `victim` is killed or stopped about a third of the way in.
 */
async function detection(head: Head, numLayers: number, victim: number, signal: "SIGKILL" | "SIGSTOP"): Promise<DetectionRow> {
  const servers = await startRoute();
  const what = `${signal === "SIGKILL" ? "dead" : "hung"} server ${victim + 1} of 2 (layers ${victim === 0 ? "0:4" : "4:8"}, ${signal})`;
  try {
    const honest = new HonestClient(head, servers.map((s) => s.url), numLayers);
    const warm = await honest.generation();
    const afterMs = Math.min(1_500, (0.3 * LONG_TOKENS * 1000) / Math.max(1, warm.tokensPerSecond));
    honest.stepFailedAtMs = undefined;
    const r = await serverFailsMidGeneration(
      () => honest.generation(LONG_TOKENS, {}).then((g) => (g.error === undefined ? g : Promise.reject(new Error(g.error)))),
      () => honest.stepFailedAtMs,
      { signal, pid: servers[victim]!.child.pid! },
      afterMs,
      DETECT_CAP_MS,
    );
    const error = r.finishedFirst ? "the generation finished before the signal" : r.error;
    return { what, signal, goalS: signal === "SIGKILL" ? GOALS.deadS : GOALS.hungS, stepFailedMs: r.stepFailedMs, returnedMs: r.returnedMs, error };
  } finally {
    await stopServers(servers, 2_000);
  }
}

// ---------------------------------------------------------------- report

const mark = (ok: boolean): string => (ok ? "✓" : "✗");
const seconds = (ms: number | undefined, cap: number): string => (ms === undefined ? `> ${cap / 1000}` : fmtNum(ms / 1000, 1));

function attackTable(rows: readonly AttackRow[]): string {
  return markdownTable(
    ["attack", "honest tok/s idle → attacked", "ratio", "honest failed", "RSS peak − idle (MB)", "RSS after (MB)", "recovery (s)", "shutdown (s)", "goals"],
    rows.map((r) => {
      const ratio = r.idleTokensPerSecond === 0 ? 0 : r.attackTokensPerSecond / r.idleTokensPerSecond;
      const goals = [ratio >= GOALS.throughputRatio, r.rssGrowthMb <= GOALS.rssGrowthMb, r.recoveryMs !== undefined && r.recoveryMs <= GOALS.recoveryS * 1000];
      return [
        r.attack.title,
        `${fmtNum(r.idleTokensPerSecond, 0)} → ${fmtNum(r.attackTokensPerSecond, 0)}`,
        fmtNum(ratio, 2),
        `${r.failed}/${r.generations}${r.wrongTokens > 0 ? ` (${r.wrongTokens} wrong)` : ""}`,
        fmtNum(r.rssGrowthMb, 0),
        fmtNum(r.rssAfterMb, 0),
        seconds(r.recoveryMs, RECOVERY_CAP_MS),
        fmtNum(r.shutdownMs / 1000, 1),
        goals.map(mark).join(""),
      ];
    }),
    ["left", "right", "right", "right", "right", "right", "right", "right", "left"],
  );
}

function detectionTable(rows: readonly DetectionRow[]): string {
  return markdownTable(
    ["server fails mid-generation", "a step failed after (s)", "generate() returned after (s)", "goal (s)", "met", "what the client reported"],
    rows.map((r) => [
      r.what,
      seconds(r.stepFailedMs, DETECT_CAP_MS),
      seconds(r.returnedMs, DETECT_CAP_MS),
      String(r.goalS),
      mark(r.returnedMs !== undefined && r.returnedMs <= r.goalS * 1000),
      r.error.replaceAll("|", "\\|").slice(0, 160),
    ]),
    ["left", "right", "right", "right", "left", "left"],
  );
}

function observations(rows: readonly AttackRow[]): string {
  return rows
    .map((r) => {
      const errors = r.errors.length === 0 ? "" : ` Honest client's errors: ${r.errors.map((e) => `"${e.slice(0, 200)}"`).join("; ")}.`;
      return `- **${r.attack.title}** (\`${r.attack.name}\`): ${r.saw.replaceAll("|", "\\|")}.${errors.replaceAll("|", "\\|")}`;
    })
    .join("\n");
}

// ---------------------------------------------------------------- main

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const option = (name: string): string | undefined => {
    const i = argv.indexOf(name);
    return i === -1 ? undefined : argv[i + 1];
  };
  const windowMs = Number(option("--window-ms") ?? DEFAULT_WINDOW_MS);
  if (!Number.isSafeInteger(windowMs) || windowMs < 1_000) throw new Error(`--window-ms must be an integer of at least 1000, got ${option("--window-ms")}`);
  const only = option("--only")?.split(",");
  const unknown = only?.filter((n) => n !== "client" && !ATTACKS.some((a) => a.name === n)) ?? [];
  if (unknown.length > 0) throw new Error(`--only: unknown ${unknown.join(", ")}; known: ${ATTACKS.map((a) => a.name).join(", ")}, client`);

  const model = ModelDirectory.open(MODEL_DIR);
  const head = await Head.load(model, { threads: 1 });
  const numLayers = model.config.numLayers;
  const started = performance.now();

  const rows: AttackRow[] = [];
  for (const attack of ATTACKS.filter((a) => only === undefined || only.includes(a.name))) {
    console.error(`attack ${attack.name}: ${attack.title}`);
    rows.push(await runAttack(attack, head, numLayers, windowMs));
  }
  const detections: DetectionRow[] = [];
  if (only === undefined || only.includes("client")) {
    for (const [victim, signal] of [
      [1, "SIGKILL"],
      [1, "SIGSTOP"],
      [0, "SIGKILL"],
      [0, "SIGSTOP"],
    ] as const) {
      console.error(`client: server ${victim + 1} ${signal}`);
      detections.push(await detection(head, numLayers, victim, signal));
    }
  }

  const minutes = (performance.now() - started) / 60_000;
  const body = [
    `Measured ${new Date().toISOString().slice(0, 10)} on ${cpus().length} × ${cpus()[0]?.model ?? "unknown CPU"} (load average ${loadavg()[0]!.toFixed(1)} at the end, ` +
      `shared with other work: compare ratios within the run), shipped model over two \`efed server\`s with default options but \`--forward-private\` (loopback routes need it), ` +
      `attack windows of ${windowMs / 1000} s, run time ${minutes.toFixed(1)} min. Goals: ratio ≥ ${GOALS.throughputRatio}, RSS growth ≤ ${GOALS.rssGrowthMb} MB, ` +
      `recovery ≤ ${GOALS.recoveryS} s (✓/✗ in that order).`,
    rows.length === 0 ? "" : attackTable(rows),
    rows.length === 0 ? "" : `What the attacker saw:\n\n${observations(rows)}`,
    detections.length === 0 ? "" : detectionTable(detections),
  ]
    .filter((s) => s !== "")
    .join("\n\n");
  console.log(body);

  writeDocSections(join(root, "docs", "reliability.md"), "Reliability under hostile peers", { "Measured (npm run bench:hostile)": body });
}

const args = process.argv.slice(2);
if (args[0] === "--attacker") {
  await attackerMain(args[1] ?? "", args[2] ?? "{}");
} else {
  try {
    await main();
  } catch (err) {
    console.error(err);
    process.exitCode = 1;
  } finally {
    await stopAll(1_000);
    for (const dir of dataDirs) rmSync(dir, { recursive: true, force: true });
  }
  process.exit(); // the receipt checker's worker and ONNX sessions would keep the process alive
}
