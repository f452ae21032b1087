import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ModelDirectory } from "../../engine/model/modelDir.js";
import type { Head } from "../../engine/runtime/head.js";
import type { KvCache, KvSlotPool } from "../../engine/runtime/kvSlots.js";
import { ort } from "../../engine/runtime/session.js";
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

/** Row `row` of `pool`: its valid positions (kvHeads, length, headDim) of every layer and kind, and whether all past them are 0. */
function held(pool: KvSlotPool, row: number): { positions: number[]; restZero: boolean } {
  const { kvHeads: kvH, headDim: D } = pool.shape;
  const { keys, values } = pool.snapshot(row);
  const len = pool.lengthOf(row);
  const positions: number[] = [];
  let restZero = true;
  for (const buf of [...keys, ...values]) {
    for (let h = 0; h < kvH; h++) {
      positions.push(...buf.subarray(h * pool.capacity * D, (h * pool.capacity + len) * D));
      restZero &&= buf.subarray((h * pool.capacity + len) * D, (h + 1) * pool.capacity * D).every((x) => x === 0);
    }
  }
  return { positions, restZero };
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
    // rows 0 and 3 only: rows 1 and 2 lie inside the run but are not stepped: their rows stay as they were
    const between = [held(pool, 1), held(pool, 2)];
    expect(await stepBoth([5, 6], [slotted[3]!, slotted[0]!], [alone[3]!, alone[0]!])).toEqual([true, true]);
    expect(held(pool, 1)).toEqual({ positions: between[0]!.positions, restZero: true });
    expect(held(pool, 2)).toEqual({ positions: between[1]!.positions, restZero: true });
    expect(await stepBoth([7, 8, 9, 10], slotted, alone)).toEqual([true, true, true, true]);
    expect(slotted.map((c) => c.length)).toEqual(alone.map((c) => c.length));
    expect(slotted.map((c) => c.length)).toEqual([3 + 8, 8 + 4 + 7, 13 + 7, 18 + 8]);
    // capacity grew in chunks of 8 to hold the longest (26) plus the spare position
    expect(pool.capacity).toBe(32);
    expect(pool.bytes).toBe(2 * model.config.numLayers * 4 * model.config.numKvHeads * 32 * model.config.headDim * 4);
    // what the pool holds is what the separate steps' caches hold, position for position
    for (let b = 0; b < 4; b++) {
      pool.moveOut(slotted[b]!);
      for (let l = 0; l < model.config.numLayers; l++) {
        expect(bitsEqual(slotted[b]!.keys[l]!.data as Float32Array, alone[b]!.keys[l]!.data as Float32Array)).toBe(true);
        expect(bitsEqual(slotted[b]!.values[l]!.data as Float32Array, alone[b]!.values[l]!.data as Float32Array)).toBe(true);
      }
    }
  });

  it("appends each sequence's new position in its own row at its length, and nothing else", () => {
    const { numLayers: L, numKvHeads: kvH, headDim: D } = model.config;
    const pool = shard.slotPool({ maxSlots: 3, maxSlotTokens: 16, chunkTokens: 8 });
    const caches = [2, 5, 3].map((length) => Object.assign(shard.newCache(), { length }));
    // give each its own (empty-valued) tensors of its length, so admit has something to copy
    for (const c of caches) {
      c.keys = Array.from({ length: L }, () => new ort.Tensor("float32", new Float32Array(kvH * c.length * D).fill(1), [1, kvH, c.length, D]));
      c.values = Array.from({ length: L }, () => new ort.Tensor("float32", new Float32Array(kvH * c.length * D).fill(2), [1, kvH, c.length, D]));
      expect(pool.admit(c)).toBe(true);
    }
    // a run over rows 0..2 that appends rows 0 and 2: value = 1000·layer + 100·row + 10·head + d/100
    const rowsOf = (base: number): Float32Array[] =>
      Array.from({ length: L }, (_, l) => Float32Array.from({ length: 3 * kvH * D }, (_, i) => base + 1000 * l + 100 * Math.floor(i / (kvH * D)) + 10 * (Math.floor(i / D) % kvH) + (i % D) / 100));
    pool.append(0, [caches[2]!, caches[0]!], rowsOf(0), rowsOf(0.5));
    expect(caches.map((c) => c.length)).toEqual([3, 5, 4]);
    for (const [row, at] of [[0, 2], [2, 3]] as const) {
      const { keys, values } = pool.snapshot(row);
      for (let l = 0; l < L; l++) {
        for (let h = 0; h < kvH; h++) {
          const pos = (p: number): number[] => [...keys[l]!.subarray((h * pool.capacity + p) * D, (h * pool.capacity + p + 1) * D)];
          expect(pos(at)).toEqual(Array.from({ length: D }, (_, d) => Math.fround(1000 * l + 100 * row + 10 * h + d / 100)));
          expect(pos(at - 1)).toEqual(new Array(D).fill(1)); // the admitted positions before it
          expect(pos(at + 1)).toEqual(new Array(D).fill(0)); // and nothing after it
          expect(values[l]![(h * pool.capacity + at) * D]).toBe(Math.fround(0.5 + 1000 * l + 100 * row + 10 * h));
        }
      }
    }
    // row 1 is in the run but not appended: still its 5 admitted positions and zeros
    const row1 = pool.snapshot(1).keys[0]!;
    expect([row1[(0 * pool.capacity + 4) * D], row1[(0 * pool.capacity + 5) * D]]).toEqual([1, 0]);
  });

  it("zeroes a freed row, and a sequence that reuses it steps as it would alone", async () => {
    const pool = shard.slotPool({ maxSlots: 2, maxSlotTokens: 32, chunkTokens: 8 });
    const [a, b] = [shard.newCache(), shard.newCache()];
    pool.admit(a);
    pool.admit(b);
    await shard.compute(head.embed(prompt(0, 6)), a);
    await shard.compute(head.embed(prompt(1, 9)), b);
    const b1 = shard.newCache();
    await shard.compute(head.embed(prompt(1, 9)), b1);
    pool.free(a); // row 0 stays allocated (b is in row 1)
    expect(pool.rows).toBe(2);
    const freed = pool.snapshot(0);
    expect([...freed.keys, ...freed.values].every((buf) => buf.every((x) => x === 0))).toBe(true);
    const [c, c1] = [shard.newCache(), shard.newCache()];
    expect(pool.admit(c)).toBe(true);
    expect(c.slot?.row).toBe(0);
    // c is shorter than a was: positions a held past c's length must not leak into its steps
    expect(bitsEqual(await shard.compute(head.embed(prompt(2, 2)), c), await shard.compute(head.embed(prompt(2, 2)), c1))).toBe(true);
    for (let step = 0; step < 3; step++) expect(await stepBoth([step, step + 1], [c, b], [c1, b1])).toEqual([true, true]);
    expect(held(pool, 0).restZero).toBe(true);
    expect(held(pool, 1).restZero).toBe(true);
  });

  it("names the bad sequence, row or size when an append cannot be done, and writes nothing then", async () => {
    const { numLayers: L, numKvHeads: kvH, headDim: D } = model.config;
    const pool = shard.slotPool({ maxSlots: 2, maxSlotTokens: 9, chunkTokens: 8 });
    const [a, b, stranger] = [shard.newCache(), shard.newCache(), shard.newCache()];
    pool.admit(a);
    pool.admit(b);
    await shard.compute(head.embed(prompt(0, 6)), a);
    expect(pool.capacity).toBe(8);
    const rows = (n: number): Float32Array[] => Array.from({ length: L }, () => new Float32Array(n * kvH * D).fill(3));
    expect(() => pool.append(0, [stranger], rows(1), rows(1))).toThrow("this sequence does not live in this pool");
    expect(() => pool.append(1, [a], rows(1), rows(1))).toThrow("the sequence in row 0 is outside the run's rows 1..1");
    expect(() => pool.append(0, [a], rows(1).slice(1), rows(1))).toThrow(`append takes keys and values for 1 to ${L} layers, got ${L - 1} and ${L}`);
    expect(() => pool.append(0, [a], rows(3), rows(3))).toThrow(`new keys of ${3 * kvH * D} floats from row 0 are not whole rows of ${kvH}×${D} within the pool's 2 rows`);
    expect(() => pool.append(0, [a], rows(2), [...rows(2).slice(1), new Float32Array(5)])).toThrow(`new keys and values of one run must each be ${2 * kvH * D} floats, got 5`);
    expect(() => pool.append(0, [a, a], rows(1), rows(1))).toThrow("append names the same sequence twice");
    expect(a.length).toBe(6);
    pool.append(0, [a], rows(1), rows(1)); // position 6: the last the 8-position rows hold with room to spare
    pool.append(0, [a], rows(1), rows(1));
    expect(() => pool.append(0, [a], rows(1), rows(1))).toThrow("the sequence in row 0 has 8 tokens and the rows hold 8: prepareRun first");
    pool.prepareRun(0, 1, 1);
    pool.append(0, [a], rows(1), rows(1));
    expect(() => pool.append(0, [a], rows(1), rows(1))).toThrow("the sequence in row 0 has 9 tokens, the slot limit of 9: no room for another");
    expect(a.length).toBe(9);
    expect(() => pool.snapshot(2)).toThrow("row 2 is not one of the pool's 2 rows");
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

  it("an in-place cache (a one-row pool of its own) runs a sequence as its own tensors do, bit for bit, up to the shard's limit", async () => {
    expect(shard.maxLength).toBe(256);
    const inPlace = shard.newInPlaceCache();
    const own = shard.newCache();
    expect([inPlace.slot?.row, own.slot]).toEqual([0, undefined]);
    const first = prompt(2, 200);
    expect(bitsEqual(await shard.compute(head.embed(first), inPlace), await shard.compute(head.embed(first), own))).toBe(true);
    // 40 decode steps cross the pool's growth in chunks of 32 positions
    for (let step = 0; step < 40; step++) {
      const h = head.embed([(step * 13) % model.config.vocabSize]);
      expect(bitsEqual(await shard.compute(h, inPlace), await shard.compute(h, own))).toBe(true);
    }
    expect([inPlace.length, inPlace.slot?.pool.capacity]).toEqual([240, 256]);
    await shard.compute(head.embed(prompt(3, 16)), inPlace); // to the limit exactly
    await expect(shard.compute(head.embed([1]), inPlace)).rejects.toThrow("sequence would reach 257 tokens, over this shard's limit of 256");
    expect(inPlace.length).toBe(256);
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
    expect(ops.newInPlaceCache().slot).toBeUndefined(); // its own tensors, as newCache()
    await ops.release();
  });
});
