/**
 * npm run bench:batching — what batching concurrent sessions' decode steps buys a server: for B
 * sequences (each with its own cache of CONTEXT tokens), one `Shard.computeBatch` run against B
 * `Shard.forward` runs (what a server without batching does), in the same process, alternating,
 * medians. With --write, replaces the "Batched decode" section of docs/benchmarks.md.
 */
import { join } from "node:path";
import { ModelDirectory } from "../../engine/model/modelDir.js";
import { Shard, type KvCache } from "../../engine/runtime/shard.js";
import { ensureGenerated, REPO_ROOT } from "./lib/benchModels.js";
import { writeDocSections } from "./lib/docs.js";
import { markdownTable } from "./lib/markdown.js";
import { median } from "./lib/stats.js";

const BATCHES = [1, 2, 4, 8, 16];
const CONTEXTS = [64, 256];
const REPS = 15;

async function filledCache(shard: Shard, tokens: number, seed: number): Promise<KvCache> {
  const cache = shard.newCache();
  const H = shard.config.hiddenSize;
  await shard.compute(Float32Array.from({ length: tokens * H }, (_, i) => Math.sin(i + seed) * 0.1), cache);
  return cache;
}

/** A cache that shares the filled tensors of `c` (both paths append to their own copy). */
const fork = (c: KvCache): KvCache => ({ length: c.length, keys: [...c.keys], values: [...c.values] });

const rows: string[][] = [];
for (const [label, dir] of [
  ["kjv-llama-6m (shipped, trained)", join(REPO_ROOT, "models", "kjv-llama-6m")],
  ["SmolLM2-135M shape (random)", ensureGenerated("smollm2-135m")],
] as const) {
  const model = ModelDirectory.open(dir);
  const shard = await Shard.load(model, 0, model.config.numLayers, { threads: 1 });
  const H = model.config.hiddenSize;
  for (const context of CONTEXTS) {
    const caches = await Promise.all(Array.from({ length: Math.max(...BATCHES) }, (_, i) => filledCache(shard, context, i)));
    const hidden = Float32Array.from({ length: H }, (_, i) => Math.cos(i) * 0.1);
    for (const B of BATCHES) {
      const separate: number[] = [];
      const batched: number[] = [];
      for (let rep = 0; rep < REPS; rep++) {
        let t = performance.now();
        for (let b = 0; b < B; b++) await shard.compute(hidden, fork(caches[b]!));
        separate.push(performance.now() - t);
        const forks = caches.slice(0, B).map(fork);
        t = performance.now();
        await shard.computeBatch(Array.from({ length: B }, () => hidden), forks);
        batched.push(performance.now() - t);
      }
      const s = median(separate);
      const bt = median(batched);
      rows.push([label, String(context), String(B), s.toFixed(1), bt.toFixed(1), ((B * 1000) / bt).toFixed(0), `${(s / bt).toFixed(2)}×`]);
      console.error(rows[rows.length - 1]!.join(" | "));
    }
  }
  await shard.release();
}

const table = [
  markdownTable(
    ["model", "context tokens", "sequences B", "B separate steps ms", "one batched run ms", "batched tok/s", "speed-up"],
    rows,
    ["left", "right", "right", "right", "right", "right", "right"],
  ),
  "",
  "All layers, 1 thread, median of 15 alternating repetitions. A batched run reads every weight once for B tokens but",
  "copies each sequence's cache into a batch padded to the longest and back; the server's scheduler",
  "(node/server/engineScheduler.ts) batches only while those copies stay under half the shard's weight bytes.",
  "Batched and separate steps give bit-identical outputs (test/engine/batch.test.ts).",
].join("\n");
console.log(table);
writeDocSections(join(REPO_ROOT, "docs", "benchmarks.md"), "Benchmarks", { "Batched decode (npm run bench:batching)": table });
