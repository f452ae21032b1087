/**
 * npm run bench:verify [-- --write] — how well a verifier's one-pass replay separates honest servers
 * from cheating ones, and what it costs.
 *
 * A server is simulated in process with the code a ShardServer runs (EngineScheduler over a Shard:
 * 1-row decode kernels, decode steps of concurrent sessions batched, prefills over 64 rows in
 * chunks); each step's output is rounded to the wire encoding as a server stores it. The verifier
 * replays each session in ONE prefill pass (node/verifier/audit.ts does the same) and scores every
 * step with compareOutput. Measured:
 * - honest noise (step scores: p50 / p99.9 / max) per model, variant, threads, serving mode, wire;
 * - per fault kind (scripts/devnet/faultyShard.ts) the share of faulty steps an audit flags;
 * - the verifier's CPU time for the replay as a fraction of the server's for the same steps;
 * - the detection probability 1-(1-p·f)^k and the sample rate that catches f = 5% within 10,000 tokens;
 * - simulated batches: a cheater's receipts sampled with the daemon's isSampled, caught through the
 *   replayed session prefix, per measured detection rate; and when cheating does not pay at the
 *   devnet slash.
 * With --write, replaces the measured sections of docs/verification.md. With --only simulation,
 * skips the honest noise and cost measurements and prints (writes) only the simulation's sections.
 */
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { accuracyLevelOf } from "../../engine/model/compression.js";
import { ModelDirectory } from "../../engine/model/modelDir.js";
import { tinyConfig, writeRandomModel } from "../../engine/model/randomModel.js";
import { Head } from "../../engine/runtime/head.js";
import { Shard } from "../../engine/runtime/shard.js";
import { SeededRandom } from "../../engine/random.js";
import { decodeActivations, encodeActivations, type ActivationEncoding, type EncodedActivations } from "../../protocol/activations.js";
import { compressModel } from "../../node/compress/compressModel.js";
import { EngineScheduler, DEFAULT_BATCH_POLICY } from "../../node/server/engineScheduler.js";
import { compareOutput, toleranceFor } from "../../node/verifier/compareOutput.js";
import { isSampled } from "../../node/verifier/sample.js";
import { faultyShard, type Fault } from "../devnet/faultyShard.js";
import { DEVNET_PARAMS } from "../lib/deployProtocol.js";
import { REPO_ROOT } from "./lib/benchModels.js";
import { writeDocSections } from "./lib/docs.js";
import { markdownTable } from "./lib/markdown.js";
import { median, nearestRankPercentile, percentile as percentileOf } from "./lib/stats.js";
import { formatEther } from "ethers";

/** `--only simulation`: measure the fault detection rates and run the simulation only; write only its sections. */
const ONLY = process.argv.includes("--only") ? process.argv[process.argv.indexOf("--only") + 1] : undefined;
if (ONLY !== undefined && ONLY !== "simulation") throw new Error(`--only takes "simulation", got ${ONLY ?? "nothing"}`);
const SIMULATION_ONLY = ONLY === "simulation";
const WIRES: ActivationEncoding[] = ["fp32", "fp16", "int8"];
const scratch = mkdtempSync(join(tmpdir(), "efed-bench-verify-"));

// ------------------------------------------------------------------ statistics

const fmt = (x: number): string => (x === 0 ? "0" : x.toExponential(1));

// ------------------------------------------------------------------ a simulated server and verifier

/** How a session's steps reach the engine. */
type Mode = "decode" | "batched" | "chunked";
interface Shape {
  sessions: number;
  prompt: number;
  decodeSteps: number;
}
const MODES: Record<Mode, Shape> = {
  decode: { sessions: 1, prompt: 6, decodeSteps: 40 },
  batched: { sessions: 6, prompt: 6, decodeSteps: 24 },
  chunked: { sessions: 1, prompt: 150, decodeSteps: 8 },
};

interface SessionRecord {
  /** Per step: the input as the client sent it (wire-encoded), the server's fp32 output. */
  inputs: EncodedActivations[];
  outputs: Float32Array[];
}

/** Serves concurrent sessions of `shape` through a scheduler over `shard`, inputs on `wire`; returns each step's input and output. */
async function serve(shard: Shard, head: Head, shape: Shape, wire: ActivationEncoding, seed: number): Promise<{ sessions: SessionRecord[]; cpuMs: number }> {
  const { sessions: n, prompt, decodeSteps } = shape;
  const scheduler = new EngineScheduler(shard, DEFAULT_BATCH_POLICY);
  const H = shard.config.hiddenSize;
  const rng = new SeededRandom(seed);
  const token = (): number => Math.floor(rng.uniform() * head.config.vocabSize);
  const records: SessionRecord[] = Array.from({ length: n }, () => ({ inputs: [], outputs: [] }));
  const caches = records.map(() => shard.newCache());
  const cpu = process.cpuUsage();
  for (let step = 0; step <= decodeSteps; step++) {
    // every session's step is queued at once, as concurrent clients' steps are: decodes batch
    await Promise.all(
      records.map(async (r, i) => {
        const ids = step === 0 ? Array.from({ length: prompt }, token) : [token()];
        const input = encodeActivations(head.embed(ids), ids.length, H, wire);
        const out = await scheduler.compute(decodeActivations(input), caches[i]!, `client-${i}`);
        r.inputs.push(input);
        r.outputs.push(out);
      }),
    );
  }
  const used = process.cpuUsage(cpu);
  return { sessions: records, cpuMs: (used.user + used.system) / 1000 };
}

