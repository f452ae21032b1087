/**
 * How the KV cache is carried, measured: median decode-step time of the layers at several context
 * lengths, for the operator graph ("ops": Concat-grown cache, RoPE/mask as inputs) and the fused
 * GroupQueryAttention graph ("gqa"), both carrying the cache as graph inputs/outputs, and the fused
 * graph on a cache in a KV slot ("slot": read in place, only the new keys and values fetched).
 * Usage: kv-worker.ts MODEL_DIR THREADS → prints one JSON line.
 */
import { ModelDirectory } from "../../engine/model/modelDir.js";
import { Shard } from "../../engine/runtime/shard.js";
import { median } from "./lib/stats.js";

const [dir, threadsArg] = process.argv.slice(2);
if (dir === undefined || threadsArg === undefined) throw new Error("usage: kv-worker.ts MODEL_DIR THREADS");
const model = ModelDirectory.open(dir);
const H = model.config.hiddenSize;
const CONTEXTS = [16, 256, 1024];
const STEPS = 24;
const shards = {
  ops: await Shard.load(model, 0, model.config.numLayers, { attention: "ops", threads: Number(threadsArg) }),
  gqa: await Shard.load(model, 0, model.config.numLayers, { attention: "gqa", threads: Number(threadsArg) }),
};
const result: Record<string, Record<number, number>> = { ops: {}, gqa: {}, slot: {} };
for (const context of CONTEXTS) {
  // alternate the kinds so drift in machine load hits all alike
  for (const round of [0, 1]) {
    for (const kind of ["ops", "gqa", "slot"] as const) {
      const shard = kind === "slot" ? shards.gqa : shards[kind];
      const cache = kind === "slot" ? shard.newInPlaceCache() : shard.newCache();
      await shard.compute(new Float32Array(context * H).fill(0.01), cache);
      const times: number[] = [];
      for (let s = 0; s < STEPS; s++) {
        const a = performance.now();
        await shard.compute(new Float32Array(H).fill(0.02), cache);
        times.push(performance.now() - a);
      }
      if (round === 1) result[kind]![context] = median(times);
    }
  }
}
console.log(JSON.stringify(result));
