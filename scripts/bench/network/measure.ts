/** The measurements of bench:network on live `efed server` routes, one model at a time. */
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { randomBytes } from "ethers";
import { WebSocket } from "ws";
import { BatchingHead } from "../../../client/batchingHead.js";
import { generate, type LayerPipeline } from "../../../client/generate.js";
import { LocalPipeline } from "../../../client/localPipeline.js";
import { RemotePipeline } from "../../../client/remotePipeline.js";
import { argmax } from "../../../client/sampler.js";
import { ModelDirectory } from "../../../engine/model/modelDir.js";
import { Head } from "../../../engine/runtime/head.js";
import { ACTIVATION_ENCODINGS, payloadBytes } from "../../../protocol/activations.js";
import { MessageType } from "../../../protocol/wire.js";
import { CountingProxy, type FrameRecord } from "../lib/networkProxy.js";
import { evenSplit, startServer, stopServers, type RunningServer } from "../lib/networkServers.js";
import { median } from "../lib/stats.js";
import { connect, decodeRun, teacherForced } from "./decode.js";
import {
  AGREEMENT_TOKENS,
  BYTE_STEPS,
  CONCURRENCY,
  FORWARD_SIZES,
  ROUTE_SIZES,
  SESSION_TOKENS,
  WAN_DELAY_MS,
  WAN_STEPS,
  type AgreementRow,
  type BytesRow,
  type ConcurrencyRow,
  type ModelResult,
  type Part,
  type Plan,
  type SpeedRow,
  type WanRow,
} from "./types.js";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "..");
/**
 * Every route's connections are opened once and wait while the other configurations run: on a
 * loaded machine a SmolLM2 round outlasts the servers' default 30 s idle limit for a connection
 * without a session, which closed them mid-run.
 */
const HELD_CONNECTIONS = ["--connection-idle-ms", "600000"] as const;

/**
 * Starts the routes' servers for `plan`'s model and measures the selected parts on them (a part not
 * selected leaves its rows empty); stops the servers at the end.
 */
export async function benchModel(plan: Plan, storeDir: string, echoUrl: string, parts: ReadonlySet<Part>): Promise<ModelResult> {
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
      routes[k] = await Promise.all(splits[k]!.map(([f, l]) => startServer(ROOT, plan.dir, f, l, storeDir, undefined, HELD_CONNECTIONS)));
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
    if (parts.has("hop")) for (const c of configs) await decodeRun(head, c.pipeline, plan.prompts[0]!, 4); // warm-up
    const stepMs = new Map<string, number[]>(configs.map((c) => [c.name, []]));
    const forwardMs = new Map<string, number[]>(configs.map((c) => [c.name, []]));
    const roundTripMs = new Map<string, number[]>(configs.map((c) => [c.name, []]));
    const receiptLagMs = new Map<string, number[]>(configs.map((c) => [c.name, []]));
    const roundStepMs = new Map<string, number[]>(configs.map((c) => [c.name, []]));
    const echoMs: number[] = [];
    for (let r = 0; r < (parts.has("hop") ? plan.rounds : 0); r++) {
      echoMs.push(await echoRoundTrip(echoUrl, payloadBytes("fp32", 1, H) + 64, 40));
      for (let i = 0; i < configs.length; i++) {
        const c = configs[(i + r) % configs.length]!;
        const run = await decodeRun(head, c.pipeline, plan.prompts[r % plan.prompts.length]!, plan.decodeTokens);
        stepMs.get(c.name)!.push(...run.stepMs);
        roundStepMs.get(c.name)!.push(median(run.stepMs));
        forwardMs.get(c.name)!.push(...run.forwardMs);
        roundTripMs.get(c.name)!.push(...run.roundTripMs);
        receiptLagMs.get(c.name)!.push(...run.receiptLagMs);
      }
      console.error(`   round ${r + 1}/${plan.rounds}: ` + configs.map((c) => `${c.name} ${median(stepMs.get(c.name)!).toFixed(2)} ms`).join(", "));
    }
    const medianOr0 = (xs: number[]): number => (xs.length === 0 ? 0 : median(xs));
    const speed = !parts.has("hop") ? [] : configs.map((c) => ({
      name: c.name,
      hops: c.hops,
      mode: c.mode,
      medianStepMs: median(stepMs.get(c.name)!),
      medianForwardMs: median(forwardMs.get(c.name)!),
      medianRoundTripMs: medianOr0(roundTripMs.get(c.name)!),
      medianReceiptLagMs: medianOr0(receiptLagMs.get(c.name)!),
      steps: stepMs.get(c.name)!.length,
      roundStepMs: roundStepMs.get(c.name)!,
    }));

    // ---- 4a: bytes on the wire per decode token per hop, per encoding (2-server route behind counting relays)
    const bytes: BytesRow[] = [];
    for (const encoding of parts.has("bytes") ? ACTIVATION_ENCODINGS : []) {
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
    if (plan.agreement && parts.has("agreement")) {
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
    // interleaved rounds (1, 4, 8 sessions in each), so a slow spell of this shared machine hits every count alike
    const counts = parts.has("concurrency") ? CONCURRENCY : [];
    const walls = new Map<number, number[]>(counts.map((n) => [n, []]));
    const tokens = new Map<number, number>();
    for (let rep = 0; rep < plan.concurrentReps; rep++) {
      for (const sessions of counts) {
        const a = performance.now();
        const results = await Promise.all(
          Array.from({ length: sessions }, (_, i) =>
            generate(sharedHead, forwarded[2]!, plan.prompts[i % plan.prompts.length]!, { maxTokens: plan.concurrentTokens, temperature: 0 }),
          ),
        );
        walls.get(sessions)!.push((performance.now() - a) / 1000);
        tokens.set(sessions, results.reduce((n, r) => n + r.generatedIds.length, 0));
      }
    }
    for (const sessions of counts) {
      const wall = median(walls.get(sessions)!);
      const total = tokens.get(sessions)!;
      concurrency.push({ sessions, tokensPerSecond: total / wall, wallSeconds: wall });
      console.error(`   ${sessions} concurrent session(s): ${(total / wall).toFixed(1)} tok/s`);
    }

    // ---- 6: relayed against forwarded over simulated wide-area links
    const wan: WanRow[] = [];
    if (plan.agreement && parts.has("wan")) {
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

    return { plan, hiddenSize: H, layers: L, splits, speed, echoMs: medianOr0(echoMs), bytes, concurrency, agreement, wan, fp32RouteExact, startSeconds };
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
export async function echoRoundTrip(url: string, bytes: number, n: number): Promise<number> {
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