/** The verifier's one-pass replay of a session; the score of every step for each output wire. */
async function replay(verifier: Shard, s: SessionRecord, wires: readonly ActivationEncoding[]): Promise<{ scores: Map<ActivationEncoding, number[]>; exact: number; cpuMs: number }> {
  const H = verifier.config.hiddenSize;
  const cpu = process.cpuUsage();
  const rows = s.inputs.reduce((a, x) => a + x.rows, 0);
  const all = new Float32Array(rows * H);
  let at = 0;
  for (const x of s.inputs) {
    all.set(decodeActivations(x), at);
    at += x.rows * H;
  }
  const mine = await verifier.compute(all, verifier.newCache());
  const used = process.cpuUsage(cpu);
  const scores = new Map<ActivationEncoding, number[]>(wires.map((w) => [w, []]));
  let exact = 0;
  at = 0;
  for (const [i, x] of s.inputs.entries()) {
    const slice = mine.subarray(at * H, (at + x.rows) * H);
    for (const w of wires) {
      const c = compareOutput(encodeActivations(s.outputs[i]!, x.rows, H, w), slice);
      scores.get(w)!.push(c.score);
      if (w === "fp32" && c.exact) exact++;
    }
    at += x.rows;
  }
  return { scores, exact, cpuMs: (used.user + used.system) / 1000 };
}

// ------------------------------------------------------------------ models

interface Subject {
  label: string;
  model: ModelDirectory;
  head: Head;
}

function randomSubject(name: string, overrides: Record<string, unknown>): string {
  const dir = join(scratch, name);
  writeRandomModel(dir, tinyConfig(overrides), { seed: 7, dtype: "F32", std: 0.15 });
  return dir;
}

const dense: { label: string; dir: string }[] = [
  { label: "random h64 (fused attention)", dir: randomSubject("gqa", { hidden_size: 64, intermediate_size: 96, max_position_embeddings: 256 }) },
  { label: "random h48 (operator attention)", dir: randomSubject("ops", { max_position_embeddings: 256 }) },
  { label: "kjv-llama-6m", dir: join(REPO_ROOT, "models", "kjv-llama-6m") },
];
const subjects: Subject[] = [];
for (const d of dense) {
  const model = ModelDirectory.open(d.dir);
  const head = await Head.load(model);
  subjects.push({ label: d.label, model, head });
  for (const method of ["int8", "int4"] as const) {
    const out = join(scratch, `${d.label.replace(/\W+/g, "-")}-${method}`);
    await compressModel(d.dir, out, { method });
    const variant = ModelDirectory.open(out);
    subjects.push({ label: `${d.label}, ${method} (MatMulNBits, level ${accuracyLevelOf(variant.compression)})`, model: variant, head });
  }
}

// ------------------------------------------------------------------ honest noise

interface NoiseRow {
  subject: string;
  tolerance: number;
  threads: number;
  mode: Mode;
  wire: ActivationEncoding;
  scores: number[];
  exact: string;
}
const noise: NoiseRow[] = [];
for (const s of SIMULATION_ONLY ? [] : subjects) {
  const L = s.model.config.numLayers;
  const verifier = await Shard.load(s.model, 0, L, { threads: 1 });
  const tolerance = toleranceFor(s.model.compression);
  for (const threads of [1, 2]) {
    const server = await Shard.load(s.model, 0, L, { threads, spinning: false });
    for (const mode of Object.keys(MODES) as Mode[]) {
      // the client's wire also rounds the inputs the server gets: serve once per wire
      for (const wire of WIRES) {
        const { sessions } = await serve(server, s.head, MODES[mode], wire, 11);
        const scores: number[] = [];
        let exact = 0;
        let steps = 0;
        for (const r of sessions) {
          const res = await replay(verifier, r, [wire]);
          scores.push(...res.scores.get(wire)!);
          exact += res.exact;
          steps += r.inputs.length;
        }
        noise.push({ subject: s.label, tolerance, threads, mode, wire, scores, exact: wire === "fp32" ? `${exact}/${steps}` : "" });
      }
      console.error(`honest ${s.label} threads ${threads} ${mode}: max ${fmt(Math.max(...noise.slice(-3).flatMap((n) => n.scores)))}`);
    }
    await server.release();
  }
  await verifier.release();
}

// ------------------------------------------------------------------ faults

