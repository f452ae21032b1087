import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ModelDirectory } from "../../engine/model/modelDir.js";
import { Head } from "../../engine/runtime/head.js";
import { Shard, type KvCache } from "../../engine/runtime/shard.js";
import { EngineScheduler } from "../../node/server/engineScheduler.js";
import { bitsEqual, randomModel, scratchDir } from "../engine/helpers.js";

const scratch = scratchDir();
let model: ModelDirectory;
let shard: Shard;
let head: Head;
beforeAll(async () => {
  model = randomModel(scratch.dir, "sched", { hidden_size: 64, num_attention_heads: 4, num_key_value_heads: 2 }); // head_dim 16: fused attention
  shard = await Shard.load(model, 0, model.config.numLayers);
  head = await Head.load(model);
});
afterAll(() => scratch.cleanup());

/** Two copies of four sequences with prompts of different lengths. */
async function sequences(): Promise<[KvCache[], KvCache[]]> {
  const a: KvCache[] = [];
  const b: KvCache[] = [];
  for (let i = 0; i < 4; i++) {
    const ids = Array.from({ length: 2 + 3 * i }, (_, t) => (t * 5 + i) % model.config.vocabSize);
    for (const list of [a, b]) {
      const cache = shard.newCache();
      await shard.forward(head.embed(ids), cache);
      list.push(cache);
    }
  }
  return [a, b];
}

describe("engine scheduler", () => {
  it("runs decode steps that wait together as one batch, prefills alone, with the results of separate runs", async () => {
    const [alone, scheduled] = await sequences();
    const scheduler = new EngineScheduler(shard);
    const inputs = [head.embed([7]), head.embed([8]), head.embed([9, 10, 11]), head.embed([12])];
    // the first step starts at once; the other three queue behind it: decodes 1 and 3 batch, the prefill runs alone
    const pending = inputs.map((h, i) => scheduler.forward(h, scheduled[i]!));
    const outputs = await Promise.all(pending);
    expect(scheduler.recentBatchSizes).toEqual([1, 2, 1]);
    for (let i = 0; i < 4; i++) expect(bitsEqual(outputs[i]!, await shard.forward(inputs[i]!, alone[i]!))).toBe(true);
    expect(scheduled.map((c) => c.length)).toEqual(alone.map((c) => c.length));
    await scheduler.idle();
  });

  it("does not batch when the padded cache copies would cost more than the policy allows", async () => {
    const [, caches] = await sequences();
    const scheduler = new EngineScheduler(shard, { maxBatch: 16, maxCopyShare: 1e-9 });
    await Promise.all(caches.map((c, i) => scheduler.forward(head.embed([i]), c)));
    expect(scheduler.recentBatchSizes).toEqual([1, 1, 1, 1]);
  });

  it("a failed run rejects only its own steps and leaves their caches unchanged", async () => {
    const [, caches] = await sequences();
    const scheduler = new EngineScheduler(shard);
    const before = caches.map((c) => c.length);
    const bad = scheduler.forward(new Float32Array(5), caches[0]!); // not a whole row
    const good = scheduler.forward(head.embed([3]), caches[1]!);
    await expect(bad).rejects.toThrow("not a whole number of 64-wide rows");
    await expect(good).resolves.toHaveLength(64);
    expect(caches.map((c) => c.length)).toEqual([before[0], before[1]! + 1, before[2], before[3]]);
  });
});
