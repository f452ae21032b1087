import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ModelDirectory } from "../../../engine/model/modelDir.js";
import type { Head } from "../../../engine/runtime/head.js";
import type { KvCache, Shard } from "../../../engine/runtime/shard.js";
import { DEFAULT_BATCH_POLICY, EngineScheduler } from "../../../node/server/engineScheduler.js";
import { bitsEqual, fusedModel, maxAbsDiff, scratchDir } from "../../engine/helpers.js";

const scratch = scratchDir();
let model: ModelDirectory;
let shard: Shard;
let head: Head;
beforeAll(async () => ({ model, shard, head } = await fusedModel(scratch.dir, "sched")));
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
    // steps that arrive in one turn of the event loop wait together: the three decodes batch, the prefill runs alone
    const pending = inputs.map((h, i) => scheduler.compute(h, scheduled[i]!));
    const outputs = await Promise.all(pending);
    expect(scheduler.recentBatchSizes).toEqual([3, 1]);
    for (let i = 0; i < 4; i++) expect(bitsEqual(outputs[i]!, await shard.compute(inputs[i]!, alone[i]!))).toBe(true);
    expect(scheduled.map((c) => c.length)).toEqual(alone.map((c) => c.length));
    await scheduler.idle();
  });

  it("does not batch caches outside the slot pool when their padded copies would cost more than the policy allows", async () => {
    const [, caches] = await sequences();
    const scheduler = new EngineScheduler(shard, { ...DEFAULT_BATCH_POLICY, maxCopyShare: 1e-9, slots: 0 });
    expect(scheduler.pool).toBeUndefined();
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
    const scheduler = new EngineScheduler(shard, { ...DEFAULT_BATCH_POLICY, maxRunTokens: 8 });
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
    const scheduler = new EngineScheduler(shard, { ...DEFAULT_BATCH_POLICY, maxRunTokens: 4 });
    const before = caches[0]!.length;
    const lengths: number[] = [];
    const compute = shard.compute.bind(shard);
    const spy = { ...shard, config: shard.config, compute: (h: Float32Array, c: KvCache) => (lengths.push(h.length / shard.config.hiddenSize), compute(h, c)) };
    const spied = new EngineScheduler(spy as unknown as Shard, { ...DEFAULT_BATCH_POLICY, maxRunTokens: 4 });
    await spied.compute(head.embed([1, 2, 3, 4, 5, 6, 7, 8, 9]), caches[0]!); // 9 rows: 4 + 5, not 4 + 4 + 1
    expect(lengths).toEqual([4, 5]);
    expect(caches[0]!.length).toBe(before + 9);
    await scheduler.idle();
  });

  it("keeps sessions' caches in slots: batches run in place with the results of separate runs; a released slot goes to a waiting session", async () => {
    const [alone, scheduled] = await sequences();
    const scheduler = new EngineScheduler(shard, { ...DEFAULT_BATCH_POLICY, slots: 2 });
    const step = async (which: number[], token: number): Promise<void> => {
      const outputs = await Promise.all(which.map((i) => scheduler.compute(head.embed([token + i]), scheduled[i]!, `c${i}`)));
      for (const [k, i] of which.entries()) expect(bitsEqual(outputs[k]!, await shard.compute(head.embed([token + i]), alone[i]!))).toBe(true);
    };
    await step([0, 1, 2], 10); // 0 and 1 take the slots and run together; 2 (no slot left) cannot share their run
    expect(scheduler.recentBatchSizes).toEqual([2, 1]);
    expect(scheduled.map((c) => c.slot?.row)).toEqual([0, 1, undefined, undefined]);
    await step([0, 1], 20);
    expect(scheduler.recentBatchSizes.slice(2)).toEqual([2]);
    scheduler.release(scheduled[0]!);
    expect(scheduled[0]!.slot).toBeUndefined();
    await step([2, 1, 3], 30); // 2 takes the freed slot 0 (its cache copied in once); 1 and 3 queue behind it
    expect(scheduled[2]!.slot?.row).toBe(0);
    expect(scheduler.pool!.used).toBe(2);
    expect(scheduled.slice(1).map((c) => c.length)).toEqual(alone.slice(1).map((c) => c.length));
  });

  it("release rejects the closed session's waiting steps and leaves the others to run", async () => {
    const [, caches] = await sequences();
    const scheduler = new EngineScheduler(shard, { ...DEFAULT_BATCH_POLICY, slots: 4 });
    const before = caches.map((c) => c.length);
    const running = scheduler.compute(head.embed([1]), caches[0]!, "a");
    const waiting = scheduler.compute(head.embed([2]), caches[1]!, "b");
    const other = scheduler.compute(head.embed([3]), caches[2]!, "c");
    scheduler.release(caches[1]!);
    await expect(waiting).rejects.toThrow("the session of this step was closed before the step ran");
    await Promise.all([running, other]);
    expect(caches.map((c) => c.length)).toEqual([before[0]! + 1, before[1], before[2]! + 1, before[3]]);
    await scheduler.idle();
  });

  it("moves a session that outgrows its slot back to its own cache, with unchanged results", async () => {
    const [alone, scheduled] = await sequences();
    const scheduler = new EngineScheduler(shard, { ...DEFAULT_BATCH_POLICY, slots: 2, maxSlotTokens: 12, slotChunkTokens: 4 });
    const c = scheduled[3]!; // 11 tokens of prompt
    for (let t = 0; t < 3; t++) {
      const out = await scheduler.compute(head.embed([t]), c);
      expect(bitsEqual(out, await shard.compute(head.embed([t]), alone[3]!))).toBe(true);
      expect(c.slot === undefined).toBe(t > 0); // 12 fits a slot, 13 does not
    }
    expect(c.length).toBe(14);
    expect(scheduler.pool!.used).toBe(0);
  });

  it("gathers: while fewer decode steps wait than sessions hold slots, a run waits for the next to arrive", async () => {
    const [alone, scheduled] = await sequences();
    const scheduler = new EngineScheduler(shard, { ...DEFAULT_BATCH_POLICY, slots: 4, gatherMs: 20 });
    // the prefills put three sessions in slots
    for (let i = 0; i < 3; i++) await scheduler.compute(head.embed([1, 2]), scheduled[i]!, `c${i}`);
    for (let i = 0; i < 3; i++) await shard.compute(head.embed([1, 2]), alone[i]!);
    expect(scheduler.pool!.used).toBe(3);
    // three decode steps, each a turn of the event loop after the previous (as from a previous hop): one run
    const pending: Promise<Float32Array>[] = [];
    for (let i = 0; i < 3; i++) {
      pending.push(scheduler.compute(head.embed([20 + i]), scheduled[i]!, `c${i}`));
      await new Promise((resolve) => setImmediate(resolve));
    }
    const outputs = await Promise.all(pending);
    expect(scheduler.recentBatchSizes.slice(3)).toEqual([3]);
    for (let i = 0; i < 3; i++) expect(bitsEqual(outputs[i]!, await shard.compute(head.embed([20 + i]), alone[i]!))).toBe(true);
    // a step that nobody joins runs alone once the wait is over
    await scheduler.compute(head.embed([30]), scheduled[0]!, "c0");
    expect(scheduler.recentBatchSizes.slice(4)).toEqual([1]);
    // a step released while it waits is rejected, and the scheduler goes idle without running anything
    const released = scheduler.compute(head.embed([31]), scheduled[1]!, "c1");
    scheduler.release(scheduled[1]!);
    await expect(released).rejects.toThrow("the session of this step was closed before the step ran");
    await scheduler.idle();
    expect(scheduler.recentBatchSizes).toHaveLength(5);
    expect(() => new EngineScheduler(shard, { ...DEFAULT_BATCH_POLICY, gatherMs: -1 })).toThrow("batch policy gatherMs must be a number ≥ 0, got -1");
    expect(() => new EngineScheduler(shard, { ...DEFAULT_BATCH_POLICY, activeMs: Number.NaN })).toThrow("batch policy activeMs must be a number ≥ 0, got NaN");
  });

  it("waits only for sessions that ran within activeMs: an idle session in a slot delays nobody", async () => {
    const [, scheduled] = await sequences();
    let now = 0;
    const scheduler = new EngineScheduler(shard, { ...DEFAULT_BATCH_POLICY, slots: 4, gatherMs: 50, activeMs: 1000 }, () => now);
    for (let i = 0; i < 3; i++) await scheduler.compute(head.embed([1, 2]), scheduled[i]!, `c${i}`);
    expect(scheduler.pool!.used).toBe(3);
    /** Steps of sessions `who`, each a turn of the event loop after the previous (as from a previous hop). */
    const step = async (who: number[]) => {
      const pending: Promise<Float32Array>[] = [];
      for (const i of who) {
        pending.push(scheduler.compute(head.embed([40 + i]), scheduled[i]!, `c${i}`));
        await new Promise((resolve) => setImmediate(resolve));
      }
      await Promise.all(pending);
    };
    await step([0, 1]); // all three ran just now: the first step waits for the second
    expect(scheduler.recentBatchSizes.slice(3)).toEqual([2]);
    now = 1500; // session 2 has been idle 1.5 s, 0 and 1 too
    await step([0, 1]); // nobody active is expected: the first step runs at once, the second after it
    expect(scheduler.recentBatchSizes.slice(4)).toEqual([1, 1]);
    now = 1600; // 0 and 1 ran at 1500; 2 is still idle and not waited for
    await step([0, 1]);
    expect(scheduler.recentBatchSizes.slice(6)).toEqual([2]);
  });
});