/** Dense subjects are faulted with their int4 variant as "another variant"; the int4 subject with its int8 one. */
const FAULT_SUBJECTS: { subject: Subject; alternative: Subject }[] = [
  { subject: subjects[0]!, alternative: subjects[2]! }, // random h64 (dense); its int4
  { subject: subjects[6]!, alternative: subjects[8]! }, // kjv-llama-6m (dense); its int4
  { subject: subjects[8]!, alternative: subjects[7]! }, // kjv-llama-6m int4; its int8
];
interface FaultRow {
  subject: string;
  fault: string;
  wire: ActivationEncoding;
  flagged: number;
  steps: number;
  minScore: number;
}
const faults: FaultRow[] = [];
for (const { subject: s, alternative } of FAULT_SUBJECTS) {
  const L = s.model.config.numLayers;
  const real = await Shard.load(s.model, 0, L);
  const lesser = await Shard.load(s.model, 0, L - 1);
  const otherDir = join(scratch, `other-${s.label.replace(/\W+/g, "-")}`);
  writeRandomModel(otherDir, JSON.parse(readFileSync(join(s.model.dir, "config.json"), "utf8")) as Record<string, unknown>, { seed: 99, dtype: "F32", std: 0.15 });
  const other = await Shard.load(ModelDirectory.open(otherDir), 0, L);
  const cheaper = await Shard.load(alternative.model, 0, L);
  const kinds: [string, Fault][] = [
    ["noise ±0.5", { kind: "noise", amplitude: 0.5 }],
    ["noise ±0.01", { kind: "noise", amplitude: 0.01 }],
    ["skipped layers (output = input)", { kind: "skip" }],
    [`fewer layers (${L - 1} of ${L})`, { kind: "fewerLayers", lesser }],
    ["another variant's weights (random)", { kind: "otherWeights", other }],
    [`another variant's weights (${alternative.label.split(", ").slice(1).join(", ") || "dense"})`, { kind: "otherWeights", other: cheaper }],
    ["lower precision (fp16 inside)", { kind: "lowerPrecision" }],
  ];
  const verifier = await Shard.load(s.model, 0, L);
  const tolerance = toleranceFor(s.model.compression);
  for (const [label, fault] of kinds) {
    for (const wire of WIRES) {
      // honest prefill, every decode step faulty
      const { sessions } = await serve(faultyShard(real, fault, MODES.batched.prompt), s.head, MODES.batched, wire, 23);
      let flagged = 0;
      let steps = 0;
      let minScore = Infinity;
      for (const r of sessions) {
        const scores = (await replay(verifier, r, [wire])).scores.get(wire)!.slice(1);
        flagged += scores.filter((x) => x > tolerance).length;
        steps += scores.length;
        minScore = Math.min(minScore, ...scores);
      }
      faults.push({ subject: s.label, fault: label, wire, flagged, steps, minScore });
    }
    console.error(`fault ${s.label} ${label}: ${faults.slice(-3).map((f) => `${f.flagged}/${f.steps}`).join(" ")}`);
  }
  for (const x of [real, lesser, other, cheaper, verifier]) await x.release();
}

// ------------------------------------------------------------------ cost: server vs one-pass replay

const kjv = subjects[6]!;
const costSteps = 256;
const costServer = await Shard.load(kjv.model, 0, kjv.model.config.numLayers, { threads: 1 });
const costVerifier = await Shard.load(kjv.model, 0, kjv.model.config.numLayers, { threads: 1 });
const served = SIMULATION_ONLY ? { cpuMs: NaN, sessions: [] } : await serve(costServer, kjv.head, { sessions: 1, prompt: MODES.decode.prompt, decodeSteps: costSteps - 1 }, "fp32", 5);
const replayed = SIMULATION_ONLY ? { cpuMs: NaN } : await replay(costVerifier, served.sessions[0]!, ["fp32"]);
const costRatio = replayed.cpuMs / served.cpuMs;

// ------------------------------------------------------------------ detection probability

/** Probability that at least one of k steps, each corrupted with probability f and audited with p, is caught. */
const detection = (p: number, f: number, k: number): number => 1 - Math.pow(1 - p * f, k);
/** The smallest sample rate that catches a cheater corrupting f of k steps with probability ≥ target. */
const rateFor = (f: number, k: number, target: number): number => (1 - Math.pow(1 - target, 1 / k)) / f;
const K = 10_000;
const needed = rateFor(0.05, K, 0.99);
/** Simulated: many cheaters' k steps, each corrupted with f, each sampled with p; share caught. */
function simulate(p: number, f: number, k: number, trials: number, seed: number): number {
  const rng = new SeededRandom(seed);
  let caught = 0;
  for (let t = 0; t < trials; t++) {
    for (let i = 0; i < k; i++) {
      if (rng.uniform() < f && rng.uniform() < p) {
        caught++;
        break;
      }
    }
  }
  return caught / trials;
}
/**
 * Expected replay work per session when every step is sampled with probability p: one pass up to
 * the last sampled step, as a fraction of the session's L steps (nothing when none is sampled).
 */
function replayShare(p: number, L: number): number {
  let e = 0;
  for (let m = 1; m <= L; m++) e += (m / L) * p * Math.pow(1 - p, L - m); // last sampled step is the m-th
  return e;
}

// ------------------------------------------------------------------ simulated batches: the daemon's sample over a cheater's receipts

/** The sample rates of the simulation tables; every draw is resolved below the largest. */
const SIM_RATES = [0.001, 0.005, 0.01, 0.02, 0.05];
const SIM_TOKENS = [1_000, 10_000, 100_000];
const SIM_TRIALS = 1_000;
/** Receipts per posted batch: each batch gets its own seed block hash. */
const SIM_BATCH_RECEIPTS = 256;
/**
 * Sessions as the shipped model (kjv-llama-6m, 512 positions) serves them: one prefill step of the
 * prompt, then 1-token decode steps. Prompts uniform in 8..200 tokens, answers 16..256 tokens.
 */
