import { afterAll, describe, expect, it } from "vitest";
import { Head } from "../../engine/runtime/head.js";
import { Shard } from "../../engine/runtime/shard.js";
import { bitsEqual, randomModel, scratchDir } from "./helpers.js";

const scratch = scratchDir();
afterAll(() => scratch.cleanup());

describe("batched decode (several sequences' next tokens in one engine run)", () => {
  for (const [name, overrides] of [
    ["fused attention (head_dim 16): one run", { hidden_size: 64, num_attention_heads: 4, num_key_value_heads: 2 }],
    ["operator attention (head_dim 12): one run per sequence", { hidden_size: 48, num_attention_heads: 4, num_key_value_heads: 2 }],
  ] as const) {
    it(`${name} gives what separate steps give, bit for bit, and grows every cache`, async () => {
      const model = randomModel(scratch.dir, name.slice(0, 5), overrides);
      const shard = await Shard.load(model, 0, model.config.numLayers);
      const head = await Head.load(model);
      expect(shard.batches).toBe(model.config.headDim % 16 === 0);
      // four sequences with prompts of different lengths, each twice: stepped alone and batched
      const alone = Array.from({ length: 4 }, () => shard.newCache());
      const batched = Array.from({ length: 4 }, () => shard.newCache());
      for (let b = 0; b < 4; b++) {
        const ids = Array.from({ length: 3 + 5 * b }, (_, i) => (i * 7 + b) % model.config.vocabSize);
        await shard.compute(head.embed(ids), alone[b]!);
        await shard.compute(head.embed(ids), batched[b]!);
      }
      for (let step = 0; step < 6; step++) {
        const hiddens = [0, 1, 2, 3].map((b) => head.embed([(step * 11 + b) % model.config.vocabSize]));
        const expected: Float32Array[] = [];
        for (let b = 0; b < 4; b++) expected.push(await shard.compute(hiddens[b]!, alone[b]!));
        const got = await shard.computeBatch(hiddens, batched);
        got.forEach((h, b) => expect(bitsEqual(h, expected[b]!)).toBe(true));
      }
      expect(batched.map((k) => k.length)).toEqual([3 + 6, 8 + 6, 13 + 6, 18 + 6]);
      // the caches stay usable on their own: one more single step agrees too
      const next = head.embed([5]);
      expect(bitsEqual(await shard.compute(next, batched[2]!), await shard.compute(next, alone[2]!))).toBe(true);
      await expect(shard.computeBatch([next, next], [batched[0]!, batched[0]!])).rejects.toThrow("a batch names the same sequence twice");
      await expect(shard.computeBatch([head.embed([1, 2])], [batched[1]!])).rejects.toThrow("a batched step takes one token of");
    });
  }
});
