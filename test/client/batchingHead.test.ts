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
});
