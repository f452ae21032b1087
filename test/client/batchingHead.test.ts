import { afterAll, describe, expect, it } from "vitest";
import { Head } from "../../engine/runtime/head.js";
import { BatchingHead } from "../../client/batchingHead.js";
import { generate } from "../../client/generate.js";
import { LocalPipeline } from "../../client/localPipeline.js";
import { bitsEqual, randomModel, scratchDir } from "../engine/helpers.js";

const scratch = scratchDir();
afterAll(() => scratch.cleanup());

describe("BatchingHead", () => {
  it("answers concurrent logits requests from one run with the rows separate calls give", async () => {
    const model = randomModel(scratch.dir, "head");
    const head = await Head.load(model);
    const shared = new BatchingHead(head);
    const H = model.config.hiddenSize;
    const inputs = [1, 3, 1, 2].map((rows, i) => Float32Array.from({ length: rows * H }, (_, j) => Math.sin(j * (i + 1)) * 0.5));
    const batched = await Promise.all(inputs.map((h) => shared.logits(h)));
    expect(shared.recentBatchSizes).toEqual([4]); // requested in one turn of the event loop: one run
    for (let i = 0; i < inputs.length; i++) expect(bitsEqual(batched[i]!, await head.logits(inputs[i]!))).toBe(true);
    await expect(shared.logits(new Float32Array(H + 1))).rejects.toThrow(`hidden states of ${H + 1} floats are not whole ${H}-wide rows`);
  });

  it("concurrent generations through it produce the tokens each would alone", async () => {
    const model = randomModel(scratch.dir, "gen");
    const head = await Head.load(model);
    const pipeline = await LocalPipeline.load(model);
    const prompts = [[1, 2, 3], [4, 5], [6, 7, 8, 9]];
    const alone = [];
    for (const p of prompts) alone.push((await generate(head, pipeline, p, { maxTokens: 12, temperature: 0 })).generatedIds);
    const shared = new BatchingHead(head);
    const together = await Promise.all(prompts.map((p) => generate(shared, pipeline, p, { maxTokens: 12, temperature: 0 })));
    expect(together.map((r) => r.generatedIds)).toEqual(alone);
  });

  it("after a run of k requests, waits for up to k requests that arrive a little apart, and for no more", async () => {
    const model = randomModel(scratch.dir, "gather");
    const head = await Head.load(model);
    const shared = new BatchingHead(head, 64, 20);
    const H = model.config.hiddenSize;
    const row = (i: number): Float32Array => Float32Array.from({ length: H }, (_, j) => Math.cos(j + i) * 0.5);
    await Promise.all([0, 1, 2].map((i) => shared.logits(row(i))));
    // the same three, each a turn of the event loop after the previous (as one server batch's outputs arrive)
    const pending: Promise<Float32Array>[] = [];
    for (let i = 0; i < 3; i++) {
      pending.push(shared.logits(row(i)));
      await new Promise((resolve) => setImmediate(resolve));
    }
    const together = await Promise.all(pending);
    for (let i = 0; i < 3; i++) expect(bitsEqual(together[i]!, await head.logits(row(i)))).toBe(true);
    await shared.logits(row(9)); // alone: waits once, runs alone
    expect(shared.recentBatchSizes).toEqual([3, 3, 1]);
    expect(() => new BatchingHead(head, 64, -1)).toThrow("BatchingHead gatherMs must be a number ≥ 0, got -1");
  });
});
