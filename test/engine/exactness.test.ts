import { afterAll, describe, expect, it } from "vitest";
import type { ModelDirectory } from "../../engine/model/modelDir.js";
import type { HfConfig } from "../../engine/model/randomModel.js";
import { Head } from "../../engine/runtime/head.js";
import { Shard } from "../../engine/runtime/shard.js";
import type { AttentionKind } from "../../engine/onnx/shardGraph.js";
import { argmax } from "../../client/sampler.js";
import { LocalPipeline } from "../../client/localPipeline.js";
import { ReferenceModel } from "./reference.js";
import { bitsEqual, maxAbsDiff, randomModel, scratchDir } from "./helpers.js";

const scratch = scratchDir();
afterAll(() => scratch.cleanup());

const SHAPES: Record<string, HfConfig> = {
  "llama, no GQA (ratio 1)": { num_attention_heads: 4, num_key_value_heads: 4 },
  "llama, GQA ratio 2, untied": { num_attention_heads: 4, num_key_value_heads: 2 },
  "llama, GQA ratio 4, tied, head_dim 16": { num_attention_heads: 8, num_key_value_heads: 2, hidden_size: 128, tie_word_embeddings: true },
  "llama, GQA ratio 2, head_dim 32": { num_attention_heads: 4, num_key_value_heads: 2, hidden_size: 128 },
  "llama, odd hidden size 45, explicit head_dim": { hidden_size: 45, head_dim: 6, num_attention_heads: 4, num_key_value_heads: 1 },
  "llama with attention_bias": { attention_bias: true },
  "mistral": { model_type: "mistral", architectures: ["MistralForCausalLM"], sliding_window: 4096 },
  "qwen2 (q/k/v biases), tied": { model_type: "qwen2", architectures: ["Qwen2ForCausalLM"], tie_word_embeddings: true, hidden_size: 64 },
  "llama 3 rope scaling": {
    rope_theta: 500000,
    rope_scaling: { rope_type: "llama3", factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 32 },
  },
};

const PROMPT = [1, 17, 42, 8, 93, 5, 60, 33, 71, 2, 14, 88];

/** Logits at every position of PROMPT from the engine: a prefill of 7 tokens, then one token per step. */
async function engineLogits(model: ModelDirectory, attention: AttentionKind): Promise<Float32Array[]> {
  const head = await Head.load(model);
  const pipeline = await LocalPipeline.load(model, [], { attention });
  const seq = await pipeline.openSequence();
  const V = model.config.vocabSize;
  const out: Float32Array[] = [];
  const prefill = await head.logits(await seq.compute(head.embed(PROMPT.slice(0, 7))));
  for (let t = 0; t < 7; t++) out.push(prefill.slice(t * V, (t + 1) * V));
  for (const id of PROMPT.slice(7)) out.push(await head.logits(await seq.compute(head.embed([id]))));
  return out;
}

describe("ONNX engine against the float64 reference", () => {
  for (const [name, overrides] of Object.entries(SHAPES)) {
    it(`${name}: logits within 1e-4 at every position, with every attention graph that applies`, async () => {
      const model = randomModel(scratch.dir, name.replace(/\W+/g, "-"), overrides);
      const reference = new ReferenceModel(model).logits(PROMPT);
      // the fused kernel only takes head_dim % 16 == 0 (real models: 64, 128)
      const kinds: AttentionKind[] = model.config.headDim % 16 === 0 ? ["ops", "gqa"] : ["ops"];
      for (const attention of kinds) {
        const engine = await engineLogits(model, attention);
        const worst = Math.max(...engine.map((l, t) => maxAbsDiff(l, reference[t]!)));
        expect({ attention, worst: worst < 1e-4 ? "ok" : worst }).toEqual({ attention, worst: "ok" });
      }
      // the logits are not trivially small: the comparison means something
      expect(Math.max(...reference[5]!.map(Math.abs))).toBeGreaterThan(0.1);
    });
  }

  for (const dtype of ["F16", "BF16"] as const) {
    it(`reads ${dtype} weights exactly (reference sees the same rounded values)`, async () => {
      const model = randomModel(scratch.dir, `dtype-${dtype}`, {}, { dtype });
      expect(model.info("model.layers.0.self_attn.q_proj.weight").dtype).toBe(dtype);
      const reference = new ReferenceModel(model).logits(PROMPT);
      const engine = await engineLogits(model, "ops");
      expect(Math.max(...engine.map((l, t) => maxAbsDiff(l, reference[t]!)))).toBeLessThan(1e-4);
    });
  }
});

describe("sharding and caching change nothing", () => {
  const STEPS = 64;

  /** Greedy decode of STEPS tokens; returns every step's logits. */
  async function greedyLogits(model: ModelDirectory, split: readonly number[]): Promise<Float32Array[]> {
    const head = await Head.load(model);
    const pipeline = await LocalPipeline.load(model, split);
    const seq = await pipeline.openSequence();
    const H = model.config.hiddenSize;
    const logits: Float32Array[] = [];
    let input = PROMPT.slice(0, 5);
    for (let s = 0; s < STEPS; s++) {
      const hidden = await seq.compute(head.embed(input));
      const l = await head.logits(hidden.slice(hidden.length - H));
      logits.push(l);
      input = [argmax(l)];
    }
    await pipeline.release();
    return logits;
  }

  it("every split gives bit-identical logits over 64 greedy tokens", async () => {
    const model = randomModel(scratch.dir, "split", { num_hidden_layers: 5, max_position_embeddings: 128 });
    const whole = await greedyLogits(model, []);
    for (const split of [[1], [2], [4], [1, 3], [1, 2, 3, 4]]) {
      const sharded = await greedyLogits(model, split);
      const firstDiff = sharded.findIndex((l, i) => !bitsEqual(l, whole[i]!));
      expect({ split, firstDiff }).toEqual({ split, firstDiff: -1 });
    }
  });

  it("KV-cached decode equals recomputing the whole sequence, over 64 greedy tokens", async () => {
    const model = randomModel(scratch.dir, "cache", { max_position_embeddings: 128 });
    const head = await Head.load(model);
    const shard = await Shard.load(model, 0, model.config.numLayers);
    const H = model.config.hiddenSize;
    const cache = shard.newCache();
    const ids = PROMPT.slice(0, 5);
    let hidden = await shard.compute(head.embed(ids), cache);
    let worst = 0;
    for (let s = 0; s < STEPS; s++) {
      const cached = await head.logits(hidden.slice(hidden.length - H));
      const full = await shard.compute(head.embed(ids), shard.newCache());
      const recomputed = await head.logits(full.slice(full.length - H));
      worst = Math.max(worst, maxAbsDiff(cached, recomputed));
      expect(argmax(cached)).toBe(argmax(recomputed));
      ids.push(argmax(cached));
      hidden = await shard.compute(head.embed([ids[ids.length - 1]!]), cache);
    }
    expect(cache.length).toBe(5 + STEPS);
    // not bit-identical: a T-row prefill and a 1-row decode use different GEMM kernels
    expect(worst).toBeLessThan(1e-4);
  });
});
