import { createRequire } from "node:module";
import { join } from "node:path";
import type { onnx as OnnxTypes } from "onnx-proto";
import { afterAll, describe, expect, it } from "vitest";
import { accuracyLevelOf, parseCompression, type QuantAccuracyLevel } from "../../engine/model/compression.js";
import { readManifest } from "../../engine/model/manifest.js";
import { ModelDirectory } from "../../engine/model/modelDir.js";
import { loadLayerWeights } from "../../engine/model/weights.js";
import { buildShardGraph } from "../../engine/onnx/shardGraph.js";
import { compressModel } from "../../node/compress/compressModel.js";
import { randomModel, scratchDir } from "./helpers.js";

const require = createRequire(import.meta.url);
const { onnx } = require("onnx-proto") as { onnx: typeof OnnxTypes };

/**
 * The MatMulNBits accuracy level is part of a quantized variant: recorded in its manifest (so in
 * its variant id), and what the graph of its quantized factors runs at. New int4 variants pin 0
 * (float activations: a verifier's replay agrees with a server's decode like dense float32 does);
 * int8 variants and manifests written before the field run at 4.
 */
const scratch = scratchDir();
afterAll(() => scratch.cleanup());
const dense = randomModel(scratch.dir, "accuracy-dense", { hidden_size: 64, intermediate_size: 96 });

/** The accuracy_level attribute of every MatMulNBits node in layer 0's graph of `model`. */
function levelsInGraph(model: ModelDirectory, quantAccuracyLevel?: QuantAccuracyLevel): number[] {
  const graph = buildShardGraph(model.config, 0, 1, (layer) => loadLayerWeights(model, layer), quantAccuracyLevel === undefined ? {} : { quantAccuracyLevel });
  const nodes = onnx.ModelProto.decode(graph).graph!.node!.filter((n) => n.opType === "MatMulNBits");
  return nodes.map((n) => Number(n.attribute!.find((a) => a.name === "accuracy_level")!.i));
}

describe("MatMulNBits accuracy level", () => {
  it("is recorded in a new variant's manifest: 0 for int4, 4 for int8", async () => {
    for (const [method, level] of [["int4", 0], ["int8", 4]] as const) {
      const out = join(scratch.dir, `accuracy-${method}`);
      await compressModel(dense.dir, out, { method });
      expect(readManifest(out)?.compression.accuracy_level).toBe(level);
      const model = ModelDirectory.open(out);
      expect(accuracyLevelOf(model.compression)).toBe(level);
      // 7 projections per layer, one MatMulNBits each, all at the variant's level
      expect(levelsInGraph(model, accuracyLevelOf(model.compression))).toEqual(Array.from({ length: 7 }, () => level));
      model.close();
    }
  });

  it("can be chosen at compression (--accuracy-level): int4 at 4 is another variant, its graph at 4; refused for unquantized methods", async () => {
    const out = join(scratch.dir, "accuracy-int4-at-4");
    const report = await compressModel(dense.dir, out, { method: "int4", accuracyLevel: 4 });
    expect(readManifest(out)?.compression.accuracy_level).toBe(4);
    const levelZero = await compressModel(dense.dir, join(scratch.dir, "accuracy-int4-at-0"), { method: "int4" });
    expect(report.variantId).not.toBe(levelZero.variantId); // same weights, other numerics: another variant
    const model = ModelDirectory.open(out);
    expect(levelsInGraph(model, accuracyLevelOf(model.compression))).toEqual(Array.from({ length: 7 }, () => 4));
    model.close();
    await expect(compressModel(dense.dir, join(scratch.dir, "x"), { method: "svd", rank: 4, accuracyLevel: 4 })).rejects.toThrow("--accuracy-level applies to quantized methods, not svd");
    await expect(compressModel(dense.dir, join(scratch.dir, "x"), { method: "int8", accuracyLevel: 2 as QuantAccuracyLevel })).rejects.toThrow("--accuracy-level must be one of 0, 4, got 2");
  });

  it("is 4 for a manifest without it (written before it was recorded), in the graph too", () => {
    const legacy = { method: "int4", block_size: 32, matrices: { "model.layers.0.mlp.up_proj": { bits: 4 } } };
    expect(accuracyLevelOf(parseCompression(legacy, "manifest.json"))).toBe(4);
    const model = ModelDirectory.open(join(scratch.dir, "accuracy-int4"));
    expect(levelsInGraph(model)).toEqual(Array.from({ length: 7 }, () => 4));
    model.close();
  });

  it("refuses a level other than 0 or 4, naming the file and the value", () => {
    expect(() => parseCompression({ method: "int4", accuracy_level: 2 }, "/m/manifest.json")).toThrow(
      "/m/manifest.json: compression accuracy_level is 2, expected one of 0, 4",
    );
    expect(() => parseCompression({ method: "int4", accuracy_level: "0" }, "/m/manifest.json")).toThrow(
      '/m/manifest.json: compression accuracy_level is "0", expected one of 0, 4',
    );
  });
});
