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
 * - per fault kind (test/support/faultyShard.ts) the share of faulty steps an audit flags;
 * - the verifier's CPU time for the replay as a fraction of the server's for the same steps;
 * - the detection probability 1-(1-p·f)^k and the sample rate that catches f = 5% within 10,000 tokens.
 * With --write, replaces the measured sections of docs/verification.md.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ModelDirectory } from "../../engine/model/modelDir.js";
import { tinyConfig, writeRandomModel } from "../../engine/model/randomModel.js";
import { Head } from "../../engine/runtime/head.js";
import { Shard } from "../../engine/runtime/shard.js";
import { SeededRandom } from "../../engine/random.js";
import { decodeActivations, encodeActivations, type ActivationEncoding, type EncodedActivations } from "../../protocol/activations.js";
import { compressModel } from "../../node/compress/compressModel.js";
import { EngineScheduler, DEFAULT_BATCH_POLICY } from "../../node/server/engineScheduler.js";
import { compareOutput, toleranceFor } from "../../node/verifier/compareOutput.js";
import { faultyShard, type Fault } from "../../test/support/faultyShard.js";
import { REPO_ROOT } from "./lib/benchModels.js";
import { replaceSection } from "./lib/docs.js";
import { markdownTable } from "./lib/markdown.js";

const WRITE = process.argv.includes("--write");
const WIRES: ActivationEncoding[] = ["fp32", "fp16", "int8"];
const scratch = mkdtempSync(join(tmpdir(), "efed-bench-verify-"));

// ------------------------------------------------------------------ statistics

const sorted = (xs: readonly number[]): number[] => [...xs].sort((a, b) => a - b);
/** The q-quantile (nearest rank) of xs. */
function percentile(xs: readonly number[], q: number): number {
  const s = sorted(xs);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))]!;
}
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
    subjects.push({ label: `${d.label}, ${method} (MatMulNBits)`, model: ModelDirectory.open(out), head });
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
for (const s of subjects) {
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
    [`another variant's weights (${alternative.label.split(", ")[1] ?? "dense"})`, { kind: "otherWeights", other: cheaper }],
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
const served = await serve(costServer, kjv.head, { sessions: 1, prompt: MODES.decode.prompt, decodeSteps: costSteps - 1 }, "fp32", 5);
const replayed = await replay(costVerifier, served.sessions[0]!, ["fp32"]);
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

// ------------------------------------------------------------------ report

const noiseTable = markdownTable(
  ["model / variant", "threads", "serving", "wire", "steps", "p50", "p99.9", "max", "tolerance", "bit-exact (fp32)"],
  noise.map((n) => [n.subject, String(n.threads), n.mode, n.wire, String(n.scores.length), fmt(percentile(n.scores, 0.5)), fmt(percentile(n.scores, 0.999)), fmt(Math.max(...n.scores)), fmt(n.tolerance), n.exact]),
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
      "outputs are on the named wire. Variants int8/int4 are `efed compress --method int8|int4` of the model (MatMulNBits,",
      "replayed with the same variant).",
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
      "for every fault on dense variants on the fp32 wire, and for gross faults on every variant and wire; the table uses",
      `d = 1). Within 10,000 served tokens (k = 10,000 decode steps), catching f = 5% with ≥ 99% probability needs`,
      `**p ≥ ${(100 * needed).toFixed(3)}%**.`,
      "The last column is the verifier's expected replay work per served step at that rate, for sessions of 256 steps audited",
      "up to their last sampled step in one pass (cost ratio above times the expected replayed share of the session).",
      "",
      detectionTable,
    ].join("\n"),
  ],
];

for (const [heading, body] of sections) console.log(`## ${heading}\n\n${body}\n`);
if (WRITE) {
  const path = join(REPO_ROOT, "docs", "verification.md");
  let doc = existsSync(path) ? readFileSync(path, "utf8") : "# Verification\n";
  for (const [heading, body] of sections) doc = replaceSection(doc, heading, body);
  writeFileSync(path, doc);
  console.error(`wrote ${path}`);
}
rmSync(scratch, { recursive: true, force: true });
