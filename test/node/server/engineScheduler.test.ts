import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ModelDirectory } from "../../../engine/model/modelDir.js";
import { Head } from "../../../engine/runtime/head.js";
import { Shard, type KvCache } from "../../../engine/runtime/shard.js";
import { EngineScheduler } from "../../../node/server/engineScheduler.js";
import { bitsEqual, maxAbsDiff, randomModel, scratchDir } from "../../engine/helpers.js";

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
      await shard.compute(head.embed(ids), cache);
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
    const pending = inputs.map((h, i) => scheduler.compute(h, scheduled[i]!));
    const outputs = await Promise.all(pending);
    expect(scheduler.recentBatchSizes).toEqual([1, 2, 1]);
    for (let i = 0; i < 4; i++) expect(bitsEqual(outputs[i]!, await shard.compute(inputs[i]!, alone[i]!))).toBe(true);
    expect(scheduled.map((c) => c.length)).toEqual(alone.map((c) => c.length));
    await scheduler.idle();
  });

  it("does not batch when the padded cache copies would cost more than the policy allows", async () => {
    const [, caches] = await sequences();
    const scheduler = new EngineScheduler(shard, { maxBatch: 16, maxCopyShare: 1e-9, maxRunTokens: 64 });
    await Promise.all(caches.map((c, i) => scheduler.compute(head.embed([i]), c)));
    expect(scheduler.recentBatchSizes).toEqual([1, 1, 1, 1]);
  });

  it("a failed run rejects only its own steps and leaves their caches unchanged", async () => {
    const [, caches] = await sequences();
    const scheduler = new EngineScheduler(shard);
    const before = caches.map((c) => c.length);
    const bad = scheduler.compute(new Float32Array(5), caches[0]!); // not a whole row
    const good = scheduler.compute(head.embed([3]), caches[1]!);
    await expect(bad).rejects.toThrow("not a whole number of 64-wide rows");
    await expect(good).resolves.toHaveLength(64);
    expect(caches.map((c) => c.length)).toEqual([before[0], before[1]! + 1, before[2], before[3]]);
  });

  it("serves clients in turn: one client's long prefills delay another's decode step by at most one chunk, with unchanged results", async () => {
    const [alone, scheduled] = await sequences();
    const scheduler = new EngineScheduler(shard, { maxBatch: 16, maxCopyShare: 0.5, maxRunTokens: 8 });
    const prompt = (i: number): number[] => Array.from({ length: 33 }, (_, t) => (t * 3 + i) % model.config.vocabSize); // 5 chunks of ≤ 8 rows
    const done: string[] = [];
    const track = (name: string, p: Promise<Float32Array>): Promise<Float32Array> => p.then((out) => (done.push(name), out));
    const prefills = [0, 1, 2].map((i) => track(`A${i}`, scheduler.compute(head.embed(prompt(i)), scheduled[i]!, "attacker")));
    const decode = track("B", scheduler.compute(head.embed([5]), scheduled[3]!, "honest"));
    const outputs = await Promise.all([...prefills, decode]);
    expect(done[0]).toBe("B"); // the attacker's first prefill still had 4 chunks to go
    expect(scheduler.recentBatchSizes.slice(0, 2)).toEqual([1, 1]); // one attacker chunk, then the honest step
    // a chunked prefill equals one run within float rounding (attention over the cached chunks sums in another order)
    for (let i = 0; i < 3; i++) expect(maxAbsDiff(outputs[i]!, await shard.compute(head.embed(prompt(i)), alone[i]!))).toBeLessThan(1e-4);
    expect(bitsEqual(outputs[3]!, await shard.compute(head.embed([5]), alone[3]!))).toBe(true);
  });

  it("never runs a 1-row chunk of a prefill (that row would take the single-row kernel path): the last chunk takes the extra row", async () => {
    const [, caches] = await sequences();
    const scheduler = new EngineScheduler(shard, { maxBatch: 16, maxCopyShare: 0.5, maxRunTokens: 4 });
    const before = caches[0]!.length;
    const lengths: number[] = [];
    const compute = shard.compute.bind(shard);
    const spy = { ...shard, config: shard.config, compute: (h: Float32Array, c: KvCache) => (lengths.push(h.length / shard.config.hiddenSize), compute(h, c)) };
    const spied = new EngineScheduler(spy as unknown as Shard, { maxBatch: 16, maxCopyShare: 0.5, maxRunTokens: 4 });
    await spied.compute(head.embed([1, 2, 3, 4, 5, 6, 7, 8, 9]), caches[0]!); // 9 rows: 4 + 5, not 4 + 4 + 1
    expect(lengths).toEqual([4, 5]);
    expect(caches[0]!.length).toBe(before + 9);
    await scheduler.idle();
  });
});
