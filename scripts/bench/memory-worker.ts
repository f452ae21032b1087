/**
 * bench:memory's single-process reference, in its own process so its peak RSS is its own.
 * Usage: memory-worker.ts MODEL_DIR PROMPT_IDS DECODE_TOKENS → prints one JSON line: the greedy
 * tokens, the median decode step, load time and peak RSS after loading and after decoding.
 */
import { LocalPipeline } from "../../client/localPipeline.js";
import { ModelDirectory } from "../../engine/model/modelDir.js";
import { Head } from "../../engine/runtime/head.js";
import { decodeRun } from "./network/decode.js";
import { median } from "./lib/stats.js";

const [dir, promptArg, decodeArg] = process.argv.slice(2);
if (dir === undefined || promptArg === undefined || decodeArg === undefined) throw new Error("usage: memory-worker.ts MODEL_DIR PROMPT_IDS DECODE_TOKENS");
const prompt = promptArg.split(",").map(Number);
const decodeTokens = Number(decodeArg);

const model = ModelDirectory.open(dir);
const t0 = performance.now();
const local = await LocalPipeline.load(model, [], { threads: 1 });
const head = await Head.load(model, { threads: 1 });
const loadSeconds = (performance.now() - t0) / 1000;
const loadPeakRssBytes = process.resourceUsage().maxRSS * 1024;
await decodeRun(head, local, prompt, 2); // warm-up
const run = await decodeRun(head, local, prompt, decodeTokens);
console.log(
  JSON.stringify({
    tokens: run.tokens,
    stepMs: median(run.stepMs),
    loadSeconds,
    loadPeakRssBytes,
    peakRssBytes: process.resourceUsage().maxRSS * 1024,
  }),
);
await local.release();
await head.release();
model.close();
