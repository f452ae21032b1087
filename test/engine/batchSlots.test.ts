import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ModelDirectory } from "../../engine/model/modelDir.js";
import type { Head } from "../../engine/runtime/head.js";
import type { KvCache } from "../../engine/runtime/kvSlots.js";
import { Shard } from "../../engine/runtime/shard.js";
import { bitsEqual, fusedModel, randomModel, scratchDir } from "./helpers.js";

const scratch = scratchDir();
let model: ModelDirectory;
let shard: Shard;
let head: Head;
beforeAll(async () => ({ model, shard, head } = await fusedModel(scratch.dir, "slots")));
afterAll(() => scratch.cleanup());

const prompt = (b: number, length: number): number[] => Array.from({ length }, (_, i) => (i * 7 + b) % model.config.vocabSize);

/** Steps `caches` one token each in one batch, and the same tokens for `alone` one by one; returns whether every output matched bit for bit. */
async function stepBoth(tokens: number[], batched: KvCache[], alone: KvCache[]): Promise<boolean[]> {
  const hiddens = tokens.map((t) => head.embed([t]));
  const expected: Float32Array[] = [];
  for (let i = 0; i < tokens.length; i++) expected.push(await shard.compute(hiddens[i]!, alone[i]!));
  const got = await shard.computeBatch(hiddens, batched);
  return got.map((h, i) => bitsEqual(h, expected[i]!));
}