const SIM_PROMPT = [8, 200] as const;
const SIM_DECODE = [16, 256] as const;
/** Pool of real isSampled draws: a trial reads a window of it from a random offset. */
const SIM_POOL_STEPS = 300_000;
/** Price per served token for the profit table, token units: the price scripts/bench/gas.ts registers servers at. */
const SIM_PRICE_PER_TOKEN = 0.000001;

const hex32 = (rng: SeededRandom): string =>
  "0x" + Array.from({ length: 8 }, () => Math.floor(rng.uniform() * 2 ** 32).toString(16).padStart(8, "0")).join("");

/**
 * The daemon's draw for each receipt of a stream of batches (random block hash per batch, random
 * leaves): the smallest rate ≤ max(SIM_RATES) at which isSampled audits it, found by bisection over
 * isSampled itself (resolution max/2^20), or Infinity when not audited even at the largest rate.
 */
function samplingDraws(steps: number, seed: number): Float64Array {
  const rng = new SeededRandom(seed);
  const top = Math.max(...SIM_RATES);
  const draws = new Float64Array(steps).fill(Infinity);
  let blockHash = "";
  for (let i = 0; i < steps; i++) {
    if (i % SIM_BATCH_RECEIPTS === 0) blockHash = hex32(rng);
    const leaf = hex32(rng);
    if (!isSampled(blockHash, leaf, top)) continue;
    let lo = 0;
    let hi = top; // sampled at hi, not at lo
    for (let b = 0; b < 20; b++) {
      const mid = (lo + hi) / 2;
      if (isSampled(blockHash, leaf, mid)) hi = mid;
      else lo = mid;
    }
    draws[i] = hi;
  }
  return draws;
}

/**
 * A cheater: `f` corrupts each step with that probability; "session" corrupts one random step per
 * session; "last" only the last step of each session (no later receipt of the session covers it).
 */
type Cheater = { label: string; f: number } | { label: string; f: "session" | "last" };
const CHEATERS: Cheater[] = [
  { label: "f = 1% of steps", f: 0.01 },
  { label: "f = 5% of steps", f: 0.05 },
  { label: "f = 20% of steps", f: 0.2 },
  { label: "one step per session", f: "session" },
  { label: "last step of each session", f: "last" },
];

interface SimSession {
  /** Tokens of each step: the prompt, then 1 per decode step. */
  stepTokens: number[];
  /** Index into the draw pool of step 0. */
  drawAt: number;
}
/** One trial: the sessions a server serves until it has served max(SIM_TOKENS) tokens. */
function simSessions(rng: SeededRandom): SimSession[] {
  const limit = Math.max(...SIM_TOKENS);
  const between = (r: readonly [number, number]): number => r[0] + Math.floor(rng.uniform() * (r[1] - r[0] + 1));
  let at = Math.floor(rng.uniform() * SIM_POOL_STEPS);
  const sessions: SimSession[] = [];
  for (let tokens = 0; tokens < limit; ) {
    const stepTokens = [between(SIM_PROMPT), ...Array<number>(between(SIM_DECODE)).fill(1)];
    sessions.push({ stepTokens, drawAt: at });
    at = (at + stepTokens.length) % SIM_POOL_STEPS;
    tokens += stepTokens.reduce((a, x) => a + x, 0);
  }
  return sessions;
}

/**
 * Tokens served when the cheater is first caught at each rate (Infinity: never within the trial).
 * The daemon audits a sampled receipt by replaying its session's prefix (node/verifier/receiptAudit.ts):
 * it fails when ANY step up to it is corrupted and flagged. `d` is the share of corrupted steps an
 * audit flags (measured per fault kind above); a step is flagged or not once, whoever audits it.
 */
function caughtAt(sessions: readonly SimSession[], draws: Float64Array, cheater: Cheater, d: number, rng: SeededRandom, rates: readonly number[] = SIM_RATES, limitTokens = Infinity): number[] {
  const caught = rates.map(() => Infinity);
  let served = 0;
  for (const s of sessions) {
    if (served >= limitTokens) break;
    const n = s.stepTokens.length;
    // the first corrupted step that an audit flags
    let first = Infinity;
    if (typeof cheater.f === "string") {
      const c = cheater.f === "last" ? n - 1 : Math.floor(rng.uniform() * n);
      if (rng.uniform() < d) first = c;
    } else {
      const q = cheater.f * d; // a step is corrupted AND flagged: the first is geometric
      first = Math.floor(Math.log(1 - rng.uniform()) / Math.log(1 - q));
    }
    let tokens = served;
    for (let j = 0; j < n; j++) {
      tokens += s.stepTokens[j]!;
      if (j < first) continue;
      const draw = draws[(s.drawAt + j) % SIM_POOL_STEPS]!;
      for (const [r, p] of rates.entries()) if (draw <= p && tokens < caught[r]!) caught[r] = tokens;
    }
    served = tokens;
  }
  return caught;
}

/** Within the first `tokens` served tokens of a trial: whole steps, sessions begun, sessions whose last step is served. */
interface Within {
  steps: number;
  sessions: number;
  completed: number;
}
function countWithin(sessions: readonly SimSession[], tokens: number): Within {
  let served = 0;
  const w: Within = { steps: 0, sessions: 0, completed: 0 };
  for (const s of sessions) {
    if (served >= tokens) break;
    w.sessions++;
    for (const t of s.stepTokens) {
      if (served + t > tokens) return w;
      served += t;
      w.steps++;
    }
    w.completed++;
  }
  return w;
}

