/**
 * npm run bench:network — what serving a model over a route of shard servers costs, for the
 * shipped model and a SmolLM2-135M-shaped model with random weights:
 *
 *   1. decode speed in one process (LocalPipeline), the baseline measured in this same run;
 *   2. decode speed through routes of 1, 2 and 4 `efed server` child processes on loopback
 *      (client = RemotePipeline + Head in this process, fp32 on the wire), as a share of the baseline,
 *      with the client relaying every hop and, for 2 and 4 servers, with the servers forwarding;
 *   3. the latency each hop adds: (median route step − median single-process step) ÷ hops;
 *   4. bytes on the wire per decode token per hop for fp32/fp16/int8, counted on the TCP stream by a
 *      relay that parses the WebSocket frames, and the token agreement of fp16/int8 with fp32
 *      (greedy, teacher-forced on the fp32 route's tokens) on the shipped model;
 *   5. total tokens/s with 1, 4 and 8 concurrent sessions through a 2-server route (forwarded);
 *   6. relayed against forwarded steps over simulated wide-area links (a delaying relay in front of
 *      every server, which the client and the forwarding servers both go through; shipped model).
 *
 * Baseline and routes are measured in interleaved rounds (the machine is noisy) and compared by
 * medians. With --write, replaces the "Network" section of docs/benchmarks.md. Every server process is killed at
 * the end, also on error or Ctrl-C.
 */
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { cpus, loadavg, tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { SigningKey, ZeroAddress, computeAddress, hexlify, randomBytes } from "ethers";
import { WebSocket } from "ws";
import { BatchingHead } from "../../client/batchingHead.js";
import { generate, type LayerPipeline } from "../../client/generate.js";
import { LocalPipeline } from "../../client/localPipeline.js";
import { RemotePipeline } from "../../client/remotePipeline.js";
import { argmax } from "../../client/sampler.js";
import { ShardConnection } from "../../client/shardClient.js";
import { TextTokenizer } from "../../engine/model/tokenizer.js";
import { ModelDirectory } from "../../engine/model/modelDir.js";
import { PUBLIC_SHAPES } from "../../engine/model/randomModel.js";
import { Head } from "../../engine/runtime/head.js";
import {
  ACTIVATION_ENCODINGS,
  activationHash,
  decodeActivations,
  encodeActivations,
  payloadBytes,
  type ActivationEncoding,
} from "../../protocol/activations.js";
import { receiptDomain } from "../../protocol/eip712.js";
import { receiptDigest, recoverReceiptSigner, type Receipt } from "../../protocol/receipt.js";
import { MessageType, decodeMessage, encodeMessage, type Step, type StepReceipt, type StepResult } from "../../protocol/wire.js";
import { ensureGenerated } from "./lib/benchModels.js";
import { writeDocSections } from "./lib/docs.js";
import { fmtInt, markdownTable } from "./lib/markdown.js";
import { CountingProxy, type FrameRecord } from "./lib/networkProxy.js";
import { evenSplit, startEcho, startServer, stopAll, stopServers, type RunningServer } from "./lib/networkServers.js";
import { median } from "./lib/stats.js";

const root = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const SHIPPED_DIR = join(root, "models", "kjv-llama-6m");

const ROUTE_SIZES = [1, 2, 4] as const;
/** Route sizes also measured with forwarding (one server has nothing to forward to). */
const FORWARD_SIZES = [2, 4] as const;
const CONCURRENCY = [1, 4, 8] as const;
/** Decode steps whose frames are counted per encoding. */
const BYTE_STEPS = 16;
/** Greedy tokens per prompt in the agreement test (teacher-forced). */
const AGREEMENT_TOKENS = 64;
/** Tokens a session may hold on the servers (the route asks for no more). */
const SESSION_TOKENS = 256;
/** One-way delay of every simulated wide-area link, ms. */
const WAN_DELAY_MS = 5;
/** Timed decode steps per configuration over the simulated wide-area links. */
const WAN_STEPS = 24;

interface Plan {
  label: string;
  dir: string;
  /** Timed decode steps per configuration and round. */
  decodeTokens: number;
  /** Rounds of (baseline, route 1, route 2, route 4), in rotating order. */
  rounds: number;
  /** Tokens each session generates in the concurrency test. */
  concurrentTokens: number;
  /** Repetitions of each concurrency level (median taken). */
  concurrentReps: number;
  prompts: number[][];
  agreement: boolean;
}

const KJV_PROMPTS = [
  "In the beginning God created the heaven and the earth.",
  "And God said, Let there be light:",
  "The LORD is my shepherd; I shall not want.",
  "And it came to pass in those days,",
  "Blessed are the poor in spirit:",
  "Then said Jesus unto them,",
  "And Moses spake unto the children of Israel, saying,",
  "For God so loved the world,",
];


const pct = (x: number): string => `${(100 * x).toFixed(0)}%`;

// ------------------------------------------------------------------ measurements

/**
 * Time spent inside ShardConnection.step calls (request sent → reply parsed), summed: wrapping the
 * method in this process splits a route step into the servers' round trips and the client's own work.
 */
let roundTripClock = 0;
const plainStep = ShardConnection.prototype.step;
ShardConnection.prototype.step = async function (this: ShardConnection, step: Parameters<typeof plainStep>[0]) {
  const a = performance.now();
  try {
    return await plainStep.call(this, step);
  } finally {
    roundTripClock += performance.now() - a;
  }
};

interface DecodeRun {
  stepMs: number[];
  /** Part of each step spent in the layers (sequence.forward): local compute, or the whole route. */
  forwardMs: number[];
  /** Part of each step spent waiting on server round trips (0 for the single process). */
  roundTripMs: number[];
  /** Greedy tokens: the one predicted after the prompt, then one per timed step. */
  tokens: number[];
}

/** Prefills `prompt`, then decodes `steps` greedy tokens, timing each step as a client sees it (embed → layers → LM head → argmax). */
async function decodeRun(head: Head, pipeline: LayerPipeline, prompt: readonly number[], steps: number): Promise<DecodeRun> {
  const H = head.config.hiddenSize;
  const sequence = await pipeline.openSequence();
  try {
    const prefill = await sequence.compute(head.embed(prompt));
    let next = argmax(await head.logits(prefill.subarray(prefill.length - H)));
    const tokens = [next];
    const stepMs: number[] = [];
    const forwardMs: number[] = [];
    const roundTripMs: number[] = [];
    for (let s = 0; s < steps; s++) {
      const t0 = performance.now();
      const embedded = head.embed([next]);
      const rt0 = roundTripClock;
      const t1 = performance.now();
      const hidden = await sequence.compute(embedded);
      forwardMs.push(performance.now() - t1);
      roundTripMs.push(roundTripClock - rt0);
      next = argmax(await head.logits(hidden));
      stepMs.push(performance.now() - t0);
      tokens.push(next);
    }
    return { stepMs, forwardMs, roundTripMs, tokens };
  } finally {
    await sequence.close();
  }
}

/** Teacher-forced greedy agreement: feeds the reference prefix at every position and counts argmax matches. */
async function teacherForced(head: Head, pipeline: LayerPipeline, prompt: readonly number[], reference: readonly number[]): Promise<number> {
  const H = head.config.hiddenSize;
  const sequence = await pipeline.openSequence();
  let matches = 0;
  try {
    let hidden = await sequence.compute(head.embed(prompt));
    for (let i = 0; i < reference.length; i++) {
      if (i > 0) hidden = await sequence.compute(head.embed([reference[i - 1]!]));
      if (argmax(await head.logits(hidden.subarray(hidden.length - H))) === reference[i]) matches++;
    }
    return matches;
  } finally {
    await sequence.close();
  }
}

interface SpeedRow {
  name: string;
  hops: number;
  /** How hidden states travel between servers: relayed by the client, or forwarded server to server. */
  mode: "local" | "relay" | "forward";
  medianStepMs: number;
  medianForwardMs: number;
  medianRoundTripMs: number;
  steps: number;
}

interface BytesRow {
  encoding: ActivationEncoding;
  stepFrame: number;
  resultFrame: number;
  receiptFrame: number;
  wsHeaders: number;
  tcpPerTokenPerHop: number;
  payload: number;
}

interface ConcurrencyRow {
  sessions: number;
  tokensPerSecond: number;
  wallSeconds: number;
}

interface WanRow {
  hops: number;
  relayedMs: number;
  forwardedMs: number;
}

interface AgreementRow {
  encoding: ActivationEncoding;
  positions: number;
  matches: number;
}

interface ModelResult {
  plan: Plan;
  hiddenSize: number;
  layers: number;
  splits: Record<number, [number, number][]>;
  speed: SpeedRow[];
  /** Median loopback WebSocket round trip to a bare echo process, measured between the speed rounds. */
  echoMs: number;
  bytes: BytesRow[];
  concurrency: ConcurrencyRow[];
  agreement: AgreementRow[];
  /** Median decode step over simulated wide-area links (shipped model only). */
  wan: WanRow[];
  /** Whether the fp32 route produced exactly the single-process greedy tokens. */
  fp32RouteExact: boolean;
  startSeconds: number;
}

async function connect(servers: readonly RunningServer[], layers: number, encoding: ActivationEncoding, forward: boolean): Promise<RemotePipeline> {
  return RemotePipeline.connect(
    servers.map((s) => s.url),
    layers,
    { encoding, maxLength: SESSION_TOKENS, forward },
  );
}

async function benchModel(plan: Plan, storeDir: string, echoUrl: string): Promise<ModelResult> {
  const model = ModelDirectory.open(plan.dir);
  const L = model.config.numLayers;
  const H = model.config.hiddenSize;
  const splits: Record<number, [number, number][]> = {};
  for (const k of ROUTE_SIZES) splits[k] = evenSplit(L, k);

  console.error(`\n== ${plan.label}: starting ${ROUTE_SIZES.reduce((a, k) => a + k, 0)} server processes …`);
  const t0 = performance.now();
  const routes: Record<number, RunningServer[]> = {};
  const started = await Promise.allSettled(
    ROUTE_SIZES.map(async (k) => {
      routes[k] = await Promise.all(splits[k]!.map(([f, l]) => startServer(root, plan.dir, f, l, storeDir)));
    }),
  );
  const failed = started.find((s) => s.status === "rejected");
  if (failed !== undefined) throw (failed as PromiseRejectedResult).reason;
  const startSeconds = (performance.now() - t0) / 1000;
  console.error(`   servers up in ${startSeconds.toFixed(1)} s`);

  const head = await Head.load(model, { threads: 1 });
  const local = await LocalPipeline.load(model, [], { threads: 1 });
  const remote: Record<number, RemotePipeline> = {};
  const forwarded: Record<number, RemotePipeline> = {};
  for (const k of ROUTE_SIZES) remote[k] = await connect(routes[k]!, L, "fp32", false);
  for (const k of FORWARD_SIZES) forwarded[k] = await connect(routes[k]!, L, "fp32", true);
  try {
    // ---- 1–3: decode speed, baseline and routes in interleaved rounds
    const configs: { name: string; hops: number; mode: SpeedRow["mode"]; pipeline: LayerPipeline }[] = [
      { name: "single process", hops: 0, mode: "local", pipeline: local },
      ...ROUTE_SIZES.map((k) => ({ name: `route of ${k}, relayed`, hops: k, mode: "relay" as const, pipeline: remote[k]! })),
      ...FORWARD_SIZES.map((k) => ({ name: `route of ${k}, forwarded`, hops: k, mode: "forward" as const, pipeline: forwarded[k]! })),
    ];
    for (const c of configs) await decodeRun(head, c.pipeline, plan.prompts[0]!, 4); // warm-up
    const stepMs = new Map<string, number[]>(configs.map((c) => [c.name, []]));
    const forwardMs = new Map<string, number[]>(configs.map((c) => [c.name, []]));
    const roundTripMs = new Map<string, number[]>(configs.map((c) => [c.name, []]));
    const echoMs: number[] = [];
    for (let r = 0; r < plan.rounds; r++) {
      echoMs.push(await echoRoundTrip(echoUrl, payloadBytes("fp32", 1, H) + 64, 40));
      for (let i = 0; i < configs.length; i++) {
        const c = configs[(i + r) % configs.length]!;
        const run = await decodeRun(head, c.pipeline, plan.prompts[r % plan.prompts.length]!, plan.decodeTokens);
        stepMs.get(c.name)!.push(...run.stepMs);
        forwardMs.get(c.name)!.push(...run.forwardMs);
        roundTripMs.get(c.name)!.push(...run.roundTripMs);
      }
      console.error(`   round ${r + 1}/${plan.rounds}: ` + configs.map((c) => `${c.name} ${median(stepMs.get(c.name)!).toFixed(2)} ms`).join(", "));
    }
    const speed = configs.map((c) => ({
      name: c.name,
      hops: c.hops,
      mode: c.mode,
      medianStepMs: median(stepMs.get(c.name)!),
      medianForwardMs: median(forwardMs.get(c.name)!),
      medianRoundTripMs: median(roundTripMs.get(c.name)!),
      steps: stepMs.get(c.name)!.length,
    }));

    // ---- 4a: bytes on the wire per decode token per hop, per encoding (2-server route behind counting relays)
    const bytes: BytesRow[] = [];
    for (const encoding of ACTIVATION_ENCODINGS) {
      const proxies = await Promise.all(routes[2]!.map((s) => CountingProxy.start(s.url)));
      // relayed: every hop's frames pass the client, so one relay per server sees them all
      const pipe = await RemotePipeline.connect(
        proxies.map((p) => p.url),
        L,
        { encoding, maxLength: SESSION_TOKENS, forward: false },
      );
      try {
        const sequence = await pipe.openSequence();
        const prefill = await sequence.compute(head.embed(plan.prompts[0]!));
        let next = argmax(await head.logits(prefill.subarray(prefill.length - H)));
        // receipts trail their step's output: let the prefill's arrive before counting, and the last step's after
        const settle = (): Promise<void> => new Promise((resolve) => setTimeout(resolve, 100));
        await settle();
        for (const p of proxies) p.reset();
        for (let s = 0; s < BYTE_STEPS; s++) next = argmax(await head.logits(await sequence.compute(head.embed([next]))));
        await settle();
        const up = proxies.flatMap((p) => p.up.frames);
        const down = proxies.flatMap((p) => p.down.frames);
        const tcp = proxies.reduce((a, p) => a + p.up.tcpBytes + p.down.tcpBytes, 0);
        await sequence.close();
        const hopSteps = BYTE_STEPS * proxies.length;
        const steps = up.filter((f) => f.messageType === MessageType.Step);
        const results = down.filter((f) => f.messageType === MessageType.StepResult);
        const receipts = down.filter((f) => f.messageType === MessageType.StepReceipt);
        if (steps.length !== hopSteps || results.length !== hopSteps || receipts.length !== hopSteps) {
          throw new Error(
            `counted ${steps.length} Step, ${results.length} StepResult and ${receipts.length} StepReceipt frames for ${hopSteps} hop-steps`,
          );
        }
        const mean = (fs: FrameRecord[], f: (r: FrameRecord) => number): number => fs.reduce((a, r) => a + f(r), 0) / fs.length;
        bytes.push({
          encoding,
          stepFrame: mean(steps, (f) => f.payloadBytes),
          resultFrame: mean(results, (f) => f.payloadBytes),
          receiptFrame: mean(receipts, (f) => f.payloadBytes),
          wsHeaders: mean(steps, (f) => f.headerBytes) + mean(results, (f) => f.headerBytes) + mean(receipts, (f) => f.headerBytes),
          tcpPerTokenPerHop: tcp / hopSteps,
          payload: 2 * payloadBytes(encoding, 1, H),
        });
      } finally {
        pipe.close();
        await Promise.all(proxies.map((p) => p.close()));
      }
    }

    // ---- 4b: token agreement of fp16/int8 with fp32 (teacher-forced on the fp32 route's greedy tokens)
    const agreement: AgreementRow[] = [];
    let fp32RouteExact = true;
    if (plan.agreement) {
      const references: number[][] = [];
      for (const prompt of plan.prompts.slice(0, 4)) {
        const ref = (await decodeRun(head, forwarded[2]!, prompt, AGREEMENT_TOKENS - 1)).tokens;
        const loc = (await decodeRun(head, local, prompt, AGREEMENT_TOKENS - 1)).tokens;
        if (ref.join() !== loc.join()) fp32RouteExact = false;
        references.push(ref);
      }
      for (const encoding of ["fp16", "int8"] as const) {
        const pipe = await connect(routes[2]!, L, encoding, true);
        try {
          let matches = 0;
          for (let i = 0; i < references.length; i++) matches += await teacherForced(head, pipe, plan.prompts[i]!, references[i]!);
          agreement.push({ encoding, positions: references.length * AGREEMENT_TOKENS, matches });
        } finally {
          pipe.close();
        }
      }
    }

    // ---- 5: concurrent sessions through the 2-server route
    const concurrency: ConcurrencyRow[] = [];
    const sharedHead = new BatchingHead(head); // one client process serving many sequences shares its LM head runs
    for (const sessions of CONCURRENCY) {
      const walls: number[] = [];
      let tokens = 0;
      for (let rep = 0; rep < plan.concurrentReps; rep++) {
        const a = performance.now();
        const results = await Promise.all(
          Array.from({ length: sessions }, (_, i) =>
            generate(sharedHead, forwarded[2]!, plan.prompts[i % plan.prompts.length]!, { maxTokens: plan.concurrentTokens, temperature: 0 }),
          ),
        );
        walls.push((performance.now() - a) / 1000);
        tokens = results.reduce((n, r) => n + r.generatedIds.length, 0);
      }
      const wall = median(walls);
      concurrency.push({ sessions, tokensPerSecond: tokens / wall, wallSeconds: wall });
      console.error(`   ${sessions} concurrent session(s): ${(tokens / wall).toFixed(1)} tok/s`);
    }

    // ---- 6: relayed against forwarded over simulated wide-area links
    const wan: WanRow[] = [];
    if (plan.agreement) {
      for (const k of FORWARD_SIZES) {
        const proxies = await Promise.all(routes[k]!.map((s) => CountingProxy.start(s.url, WAN_DELAY_MS)));
        const medians: Record<string, number> = {};
        try {
          for (const forward of [false, true]) {
            const pipe = await RemotePipeline.connect(
              proxies.map((p) => p.url),
              L,
              { encoding: "fp32", maxLength: SESSION_TOKENS, forward },
            );
            try {
              await decodeRun(head, pipe, plan.prompts[0]!, 2); // warm-up: opens the servers' links to each other
              medians[String(forward)] = median((await decodeRun(head, pipe, plan.prompts[1]!, WAN_STEPS)).stepMs);
            } finally {
              pipe.close();
            }
          }
        } finally {
          await Promise.all(proxies.map((p) => p.close()));
        }
        wan.push({ hops: k, relayedMs: medians.false!, forwardedMs: medians.true! });
        console.error(`   ${WAN_DELAY_MS} ms links, ${k} servers: relayed ${medians.false!.toFixed(1)} ms, forwarded ${medians.true!.toFixed(1)} ms`);
      }
    }

    return { plan, hiddenSize: H, layers: L, splits, speed, echoMs: median(echoMs), bytes, concurrency, agreement, wan, fp32RouteExact, startSeconds };
  } finally {
    for (const k of ROUTE_SIZES) remote[k]?.close();
    for (const k of FORWARD_SIZES) forwarded[k]?.close();
    await local.release();
    await head.release();
    model.close();
    await stopServers(Object.values(routes).flat());
  }
}

/** Median round trip (ms) of a `bytes`-byte binary message to the echo server at `url`, over `n` trips. */
async function echoRoundTrip(url: string, bytes: number, n: number): Promise<number> {
  const ws = new WebSocket(url, { perMessageDeflate: false });
  await new Promise<void>((resolve, reject) => {
    ws.once("open", () => resolve());
    ws.once("error", reject);
  });
  const payload = randomBytes(bytes);
  const trip = (): Promise<void> =>
    new Promise((resolve) => {
      ws.once("message", () => resolve());
      ws.send(payload);
    });
  const xs: number[] = [];
  try {
    for (let i = 0; i < n + 10; i++) {
      const a = performance.now();
      await trip();
      if (i >= 10) xs.push(performance.now() - a);
    }
  } finally {
    ws.close();
  }
  return median(xs);
}

/** Median µs of `f` over `n` calls (after a few warm-up calls). */
function microseconds(n: number, f: () => void): number {
  for (let i = 0; i < 5; i++) f();
  const xs: number[] = [];
  for (let i = 0; i < n; i++) {
    const a = performance.now();
    f();
    xs.push((performance.now() - a) * 1000);
  }
  return median(xs);
}

interface HopCpu {
  frames: number;
  hashes: number;
  sign: number;
  recover: number;
  store: number;
}

/**
 * CPU a hop spends outside the layers for one fp32 decode step, measured in this process with the
 * same functions the server and client call: frame encode/decode on both sides, the four activation
 * hashes (server: input and output for the receipt; client: the same to check it), receipt signing,
 * signature recovery, and the SQLite insert of the activations.
 */
async function hopCpu(hiddenSize: number, storeDir: string): Promise<HopCpu> {
  // node:sqlite prints an "experimental" warning when loaded; bin/efed.mjs silences it the same way
  const emitWarning = process.emitWarning.bind(process);
  process.emitWarning = ((warning: string | Error, ...rest: never[]) => {
    if (!String(warning).includes("SQLite is an experimental feature")) emitWarning(warning, ...rest);
  }) as typeof process.emitWarning;
  const { ActivationStore } = await import("../../node/store/activationStore.js");
  const key = new SigningKey(hexlify(randomBytes(32)));
  const domain = receiptDomain(0n, ZeroAddress);
  const values = Float32Array.from({ length: hiddenSize }, (_, i) => Math.sin(i));
  const input = encodeActivations(values, 1, hiddenSize, "fp32");
  const output = encodeActivations(values.map((v) => v * 0.5), 1, hiddenSize, "fp32");
  const sessionId = hexlify(randomBytes(32));
  const address = computeAddress(key.publicKey);
  const receipt: Receipt = {
    sessionId,
    step: 7n,
    firstLayer: 0,
    lastLayer: 4,
    variantId: hexlify(randomBytes(32)),
    inputHash: activationHash(input),
    outputHash: activationHash(output),
    tokens: 1,
    server: address,
  };
  const signature = key.sign(receiptDigest(domain, receipt)).serialized;
  const step: Step = { type: MessageType.Step, requestId: 1, sessionId, step: 7n, position: 20, outputEncoding: "fp32", input, route: [] };
  const result: StepResult = {
    type: MessageType.StepResult,
    requestId: 1,
    sessionId,
    step: 7n,
    output,
  };
  const receiptFrame: StepReceipt = {
    type: MessageType.StepReceipt,
    requestId: 1,
    sessionId,
    step: 7n,
    signed: { server: address, firstLayer: 0, lastLayer: 4, inputHash: receipt.inputHash, outputHash: receipt.outputHash, signature },
  };
  const frames = microseconds(500, () => {
    decodeActivations((decodeMessage(encodeMessage(step)) as Step).input);
    decodeActivations((decodeMessage(encodeMessage(result)) as StepResult).output);
    decodeMessage(encodeMessage(receiptFrame));
    encodeActivations(values, 1, hiddenSize, "fp32");
    encodeActivations(values, 1, hiddenSize, "fp32");
  });
  const hashes = microseconds(500, () => {
    for (let i = 0; i < 2; i++) {
      activationHash(input);
      activationHash(output);
    }
  });
  const sign = microseconds(200, () => key.sign(receiptDigest(domain, receipt)));
  const recover = microseconds(200, () => recoverReceiptSigner(domain, receipt, signature));
  const store = ActivationStore.open(join(storeDir, `hop-cpu-${hiddenSize}.sqlite`), { retentionMs: 3600_000, maxBytes: 1024 ** 3 });
  let n = 0;
  const storeUs = microseconds(300, () => store.put({ receipt: { ...receipt, step: BigInt(n++) }, signature, input, output, createdAtMs: Date.now() }));
  store.close();
  return { frames, hashes, sign, recover, store: storeUs };
}

// ------------------------------------------------------------------ report

function report(results: ModelResult[], hop: Map<number, HopCpu>, meta: { seconds: number; loadStart: number[]; loadEnd: number[] }): string {
  const out: string[] = [];
  const cpu = cpus();
  out.push(
    `Machine: ${cpu.length} × ${cpu[0]?.model ?? "unknown CPU"}; load average ${meta.loadStart.map((x) => x.toFixed(1)).join(" / ")} ` +
      `(1/5/15 min) at the start, ${meta.loadEnd.map((x) => x.toFixed(1)).join(" / ")} at the end; the run took ${(meta.seconds / 60).toFixed(1)} min.`,
    "Every server is its own `efed server` process on 127.0.0.1 (1 intra-op thread, receipts signed and stored in SQLite as in",
    "production); the client (embedding, LM head, receipt checks) runs in the benchmark process with 1 thread. A decode step",
    "is timed as the client sees it: embed → every hop in turn → LM head → argmax. Baseline and routes run in interleaved",
    "rounds and are compared by median step time.",
    "",
  );

  out.push("### Decode through a route (fp32 on the wire)", "");
  const speedRows: string[][] = [];
  for (const r of results) {
    const base = r.speed.find((s) => s.hops === 0)!;
    for (const s of r.speed) {
      const ratio = base.medianStepMs / s.medianStepMs;
      const goal = s.hops === 2 ? 0.9 : s.hops === 4 ? 0.8 : undefined;
      const perHop = s.hops === 0 ? "—" : ((s.medianStepMs - base.medianStepMs) / s.hops).toFixed(2);
      // only relayed steps go through ShardConnection.step, whose calls split a hop into server and client time
      const split = s.mode === "relay";
      const inServer = split ? ((s.medianRoundTripMs - base.medianForwardMs) / s.hops).toFixed(2) : "—";
      const inClient = split ? ((s.medianForwardMs - s.medianRoundTripMs) / s.hops).toFixed(2) : "—";
      const servers = (): string => `${s.hops} server${s.hops > 1 ? "s" : ""} (${r.splits[s.hops]!.map(([a, b]) => `${a}:${b}`).join(", ")})`;
      speedRows.push([
        r.plan.label,
        s.hops === 0 ? "single process (baseline)" : `${servers()}, ${s.mode === "forward" ? "**forwarded**" : "relayed"}`,
        s.medianStepMs.toFixed(2),
        (1000 / s.medianStepMs).toFixed(1),
        s.hops === 0 ? "100%" : `**${pct(ratio)}**${goal === undefined ? "" : ratio >= goal ? ` (goal ≥ ${pct(goal)}: met)` : ` (goal ≥ ${pct(goal)}: missed)`}`,
        s.hops === 0 ? "—" : `**${perHop}** (${Number(perHop) <= 2 ? "met" : "missed"})`,
        inServer,
        inClient,
        String(s.steps),
      ]);
    }
  }
  out.push(
    markdownTable(
      [
        "model",
        "layers served by",
        "median step ms",
        "decode tok/s",
        "% of single process",
        "added ms per hop (goal ≤ 2)",
        "per hop: server round trip beyond the layers ms",
        "per hop: client side ms",
        "steps timed",
      ],
      speedRows,
      ["left", "left", "right", "right", "right", "right", "right", "right", "right"],
    ),
    "",
    "Added ms per hop = (median route step − median single-process step) ÷ number of servers. **Relayed**: each hop is a",
    "client → server → client round trip. **Forwarded**: the client sends the step to the first server with the rest of the",
    "route, each server sends its output to the next, the last one sends it to the client (k + 1 messages on the critical",
    "path instead of 2k); receipts still go from every server to the client directly. A relayed hop is split, by timing the",
    "client's ShardConnection.step calls, into the time inside the servers' round trips beyond the layers' own compute",
    "(median round-trip time − median single-process layer time, ÷ servers: wire, frame parsing, hashing, signing, SQLite)",
    "and the client's own work per hop (median route forward − median round-trip time, ÷ servers: encoding, hashes,",
    "receipt signature recovery). Medians of parts do not add up exactly to the median of the whole.",
    "",
  );

  out.push("### CPU per hop outside the layers (one fp32 decode token, measured in-process)", "");
  const hopRows: string[][] = [];
  for (const r of results) {
    const h = hop.get(r.hiddenSize)!;
    const total = h.frames + h.hashes + h.sign + h.recover + h.store;
    const measured = r.speed.filter((s) => s.mode === "relay").map((s) => (s.medianStepMs - r.speed[0]!.medianStepMs) / s.hops);
    hopRows.push([
      `${r.plan.label} (hidden ${r.hiddenSize})`,
      h.frames.toFixed(0),
      h.hashes.toFixed(0),
      h.sign.toFixed(0),
      h.recover.toFixed(0),
      h.store.toFixed(0),
      (total / 1000).toFixed(2),
      r.echoMs.toFixed(2),
      `**${(total / 1000 + r.echoMs).toFixed(2)}**`,
      `${Math.min(...measured).toFixed(2)}–${Math.max(...measured).toFixed(2)}`,
    ]);
  }
  out.push(
    markdownTable(
      [
        "model",
        "frames encode+decode µs",
        "4 activation hashes µs",
        "server: sign receipt µs",
        "client: recover signer µs",
        "server: SQLite put µs",
        "CPU sum ms",
        "echo round trip ms",
        "CPU + echo ms",
        "measured added ms per hop",
      ],
      hopRows,
      ["left", "right", "right", "right", "right", "right", "right", "right", "right", "right"],
    ),
    "",
    "What a hop adds besides its layers, one item at a time with the functions the client and server call (median µs,",
    "fp32 decode row): both frames encoded and parsed, the activation hashes (the server's receipt and the client's check),",
    "the server's ECDSA receipt signature, the client's signature recovery, and the server's SQLite insert of the step. The",
    "echo round trip is a same-sized binary WebSocket message to a bare `ws` echo process and back (median, measured between",
    "the speed rounds): the floor of any hop on this machine. The measured range is over the relayed 1-, 2- and 4-server routes.",
    "",
  );

  out.push("### Bytes on the wire per decode token per hop", "");
  const byteRows: string[][] = [];
  for (const r of results) {
    const fp32 = r.bytes.find((b) => b.encoding === "fp32")!;
    for (const b of r.bytes) {
      const frames = b.stepFrame + b.resultFrame + b.receiptFrame;
      byteRows.push([
        `${r.plan.label} (hidden ${r.hiddenSize})`,
        b.encoding,
        fmtInt(b.stepFrame),
        fmtInt(b.resultFrame),
        fmtInt(b.receiptFrame),
        fmtInt(frames),
        fmtInt(b.wsHeaders),
        `**${fmtInt(b.tcpPerTokenPerHop)}**`,
        fmtInt(b.payload),
        pct(b.tcpPerTokenPerHop / fp32.tcpPerTokenPerHop),
      ]);
    }
  }
  out.push(
    markdownTable(
      [
        "model",
        "encoding",
        "Step frame B",
        "StepResult frame B",
        "StepReceipt frame B",
        "all frames B",
        "WebSocket headers B",
        "TCP payload B (both ways)",
        "of which activations B",
        "vs fp32",
      ],
      byteRows,
      ["left", "left", "right", "right", "right", "right", "right", "right", "right", "right"],
    ),
    "",
    `Counted by a relay between the client and each server of a 2-server route that parses the WebSocket frames on the`,
    `TCP stream, over ${BYTE_STEPS} decode steps after the prefill; per hop and token = counted ÷ (steps × servers). The Step`,
    "frame carries a 32-byte session id, step, position and encodings besides the activations; the StepReceipt frame that",
    "follows each StepResult carries the hop's receipt (server address, layer range, 65-byte signature). IP/TCP headers are",
    "not included.",
    "",
  );

  const shipped = results.find((r) => r.plan.agreement);
  if (shipped !== undefined) {
    out.push("### fp16 / int8 activations: greedy token agreement with fp32 (shipped model)", "");
    out.push(
      markdownTable(
        ["encoding", "positions", "same argmax as fp32", "agreement (goal ≥ 99%)"],
        shipped.agreement.map((a) => [
          a.encoding,
          String(a.positions),
          String(a.matches),
          `**${((100 * a.matches) / a.positions).toFixed(1)}%** (${a.matches / a.positions >= 0.99 ? "met" : "missed"})`,
        ]),
        ["left", "right", "right", "right"],
      ),
      "",
      `Teacher-forced: the fp32 route (2 servers) generates ${AGREEMENT_TOKENS} greedy tokens for each of ${shipped.agreement[0]?.positions !== undefined ? shipped.agreement[0].positions / AGREEMENT_TOKENS : 0} prompts;`,
      "the fp16 / int8 route is then fed the same prompt and the same reference tokens, and its argmax at every position is",
      "compared with the reference token (so one disagreement does not derail the rest).",
      `The fp32 route ${shipped.fp32RouteExact ? "reproduced" : "did NOT reproduce"} the single-process greedy tokens exactly.`,
      "",
    );
  }

  const wanModel = results.find((r) => r.wan.length > 0);
  if (wanModel !== undefined) {
    out.push(`### Relayed against forwarded over ${WAN_DELAY_MS} ms links (simulated wide area, ${wanModel.plan.label})`, "");
    out.push(
      markdownTable(
        ["servers", "relayed step ms", "forwarded step ms", "saved ms", "expected saving (k − 1) × d ms"],
        wanModel.wan.map((w) => [
          String(w.hops),
          w.relayedMs.toFixed(1),
          w.forwardedMs.toFixed(1),
          `**${(w.relayedMs - w.forwardedMs).toFixed(1)}**`,
          String((w.hops - 1) * WAN_DELAY_MS),
        ]),
        ["right", "right", "right", "right", "right"],
      ),
      "",
      `Every server sits behind a relay that holds each chunk ${WAN_DELAY_MS} ms in each direction (d); the client and the`,
      "forwarding servers both reach a server through its relay. A relayed step crosses 2k links (to and from each server),",
      "a forwarded one k + 1 (client → first, server → server, last → client), so forwarding should save (k − 1) × d per",
      `step. Median of ${WAN_STEPS} decode steps after a warm-up, fp32.`,
      "",
    );
  }

  out.push("### Concurrent sessions through a 2-server route (fp32, forwarded)", "");
  const concRows: string[][] = [];
  for (const r of results) {
    const one = r.concurrency.find((c) => c.sessions === 1)!;
    for (const c of r.concurrency) {
      const ratio = c.tokensPerSecond / one.tokensPerSecond;
      concRows.push([
        r.plan.label,
        String(c.sessions),
        String(r.plan.concurrentTokens),
        c.tokensPerSecond.toFixed(1),
        (c.tokensPerSecond / c.sessions).toFixed(1),
        c.sessions === 1 ? "1.00×" : `**${ratio.toFixed(2)}×**${c.sessions === 8 ? ` (goal ≥ 3×: ${ratio >= 3 ? "met" : "missed"})` : ""}`,
      ]);
    }
  }
  out.push(
    markdownTable(
      ["model", "sessions", "tokens per session", "total tok/s", "tok/s per session", "vs 1 session"],
      concRows,
      ["left", "right", "right", "right", "right", "right"],
    ),
    "",
    "Concurrent `generate()` calls from one client, each with its own sequence; total tok/s = generated tokens ÷ wall time",
    "(short prompts, so the prefill is included but small). Median of the repetitions.",
    "Each server batches its sessions' decode steps (node/server/engineScheduler.ts): steps that wait together run as",
    "one engine run, reading each weight once for the batch. The client is one process serving every session, as a",
    "gateway would: its LM head runs are shared too (client/batchingHead.ts). All processes share this",
    `${cpu.length}-core machine, so the client's and both servers' work compete for the same two cores.`,
  );
  return out.join("\n");
}

// ------------------------------------------------------------------ main

/** A precondition of the benchmark is not met: reported as one line, without a stack. */
class SetupError extends Error {}

async function main(): Promise<void> {
  if (!existsSync(join(SHIPPED_DIR, "model.safetensors"))) {
    throw new SetupError(
      `the shipped model is missing: ${SHIPPED_DIR}/model.safetensors does not exist. ` +
        "Train and export it first (scripts/model/), or check out the commit that ships it.",
    );
  }
  const tokenizer = TextTokenizer.load(SHIPPED_DIR);
  const smolDir = ensureGenerated("smollm2-135m");
  const smolVocab = PUBLIC_SHAPES["smollm2-135m"]!.vocab_size as number;
  const plans: Plan[] = [
    {
      label: "kjv-llama-6m (shipped, trained)",
      dir: SHIPPED_DIR,
      decodeTokens: 64,
      rounds: 5,
      concurrentTokens: 64,
      concurrentReps: 3,
      prompts: KJV_PROMPTS.map((p) => tokenizer.encode(p)),
      agreement: true,
    },
    {
      label: "SmolLM2-135M shape (random)",
      dir: smolDir,
      decodeTokens: 32,
      rounds: 4,
      concurrentTokens: 32,
      concurrentReps: 2,
      prompts: Array.from({ length: 8 }, (_, p) => Array.from({ length: 12 }, (_, i) => (1 + p * 977 + i * 7919) % smolVocab)),
      agreement: false,
    },
  ];

  const loadStart = loadavg();
  const t0 = performance.now();
  const storeDir = mkdtempSync(join(tmpdir(), "efed-bench-network-"));
  const removeStores = (): void => rmSync(storeDir, { recursive: true, force: true });
  process.once("exit", removeStores); // also after Ctrl-C, when the finally below does not run
  try {
    const results: ModelResult[] = [];
    const echo = await startEcho(root);
    for (const plan of plans) results.push(await benchModel(plan, storeDir, echo.url));
    await stopServers([echo]);
    const hop = new Map<number, HopCpu>();
    for (const r of results) if (!hop.has(r.hiddenSize)) hop.set(r.hiddenSize, await hopCpu(r.hiddenSize, storeDir));
    const table = report(results, hop, { seconds: (performance.now() - t0) / 1000, loadStart, loadEnd: loadavg() });
    console.log(table);
    writeDocSections(join(root, "docs", "benchmarks.md"), "Benchmarks", { "Network (npm run bench:network)": table });
  } finally {
    await stopAll();
    removeStores();
  }
}

await main().catch((err: unknown) => {
  console.error(err instanceof SetupError ? `bench:network: ${err.message}` : err instanceof Error ? (err.stack ?? err.message) : String(err));
  process.exitCode = 1;
});