describe("KV slot pool (sequences' caches in one buffer, batched steps in place)", () => {
  it("prefills, chunked prefills and batched decodes in slots give what separate steps give, bit for bit", async () => {
    const pool = shard.slotPool({ maxSlots: 4, maxSlotTokens: 64, chunkTokens: 8 });
    const alone = Array.from({ length: 4 }, () => shard.newCache());
    const slotted = Array.from({ length: 4 }, () => shard.newCache());
    for (const c of slotted) expect(pool.admit(c)).toBe(true);
    expect(slotted.map((c) => c.slot?.row)).toEqual([0, 1, 2, 3]);
    for (let b = 0; b < 4; b++) {
      const ids = prompt(b, 3 + 5 * b);
      expect(bitsEqual(await shard.compute(head.embed(ids), slotted[b]!), await shard.compute(head.embed(ids), alone[b]!))).toBe(true);
    }
    // a second prefill chunk on top of a cached one
    expect(bitsEqual(await shard.compute(head.embed([1, 2, 3, 4]), slotted[1]!), await shard.compute(head.embed([1, 2, 3, 4]), alone[1]!))).toBe(true);
    for (let step = 0; step < 6; step++) {
      expect(await stepBoth([0, 1, 2, 3].map((b) => (step * 11 + b) % model.config.vocabSize), slotted, alone)).toEqual([true, true, true, true]);
    }
    // rows 0 and 3 only: rows 1 and 2 lie inside the run but are not stepped, and stay exact afterwards
    expect(await stepBoth([5, 6], [slotted[3]!, slotted[0]!], [alone[3]!, alone[0]!])).toEqual([true, true]);
    expect(await stepBoth([7, 8, 9, 10], slotted, alone)).toEqual([true, true, true, true]);
    expect(slotted.map((c) => c.length)).toEqual(alone.map((c) => c.length));
    expect(slotted.map((c) => c.length)).toEqual([3 + 8, 8 + 4 + 7, 13 + 7, 18 + 8]);
    // capacity grew in chunks of 8 to hold the longest (26) plus the spare position
    expect(pool.capacity).toBe(32);
    expect(pool.bytes).toBe(2 * model.config.numLayers * 4 * model.config.numKvHeads * 32 * model.config.headDim * 4);
  });

  it("admits a sequence into a running batch (copying its cache once), refuses when full, reuses a freed row", async () => {
    const pool = shard.slotPool({ maxSlots: 2, maxSlotTokens: 64, chunkTokens: 16 });
    const [a, b, c] = [shard.newCache(), shard.newCache(), shard.newCache()];
    const [a1, b1, c1] = [shard.newCache(), shard.newCache(), shard.newCache()];
    for (const [own, ids] of [[a, prompt(0, 5)], [a1, prompt(0, 5)], [c, prompt(2, 4)], [c1, prompt(2, 4)]] as const) {
      await shard.compute(head.embed(ids), own);
    }
    expect(pool.admit(a)).toBe(true); // a had its own tensors: they are copied in once
    expect(a.keys).toEqual([]);
    expect(pool.admit(b)).toBe(true);
    expect(bitsEqual(await shard.compute(head.embed(prompt(1, 9)), b), await shard.compute(head.embed(prompt(1, 9)), b1))).toBe(true);
    expect(await stepBoth([3, 4], [a, b], [a1, b1])).toEqual([true, true]);
    expect(pool.admit(c)).toBe(false); // both rows taken: c keeps its own tensors
    expect(await stepBoth([5], [c], [c1])).toEqual([true]);
    pool.free(b);
    expect(b.slot).toBeUndefined();
    expect(pool.admit(c)).toBe(true);
    expect(c.slot?.row).toBe(1);
    expect(await stepBoth([6, 7], [c, a], [c1, a1])).toEqual([true, true]);
    // and out again: its own tensors continue exactly
    pool.moveOut(c);
    expect(c.slot).toBeUndefined();
    expect(await stepBoth([8], [c], [c1])).toEqual([true]);
    pool.free(a);
    expect([pool.used, pool.rows, pool.capacity, pool.bytes]).toEqual([0, 0, 0, 0]);
  });

  it("grows capacity in chunks, shrinks it when the longest leaves, and bounds rows and lengths", async () => {
    const pool = shard.slotPool({ maxSlots: 3, maxSlotTokens: 20, chunkTokens: 8 });
    const [short, long] = [shard.newCache(), shard.newCache()];
    pool.admit(short);
    pool.admit(long);
    await shard.compute(head.embed(prompt(0, 3)), short);
    expect(pool.capacity).toBe(8);
    await shard.compute(head.embed(prompt(1, 12)), long);
    expect([pool.rows, pool.capacity]).toEqual([2, 16]);
    await shard.compute(head.embed(prompt(1, 8)), long); // 20 tokens: the limit, plus the spare position
    expect(pool.capacity).toBe(21);
    await expect(shard.compute(head.embed([1]), long)).rejects.toThrow("sequence would reach 21 tokens, over its KV slot's limit of 20");
    expect(long.length).toBe(20);
    // a batch over both rows still steps `short` exactly after the failure
    const alone = shard.newCache();
    await shard.compute(head.embed(prompt(0, 3)), alone);
    expect(await stepBoth([4], [short], [alone])).toEqual([true]);
    pool.free(long);
    expect([pool.rows, pool.capacity]).toEqual([1, 8]);
    expect(await stepBoth([5], [short], [alone])).toEqual([true]);
    expect(pool.admit(Object.assign(shard.newCache(), { length: 20 }))).toBe(false); // no room for its next token
  });

  it("rejects batches that mix pools or standalone caches, and shards without the fused kernel", async () => {
    const [p1, p2] = [shard.slotPool(), shard.slotPool()];
    const [x, y, z] = [shard.newCache(), shard.newCache(), shard.newCache()];
    p1.admit(x);
    p2.admit(y);
    const h = head.embed([1]);
    await expect(shard.computeBatch([h, h], [x, y])).rejects.toThrow("a batch mixes caches of different KV slot pools");
    await expect(shard.computeBatch([h, h], [x, z])).rejects.toThrow("a batch mixes caches of different KV slot pools");
    expect(() => p1.free(y)).toThrow("this sequence does not live in this pool");
    expect(() => shard.slotPool({ maxSlots: 0 })).toThrow("KV slot pool option maxSlots must be a positive integer, got 0");
    const opsModel = randomModel(scratch.dir, "ops", { hidden_size: 48, num_attention_heads: 4, num_key_value_heads: 2 });
    const ops = await Shard.load(opsModel, 0, opsModel.config.numLayers);
    expect(() => ops.slotPool()).toThrow('KV slots need the fused-attention graph; this shard uses "ops"');
    await ops.release();
  });
});