/** Corrupted receipts a cheater served within N tokens, each audited with p: f·steps, one per session begun, or one per session completed. */
const corruptedReceipts = (cheater: Cheater, w: Within): number =>
  cheater.f === "last" ? w.completed : cheater.f === "session" ? w.sessions : cheater.f * w.steps;

/** Closed form for a cheater whose corrupted receipts are each audited with p: 1-(1-p·d·f)^k, or 1-(1-p·d)^(one per session). */
const closedForm = (p: number, d: number, cheater: Cheater, within: Within): number =>
  typeof cheater.f === "string" ? 1 - Math.pow(1 - p * d, corruptedReceipts(cheater, within)) : 1 - Math.pow(1 - p * d * cheater.f, within.steps);

interface SimResult {
  cheater: Cheater;
  d: number;
  /** Per N, per rate: simulated share of trials caught, mean closed form over trials. */
  simulated: number[][];
  closed: number[][];
}

/** Per-step detection of each fault kind on the shipped model: the lowest over wires, dense and int4 variants. */
function detectionGroups(): { d: number; faults: string[] }[] {
  const byFault = new Map<string, number>();
  for (const f of faults.filter((x) => x.subject.startsWith("kjv-llama-6m"))) {
    const key = `${f.subject.includes("int4") ? "int4: " : "dense: "}${f.fault}`;
    byFault.set(key, Math.min(byFault.get(key) ?? 1, f.flagged / f.steps));
  }
  const groups = new Map<number, string[]>();
  for (const [fault, d] of byFault) {
    const key = Math.round(d * 1000) / 1000;
    groups.set(key, [...(groups.get(key) ?? []), fault]);
  }
  return [...groups].sort((a, b) => b[0] - a[0]).map(([d, f]) => ({ d, faults: f }));
}

const simStart = performance.now();
const draws = samplingDraws(SIM_POOL_STEPS, 41);
const sampledShare = SIM_RATES.map((p) => draws.filter((x) => x <= p).length / SIM_POOL_STEPS);
console.error(`simulation: ${SIM_POOL_STEPS} isSampled draws in ${((performance.now() - simStart) / 1000).toFixed(0)} s`);
const groups = detectionGroups();
const trialRng = new SeededRandom(43);
const trials = Array.from({ length: SIM_TRIALS }, () => simSessions(trialRng));
const withins = trials.map((t) => SIM_TOKENS.map((n) => countWithin(t, n)));
const simResults: SimResult[] = [];
const cheaterRng = new SeededRandom(47);
for (const g of groups.filter((x) => x.d > 0)) {
  for (const cheater of CHEATERS) {
    const caught = trials.map((t) => caughtAt(t, draws, cheater, g.d, cheaterRng));
    simResults.push({
      cheater,
      d: g.d,
      simulated: SIM_TOKENS.map((n) => SIM_RATES.map((_, r) => caught.filter((c) => c[r]! <= n).length / SIM_TRIALS)),
      closed: SIM_TOKENS.map((_, i) => SIM_RATES.map((p) => withins.reduce((a, w) => a + closedForm(p, g.d, cheater, w[i]!), 0) / SIM_TRIALS)),
    });
  }
}

/** The smallest rate (bisection, resolution 1e-5) at which ≥ `target` of the trials catch `cheater` within `tokens`. */
function simulatedRateFor(cheater: Cheater, d: number, tokens: number, target: number): number {
  const share = (p: number): number => {
    const rng = new SeededRandom(53); // the same cheaters at every rate: the share grows with p
    return trials.filter((t) => caughtAt(t, draws, cheater, d, rng, [p], tokens)[0]! <= tokens).length / SIM_TRIALS;
  };
  let lo = 0;
  let hi = Math.max(...SIM_RATES);
  if (share(hi) < target) return Infinity;
  while (hi - lo > 1e-5) {
    const mid = (lo + hi) / 2;
    if (share(mid) >= target) hi = mid;
    else lo = mid;
  }
  return hi;
}
const f5 = CHEATERS[1]!;
const neededSimulated = groups.filter((g) => g.d > 0).map((g) => {
  const k = withins.reduce((a, w) => a + w[1]!.steps, 0) / SIM_TRIALS;
  return { d: g.d, simulated: simulatedRateFor(f5, g.d, 10_000, 0.99), closed: rateFor(0.05 * g.d, k, 0.99), k };
});
console.error(`simulation done in ${((performance.now() - simStart) / 1000).toFixed(0)} s`);

// ------------------------------------------------------------------ when cheating does not pay

