/**
 * One side of bench:peer in its own process (so peak RSS is this run's alone): greedy generation of
 * DECODE tokens after a fixed PROMPT-token prompt, with eFed's engine or llama.cpp. Each engine first
 * prefills the prompt once and drops it: a fresh process's first run pays first-touch allocations
 * (eFed's first prefill measured up to 2× slower), which a serving process pays once, not per prompt.
 * Usage: peer-worker.ts efed MODEL_DIR THREADS | peer-worker.ts llama FILE.gguf THREADS → one JSON line.
 */
import { ModelDirectory } from "../../engine/model/modelDir.js";
import { Head } from "../../engine/runtime/head.js";
import { Shard } from "../../engine/runtime/shard.js";
import { median } from "./lib/stats.js";

export const PROMPT = 128;
export const DECODE = 128;

export interface PeerRun {
  prefillTokensPerSecond: number;
  decodeTokensPerSecond: number;
  peakRssBytes: number;
  loadSeconds: number;
  generatedIds: number[];
}

/** The same prompt for both engines: ids spread over the vocabulary, BOS first. */
export function promptIds(vocabSize: number): number[] {
  return Array.from({ length: PROMPT }, (_, i) => (i === 0 ? 1 : (i * 7919) % vocabSize));
}

/** Greedy choice; an end-of-sequence token is generated like any other, so both engines decode DECODE tokens. */
function argmax(values: Float32Array): number {
  let best = 0;
  for (let i = 1; i < values.length; i++) if (values[i]! > values[best]!) best = i;
  return best;
}

async function runEfed(dir: string, threads: number): Promise<PeerRun> {
  const model = ModelDirectory.open(dir);
  const c = model.config;
  const t0 = performance.now();
  const shard = await Shard.load(model, 0, c.numLayers, { threads });
  const head = await Head.load(model, { threads: 1 }); // as efed generate runs it
  const loadSeconds = (performance.now() - t0) / 1000;
  const prompt = promptIds(c.vocabSize);
  await head.logits(await shard.compute(head.embed(prompt), shard.newInPlaceCache())); // warm-up, dropped
  const a = performance.now();
  const cache = shard.newInPlaceCache(); // as efed generate runs it
  const prefill = await shard.compute(head.embed(prompt), cache);
  let next = argmax(await head.logits(prefill.subarray(prefill.length - c.hiddenSize)));
  const prefillSeconds = (performance.now() - a) / 1000;
  const generatedIds = [next];
  const steps: number[] = [];
  while (generatedIds.length < DECODE) {
    const s = performance.now();
    next = argmax(await head.logits(await shard.compute(head.embed([next]), cache)));
    steps.push((performance.now() - s) / 1000);
    generatedIds.push(next);
  }
  return {
    prefillTokensPerSecond: PROMPT / prefillSeconds,
    decodeTokensPerSecond: 1 / median(steps),
    peakRssBytes: process.resourceUsage().maxRSS * 1024,
    loadSeconds,
    generatedIds,
  };
}

async function runLlama(file: string, threads: number, vocabSize: number): Promise<PeerRun> {
  const { getLlama } = await import("node-llama-cpp");
  const t0 = performance.now();
  const llama = await getLlama({ gpu: false, build: "never", logLevel: "error" as never });
  const model = await llama.loadModel({ modelPath: file });
  const context = await model.createContext({ contextSize: PROMPT + DECODE + 16, batchSize: PROMPT, threads });
  const loadSeconds = (performance.now() - t0) / 1000;
  const sequence = context.getSequence();
  await sequence.evaluateWithoutGeneratingNewTokens(promptIds(vocabSize) as never); // warm-up, dropped
  await sequence.clearHistory();
  const generatedIds: number[] = [];
  const steps: number[] = [];
  const a = performance.now();
  let last = a;
  let prefillSeconds = 0;
  for await (const token of sequence.evaluate(promptIds(vocabSize) as never, { temperature: 0, yieldEogToken: true })) {
    const now = performance.now();
    if (generatedIds.length === 0) prefillSeconds = (now - a) / 1000;
    else steps.push((now - last) / 1000);
    last = now;
    generatedIds.push(token as number);
    if (generatedIds.length >= DECODE) break;
  }
  return {
    prefillTokensPerSecond: PROMPT / prefillSeconds,
    decodeTokensPerSecond: 1 / median(steps),
    peakRssBytes: process.resourceUsage().maxRSS * 1024,
    loadSeconds,
    generatedIds,
  };
}

if (process.argv[1]?.endsWith("peer-worker.ts")) {
  const [engine, path, threadsArg, vocabArg] = process.argv.slice(2);
  if ((engine !== "efed" && engine !== "llama") || path === undefined || threadsArg === undefined) {
    throw new Error("usage: peer-worker.ts efed MODEL_DIR THREADS | llama FILE.gguf THREADS VOCAB_SIZE");
  }
  const run = engine === "efed" ? await runEfed(path, Number(threadsArg)) : await runLlama(path, Number(threadsArg), Number(vocabArg));
  console.log(JSON.stringify(run));
  process.exit(0); // llama.cpp's threads would otherwise keep the process for a while
}
