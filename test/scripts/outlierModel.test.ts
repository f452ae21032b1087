import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { ModelDirectory } from "../../engine/model/modelDir.js";
import { Head } from "../../engine/runtime/head.js";
import { Shard } from "../../engine/runtime/shard.js";
import { writeOutlierModel } from "../../scripts/bench/lib/outlierModel.js";
import { bitsEqual, randomModel, scratchDir } from "../engine/helpers.js";

const scratch = scratchDir();
afterAll(() => scratch.cleanup());

/** Logits of `ids` through the whole model in one prefill. */
async function logits(model: ModelDirectory, ids: number[]): Promise<Float32Array> {
  const shard = await Shard.load(model, 0, model.config.numLayers);
  const head = await Head.load(model);
  try {
    return await head.logits(await shard.compute(head.embed(ids), shard.newCache()));
  } finally {
    await shard.release();
    await head.release();
  }
}

describe("the outlier-channel model of bench:compress (scripts/bench/lib/outlierModel.ts)", () => {
  const source = randomModel(scratch.dir, "source", {}, { dtype: "F16" });
  const outlier = writeOutlierModel(source.dir, join(scratch.dir, "outlier"), { channels: 3, scale: 64, seed: 5, mode: "rescaled" });
  const model = ModelDirectory.open(outlier.dir);

  it("makes the chosen channels of both norms 64× louder and divides the projections' input columns by as much", () => {
    expect(outlier.channels).toHaveLength(3);
    expect(new Set(outlier.channels).size).toBe(3);
    const H = source.config.hiddenSize;
    const prefix = "model.layers.1.";
    const norm = source.tensor(`${prefix}post_attention_layernorm.weight`, [H]);
    const louder = model.tensor(`${prefix}post_attention_layernorm.weight`, [H]);
    const up = source.tensor(`${prefix}mlp.up_proj.weight`, [source.config.intermediateSize, H]);
    const quieter = model.tensor(`${prefix}mlp.up_proj.weight`, [source.config.intermediateSize, H]);
    for (let c = 0; c < H; c++) {
      const k = outlier.channels.includes(c) ? 64 : 1;
      expect(louder[c]).toBe(norm[c]! * k);
      expect(quieter[5 * H + c]).toBe(up[5 * H + c]! / k);
    }
    const down = `${prefix}mlp.down_proj.weight`;
    expect(bitsEqual(model.tensor(down, [H, source.config.intermediateSize]), source.tensor(down, [H, source.config.intermediateSize]))).toBe(true);
  });

  it("computes exactly what the source model computes", async () => {
    const ids = [1, 17, 42, 8, 93, 5, 60, 33];
    expect(bitsEqual(await logits(model, ids), await logits(source, ids))).toBe(true);
  });

  it("in amplified mode keeps the projections as they were, so the loud channels reach them", () => {
    const amplified = writeOutlierModel(source.dir, join(scratch.dir, "amplified"), { channels: 3, scale: 64, seed: 5, mode: "amplified" });
    expect(amplified.channels).toEqual(outlier.channels);
    const loud = ModelDirectory.open(amplified.dir);
    const H = source.config.hiddenSize;
    const up = "model.layers.0.mlp.up_proj.weight";
    const shape = [source.config.intermediateSize, H];
    expect(bitsEqual(loud.tensor(up, shape), source.tensor(up, shape))).toBe(true);
    const norm = loud.tensor("model.layers.0.input_layernorm.weight", [H]);
    const quiet = source.tensor("model.layers.0.input_layernorm.weight", [H]);
    for (const c of amplified.channels) expect(norm[c]).toBe(quiet[c]! * 64);
  });

  it("refuses a scale that would round and a channel count the model does not have", () => {
    expect(() => writeOutlierModel(source.dir, join(scratch.dir, "bad"), { channels: 2, scale: 50, seed: 1, mode: "rescaled" })).toThrow("outlier scale 50: expected a power of two above 1");
    expect(() => writeOutlierModel(source.dir, join(scratch.dir, "bad"), { channels: 49, scale: 64, seed: 1, mode: "rescaled" })).toThrow("outlier channels 49: expected an integer in 1..48");
  });
});