const SLASH = Number(formatEther(DEVNET_PARAMS.disputes.serverSlash));
const shippedLayers = kjv.model.config.numLayers;
const minServerStake = Number(formatEther(DEVNET_PARAMS.stake.serverBaseStake + DEVNET_PARAMS.stake.serverStakePerLayer * BigInt(shippedLayers)));
/** Tokens the cheater served without the work within the first `n` tokens (mean over trials). */
function corruptedTokens(cheater: Cheater, i: number, n: number): number {
  if (typeof cheater.f === "number") return cheater.f * n;
  // one step per session: the last is one token; a uniformly chosen one the session's tokens per step
  let sum = 0;
  for (const [ti, t] of trials.entries()) {
    const sessions = t.slice(0, cheater.f === "last" ? withins[ti]![i]!.completed : withins[ti]![i]!.sessions);
    sum += sessions.reduce((a, s) => a + (cheater.f === "last" ? 1 : s.stepTokens.reduce((x, y) => x + y, 0) / s.stepTokens.length), 0);
  }
  return sum / SIM_TRIALS;
}
/** The smallest p with (1-(1-p·d·f)^k)·slash ≥ gain (closed form: a lower bound on the daemon's catch rate, so this p suffices). */
function closedFormMinRate(cheater: Cheater, d: number, within: Within, gain: number): number {
  if (gain >= SLASH) return Infinity;
  const perReceipt = 1 - Math.pow(1 - gain / SLASH, 1 / (typeof cheater.f === "string" ? corruptedReceipts(cheater, within) : within.steps));
  return perReceipt / (d * (typeof cheater.f === "string" ? 1 : cheater.f));
}

// ------------------------------------------------------------------ report

const noiseTable = markdownTable(
  ["model / variant", "threads", "serving", "wire", "steps", "p50", "p99.9", "max", "tolerance", "bit-exact (fp32)"],
  noise.map((n) => [n.subject, String(n.threads), n.mode, n.wire, String(n.scores.length), fmt(nearestRankPercentile(n.scores, 50)), fmt(nearestRankPercentile(n.scores, 99.9)), fmt(Math.max(...n.scores)), fmt(n.tolerance), n.exact]),
  ["left", "right", "left", "left", "right", "right", "right", "right", "right", "right"],
);
const worst = new Map<number, number>();
for (const n of noise) worst.set(n.tolerance, Math.max(worst.get(n.tolerance) ?? 0, ...n.scores));
const falseAccusations = noise.reduce((a, n) => a + n.scores.filter((x) => x > n.tolerance).length, 0);
const honestSteps = noise.reduce((a, n) => a + n.scores.length, 0);
const faultTable = markdownTable(
  ["model", "fault", "wire", "faulty steps flagged", "detection rate", "smallest faulty score"],
  faults.map((f) => [f.subject, f.fault, f.wire, `${f.flagged}/${f.steps}`, `${((100 * f.flagged) / f.steps).toFixed(1)}%`, fmt(f.minScore)]),
  ["left", "left", "left", "right", "right", "right"],
);
const rates = [0.001, 0.005, needed, 0.02, 0.05];
const detectionTable = markdownTable(
  ["sample rate p", "f = 1%", "f = 5%", "f = 5%, simulated (2,000 cheaters)", "f = 20%", "replay work per served step (L = 256)"],
  rates.map((p) => [
    `${(100 * p).toFixed(2)}%`,
    detection(p, 0.01, K).toFixed(4),
    detection(p, 0.05, K).toFixed(4),
    simulate(p, 0.05, K, 2000, 3).toFixed(4),
    detection(p, 0.2, K).toFixed(4),
    `${(100 * replayShare(p, 256) * costRatio).toFixed(2)}%`,
  ]),
  ["right", "right", "right", "right", "right", "right"],
);

const sections: [string, string][] = [
  [
    "Honest noise",
    [
      `Step scores of honest servers (excess of |stored − replayed| over the wire's half quantum, relative to the row's RMS; see`,
      "node/verifier/compareOutput.ts), each step of every session replayed in one prefill pass by a 1-thread verifier. Serving:",
      `decode = ${MODES.decode.prompt}-token prompt then 1-row decode steps; batched = ${MODES.batched.sessions} concurrent sessions whose decode steps run as`,
      `one batch; chunked = a ${MODES.chunked.prompt}-row prefill the server runs in chunks of ${DEFAULT_BATCH_POLICY.maxRunTokens}. Server threads 1 or 2; the inputs and`,
      "outputs are on the named wire. Variants int8/int4 are `efed compress --method int8|int4` of the model (MatMulNBits at",
      "the accuracy level their manifest records, see \"Tolerance\"; replayed with the same variant).",
      "",
      noiseTable,
      "",
      `Largest honest score: ${[...worst].map(([t, w]) => `${fmt(w)} under tolerance ${fmt(t)}`).join("; ")}. False accusations: **${falseAccusations} of ${honestSteps} honest steps**.`,
    ].join("\n"),
  ],
  [
    "Detection per audited step",
    [
      `Each fault from the first decode step on (the prefill is honest), ${MODES.batched.sessions} concurrent sessions of ${MODES.batched.decodeSteps} decode steps; the`,
      "share of faulty steps whose score exceeds the tolerance, and the smallest score of a faulty step.",
      "",
      faultTable,
    ].join("\n"),
  ],
  [
    "Cost of auditing",
    [
      `kjv-llama-6m, all ${kjv.model.config.numLayers} layers, 1 thread, one session of ${costSteps} steps (a ${MODES.decode.prompt}-token prompt, then decode), measured in one run:`,
      `the server's engine CPU time for its steps ${served.cpuMs.toFixed(0)} ms, the verifier's one-pass replay ${replayed.cpuMs.toFixed(0)} ms:`,
      `**${(100 * costRatio).toFixed(1)}%** of the server's time to audit all ${costSteps} steps.`,
    ].join("\n"),
  ],
  [
    "Detection probability",
    [
      "A cheater corrupts a fraction f of its steps; each receipt is audited with probability p; over k steps it is caught",
      "with probability 1 − (1 − p·d·f)^k, where d is the share of audited faulty steps flagged (the table above: d = 1",
      "for every fault on dense and int4 variants on the fp32 wire, and for gross faults on every variant and wire; the table uses",
      `d = 1). Within 10,000 served tokens (k = 10,000 decode steps), catching f = 5% with ≥ 99% probability needs`,
      `**p ≥ ${(100 * needed).toFixed(3)}%**.`,
      "The last column is the verifier's expected replay work per served step at that rate, for sessions of 256 steps audited",
      "up to their last sampled step in one pass (cost ratio above times the expected replayed share of the session).",
      "",
      detectionTable,
    ].join("\n"),
  ],
];

