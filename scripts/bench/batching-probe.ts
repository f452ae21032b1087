/**
 * Scratch probe (not a benchmark of shipped code): would batching concurrent sessions' decode
 * steps into one engine run be faster, and by how much? The shard graph takes one sequence per
 * run, so a real batch (B sequences, one new token each, each with its own KV cache) needs engine
 * changes. This measures the best case without them: one run of B new tokens of ONE sequence (each
 * weight matrix is read once for B rows, as in a batch) against B runs of one token on B
 * sequences (what the server does today). Attention differs (a batch attends each row to its own
 * cache), so at short contexts, where the projections and the MLP dominate, this is an upper bound
 * of the gain; at long contexts the attention share grows and the gain shrinks.
 *
 *   npx tsx scripts/bench/batching-probe.ts [context tokens, default 64; under 512 − 16 for the shipped model]
 */
import { join } from "node:path";
import { ModelDirectory } from "../../engine/model/modelDir.js";
import { Shard, type KvCache } from "../../engine/runtime/shard.js";
import { ensureGenerated, REPO_ROOT } from "./lib/benchModels.js";

const CONTEXT = Number(process.argv[2] ?? 64);
const BATCHES = [1, 2, 4, 8, 16];
const REPS = 30;

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

/** A cache holding `tokens` positions of random hidden states. */
async function filledCache(shard: Shard, tokens: number): Promise<KvCache> {
  const cache = shard.newCache();
  const H = shard.config.hiddenSize;
  await shard.forward(Float32Array.from({ length: tokens * H }, (_, i) => Math.sin(i) * 0.1), cache);
  return cache;
}

const snapshot = (c: KvCache): KvCache => ({ length: c.length, keys: [...c.keys], values: [...c.values] });

async function probe(label: string, dir: string): Promise<void> {
  const model = ModelDirectory.open(dir);
  const shard = await Shard.load(model, 0, model.config.numLayers, { threads: 1 });
  const H = model.config.hiddenSize;
  const base = await filledCache(shard, CONTEXT);
  const maxB = Math.max(...BATCHES);
  const seqCaches = await Promise.all(Array.from({ length: maxB }, () => filledCache(shard, CONTEXT)));
  console.log(`\n${label}: ${model.config.numLayers} layers, hidden ${H}, context ${CONTEXT} tokens, 1 thread, median of ${REPS}`);
  console.log("| B | B runs of 1 token (today) ms | 1 run of B tokens (batch bound) ms | speed-up |");
  console.log("|---:|---:|---:|---:|");
  for (const B of BATCHES) {
    const one = Float32Array.from({ length: H }, (_, i) => Math.cos(i) * 0.1);
    const many = Float32Array.from({ length: B * H }, (_, i) => Math.cos(i) * 0.1);
    const sequential: number[] = [];
    const batched: number[] = [];
    for (let r = 0; r < REPS + 3; r++) {
      const seq = seqCaches.slice(0, B).map(snapshot);
      let a = performance.now();
      for (const c of seq) await shard.forward(one, c);
      const s = performance.now() - a;
      const b1 = snapshot(base);
      a = performance.now();
      await shard.forward(many, b1);
      const b = performance.now() - a;
      if (r >= 3) {
        sequential.push(s);
        batched.push(b);
      }
    }
    const s = median(sequential);
    const b = median(batched);
    console.log(`| ${B} | ${s.toFixed(2)} | ${b.toFixed(2)} | ${(s / b).toFixed(2)}× |`);
  }
  await shard.release();
  model.close();
}

await probe("kjv-llama-6m", join(REPO_ROOT, "models", "kjv-llama-6m"));
await probe("SmolLM2-135M shape (random)", ensureGenerated("smollm2-135m"));
