/**
 * One engine measurement in its own process, so peak RSS belongs to this configuration alone.
 * Usage: engine-worker.ts MODEL_DIR THREADS → prints one JSON line.
 */
import { ModelDirectory } from "../../engine/model/modelDir.js";
import { Head } from "../../engine/runtime/head.js";
import { Shard } from "../../engine/runtime/shard.js";
import { decodeWeightBytes } from "../../engine/model/weights.js";
import { median } from "./lib/stats.js";

const [dir, threadsArg] = process.argv.slice(2);
if (dir === undefined || threadsArg === undefined) throw new Error("usage: engine-worker.ts MODEL_DIR THREADS");
const threads = Number(threadsArg);
const PROMPT = 128;
const DECODE = 64;


const model = ModelDirectory.open(dir);
const c = model.config;
const t0 = performance.now();
const shard = await Shard.load(model, 0, c.numLayers, { threads });
const head = await Head.load(model, { threads: 1 }); // as efed generate runs it (see there)
const loadSeconds = (performance.now() - t0) / 1000;
const loadPeakRssBytes = process.resourceUsage().maxRSS * 1024; // nothing has run yet: the peak of loading
const prompt = Array.from({ length: PROMPT }, (_, i) => (i * 7919) % c.vocabSize);

const prefillSeconds: number[] = [];
const cache = shard.newInPlaceCache();
// The first runs of a fresh process are slower (first-touch allocations, ORT's arena growing): the
// first 3 are warm-up, the median of the next 7 is the steady state a serving process sees.
for (let r = 0; r < 10; r++) {
  const a = performance.now();
  const prefill = await shard.compute(head.embed(prompt), shard.newInPlaceCache());
  await head.logits(prefill.subarray(prefill.length - c.hiddenSize));
  if (r >= 3) prefillSeconds.push((performance.now() - a) / 1000);
}
await shard.compute(head.embed(prompt), cache);
const stepSeconds: number[] = [];
for (let s = 0; s < DECODE; s++) {
  const a = performance.now();
  const hidden = await shard.compute(head.embed([(s * 31) % c.vocabSize]), cache);
  await head.logits(hidden);
  stepSeconds.push((performance.now() - a) / 1000);
}

// Bytes of weights a decode step reads (as the graphs hold them: compressed variants read less).
const weightBytesPerToken = decodeWeightBytes(model);

console.log(
  JSON.stringify({
    loadSeconds,
    prefillTokensPerSecond: PROMPT / median(prefillSeconds),
    decodeTokensPerSecond: 1 / median(stepSeconds),
    loadPeakRssBytes,
    peakRssBytes: process.resourceUsage().maxRSS * 1024,
    weightBytesPerToken,
  }),
);
await shard.release();
await head.release();