const pct = (p: number): string => `${(100 * p).toFixed(p < 0.01 ? 2 : 1)}%`;
const rateText = (p: number): string => (p === Infinity ? "> 5%" : `${(100 * p).toPrecision(2)}%`);
const sessionTokens = trials.flatMap((t) => t.map((s) => s.stepTokens.reduce((a, x) => a + x, 0)));
const sessionSteps = trials.flatMap((t) => t.map((s) => s.stepTokens.length));
const undetected = groups.filter((g) => g.d === 0).flatMap((g) => g.faults);
const neverCaught =
  undetected.length === 0
    ? "Every fault kind measured has d > 0, so every one is caught at any sample rate above 0."
    : `Faults with d = 0 (${undetected.join("; ")}) are never caught: they stay inside their variant's tolerance.`;
const groupTable = markdownTable(
  ["per-step detection d", "fault kinds (kjv-llama-6m, lowest d over fp32/fp16/int8 wires)"],
  groups.map((g) => [g.d.toFixed(3), g.faults.join("; ")]),
  ["right", "left"],
);
const simTables = SIM_TOKENS.map((n, i) =>
  [
    `**Within ${n.toLocaleString("en-US")} served tokens** (k ≈ ${median(withins.map((w) => w[i]!.steps)).toFixed(0)} steps, median over trials): simulated / closed form`,
    "",
    markdownTable(
      ["d", "cheater", ...SIM_RATES.map((p) => `p = ${pct(p)}`)],
      simResults.map((r) => [r.d.toFixed(3), r.cheater.label, ...SIM_RATES.map((_, j) => `${r.simulated[i]![j]!.toFixed(3)} / ${r.closed[i]![j]!.toFixed(3)}`)]),
      ["right", "left", ...SIM_RATES.map(() => "right" as const)],
    ),
  ].join("\n"),
);
const neededTable = markdownTable(
  ["d", "steps in 10,000 tokens (mean)", "p needed, simulated daemon", "p needed, closed form"],
  neededSimulated.map((x) => [x.d.toFixed(3), x.k.toFixed(0), rateText(x.simulated), rateText(x.closed)]),
  ["right", "right", "right", "right"],
);
const PROFIT_RATE_INDEX = SIM_RATES.indexOf(0.01);
const profitRows: string[][] = [];
for (const r of simResults) {
  for (const [i, n] of SIM_TOKENS.entries()) {
    const corrupted = corruptedTokens(r.cheater, i, n);
    const gain = corrupted * SIM_PRICE_PER_TOKEN;
    const caught = r.simulated[i]![PROFIT_RATE_INDEX]!;
    const meanWithin = {
      steps: withins.reduce((a, w) => a + w[i]!.steps, 0) / SIM_TRIALS,
      sessions: withins.reduce((a, w) => a + w[i]!.sessions, 0) / SIM_TRIALS,
      completed: withins.reduce((a, w) => a + w[i]!.completed, 0) / SIM_TRIALS,
    };
    profitRows.push([
      r.d.toFixed(3),
      r.cheater.label,
      n.toLocaleString("en-US"),
      corrupted.toFixed(0),
      gain.toExponential(2),
      caught.toFixed(3),
      (caught * SLASH).toFixed(1),
      closedFormMinRate(r.cheater, r.d, meanWithin, gain).toExponential(1),
      caught === 0 ? "—" : (gain / caught).toExponential(1),
      corrupted === 0 ? "—" : ((caught * SLASH) / corrupted).toExponential(1),
    ]);
  }
}
const minRates = profitRows.map((r) => Number(r[7]));
const breakEven = profitRows.map((r) => Number(r[9])).filter((x) => Number.isFinite(x));
const lastStep = simResults.filter((r) => r.cheater.f === "last" && r.d === 1)[0];
const needD1 = neededSimulated[0];
const needLow = neededSimulated[neededSimulated.length - 1];
const findings = [
  "**Findings.** (1) Because an audit replays the sampled receipt's whole session prefix, one sampled receipt checks on",
  "average half a session's steps: the simulated daemon catches every spread-out cheater far sooner than the per-receipt",
  `closed form. Catching f = 5% with ≥ 99% probability within 10,000 tokens needs p ≈ ${rateText(needD1?.simulated ?? NaN)} (closed form ${rateText(needD1?.closed ?? NaN)}) for`,
  `d = ${needD1?.d.toFixed(3)}, ${rateText(needLow?.simulated ?? NaN)} (closed form ${rateText(needLow?.closed ?? NaN)}) for d = ${needLow?.d.toFixed(3)}. (2) The prefix does not help against a cheater that`,
  "corrupts only the last step of each session (no later receipt covers it): there the closed form is exact",
  `(within 10,000 tokens at p = 1%: simulated ${lastStep?.simulated[1]![2]!.toFixed(3)}, closed form ${lastStep?.closed[1]![2]!.toFixed(3)}), so the sample rate should still be sized`,
  "with the closed form for that cheater's share of steps. (3) At the devnet slash (1000 tokens) and a price of",
  `${SIM_PRICE_PER_TOKEN} tokens per token, cheating never pays at any rate in the tables: the largest minimum rate is ${Math.max(...minRates).toExponential(1)}`,
  `(about the 1e-9 resolution of isSampled), and at p = 1% cheating would break even only at a price ≥ ${Math.min(...breakEven).toExponential(1)} tokens per`,
  "token. The slash, not the sample rate, is what makes it unprofitable; the sample rate decides how soon a cheater is",
  `caught (and how many clients it fooled before). (4) ${neverCaught}`,
].join("\n");
const profitTable = markdownTable(
  ["d", "cheater", "N tokens", "tokens not worked", "gain (tokens)", "P(caught), p = 1%", "expected loss at p = 1% (tokens)", "min p that does not pay", "min slash at p = 1% (tokens)", "break-even price at p = 1% (tokens/token)"],
  profitRows,
  ["right", "left", "right", "right", "right", "right", "right", "right", "right", "right"],
);
const simulationSections: [string, string][] = [
  [
    "Detection over served tokens (simulated batches)",
    [
      `A server serves sessions shaped like the shipped model's (kjv-llama-6m, 512 positions): one prefill step of a prompt of`,
      `${SIM_PROMPT[0]}–${SIM_PROMPT[1]} tokens, then ${SIM_DECODE[0]}–${SIM_DECODE[1]} one-token decode steps (uniform; median ${median(sessionTokens).toFixed(0)} tokens in ${median(sessionSteps).toFixed(0)} steps per session,`,
      `p90 ${percentileOf(sessionTokens, 90).toFixed(0)} tokens). Its receipts are posted in batches of ${SIM_BATCH_RECEIPTS}; each batch gets a random seed block hash and each`,
      `receipt a random leaf, and the daemon's own \`isSampled(blockHash, leaf, p)\` (node/verifier/sample.ts) decides which are audited`,
      `(${SIM_POOL_STEPS.toLocaleString("en-US")} real draws, resolved by bisection to ${(Math.max(...SIM_RATES) / 2 ** 20).toExponential(1)}; a trial reads them from a random offset; measured audited`,
      `shares ${SIM_RATES.map((p, j) => `${pct(sampledShare[j]!)} at p = ${pct(p)}`).join(", ")}).`,
      `An audited receipt is replayed with its session's prefix, as the daemon does (node/verifier/receiptAudit.ts): it fails`,
      "when any step up to it is corrupted and flagged. A corrupted step is flagged with the per-step detection rate d measured",
      "above for its fault kind; fault kinds with the same d behave the same and share a row:",
      "",
      groupTable,
      "",
      `${neverCaught} Each`,
      `cell: share of ${SIM_TRIALS.toLocaleString("en-US")} simulated cheaters caught within N served tokens / the closed form 1 − (1 − p·d·f)^k (k = the steps`,
      "within N tokens; for one step per session 1 − (1 − p·d)^s over the s sessions begun, or completed for the last step), which counts a corrupted receipt as",
      "caught only when that very receipt is sampled.",
      "",
      ...simTables.flatMap((t) => [t, ""]),
      "Sample rate needed to catch f = 5% with ≥ 99% probability within 10,000 served tokens (bisection over p on the same",
      "simulated trials, resolution 1e-5):",
      "",
      neededTable,
    ].join("\n"),
  ],
  [
    "When cheating does not pay",
    [
      `Devnet parameters (scripts/lib/deployProtocol.ts): slash ${SLASH} tokens per lost dispute, minimum stake of a server with all ${shippedLayers}`,
      `layers of the shipped model ${minServerStake} tokens (so the slash is always covered). The devnet has no price; the table uses`,
      `${SIM_PRICE_PER_TOKEN} tokens per served token (the price scripts/bench/gas.ts registers servers at). The gain is the price of`,
      "the tokens the cheater served without doing the work (a corrupted step saves at most its whole compute); the",
      "expected loss is P(caught within N)·slash at p = 1%. The minimum p solves (1 − (1 − p·d·f)^k)·slash ≥ gain with the",
      "closed form, which the simulated daemon always beats, so it is sufficient; it scales linearly with the price. The",
      "last column is the price per token at which cheating would break even at p = 1%.",
      "",
      profitTable,
      "",
      findings,
    ].join("\n"),
  ],
];
if (SIMULATION_ONLY) sections.length = 0;
sections.push(...simulationSections);

for (const [heading, body] of sections) console.log(`## ${heading}\n\n${body}\n`);
writeDocSections(join(REPO_ROOT, "docs", "verification.md"), "Verification", Object.fromEntries(sections));
rmSync(scratch, { recursive: true, force: true });
