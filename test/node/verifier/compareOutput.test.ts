import { describe, expect, it } from "vitest";
import { encodeActivations } from "../../../protocol/activations.js";
import { DEFAULT_TOLERANCE, QUANTIZED_TOLERANCE, compareOutput, halfQuanta, toleranceFor } from "../../../node/verifier/compareOutput.js";

const values = Float32Array.from({ length: 2 * 40 }, (_, i) => Math.sin(i * 1.7) * (i % 40 === 3 ? 9 : 1.3));

describe("compareOutput", () => {
  it("scores 0 and exact when the stored output is the recomputation, on every wire", () => {
    for (const encoding of ["fp32", "fp16", "int8"] as const) {
      expect(compareOutput(encodeActivations(values, 2, 40, encoding), values)).toMatchObject({ score: 0, exact: true });
    }
  });

  it("allows the wire's rounding: a value moved by less than its half quantum scores 0", () => {
    // 1.3 in fp16: spacing 2^-10 in [1, 2), half 2^-11
    const x = Float32Array.of(1.3, -0.5);
    const stored = encodeActivations(x, 1, 2, "fp16");
    expect(Array.from(halfQuanta(stored, Float32Array.of(1.2998046875, -0.5)))).toEqual([2 ** -11, 2 ** -12]);
    const nearby = Float32Array.of(1.3 + 2 ** -12, -0.5);
    expect(compareOutput(stored, nearby).score).toBe(0);
    expect(compareOutput(stored, nearby).exact).toBe(true); // it even rounds to the same fp16
    // int8: half the block's scale (absmax / 127)
    const q = encodeActivations(values, 2, 40, "int8");
    const halves = halfQuanta(q, values);
    expect(halves[3]).toBeCloseTo((9 * Math.abs(Math.sin(3 * 1.7))) / 127 / 2, 7);
    expect(halves[39]).toBe(halves[32]); // one scale per 32-column block
  });

  it("scores the excess over the half quantum relative to the row's RMS", () => {
    const row = Float32Array.of(3, -4, 0, 0); // RMS 2.5
    const changed = Float32Array.of(3, -4, 0.05, 0);
    const c = compareOutput(encodeActivations(changed, 1, 4, "fp32"), row);
    expect(c.maxAbsDiff).toBeCloseTo(0.05, 7);
    expect(c.score).toBeCloseTo(0.02, 7);
    expect(compareOutput(encodeActivations(Float32Array.of(3, -4, NaN, 0), 1, 4, "fp32"), row).score).toBe(Infinity);
  });

  it("uses the quantized tolerance only for variants whose quantized weights run at accuracy level 4", () => {
    const int4 = { method: "int4", block_size: 32, matrices: { "model.layers.0.mlp.up_proj": { bits: 4 as const } } };
    expect(toleranceFor({ method: "none" })).toBe(DEFAULT_TOLERANCE);
    expect(toleranceFor({ method: "svd", matrices: { "model.layers.0.mlp.up_proj": { rank: 4 } } })).toBe(DEFAULT_TOLERANCE);
    // new int4 variants pin level 0 (float activations): audited like dense ones
    expect(toleranceFor({ ...int4, accuracy_level: 0 })).toBe(DEFAULT_TOLERANCE);
    // level 4, stated or (manifests written before the field) implied
    expect(toleranceFor({ ...int4, accuracy_level: 4 })).toBe(QUANTIZED_TOLERANCE);
    expect(toleranceFor(int4)).toBe(QUANTIZED_TOLERANCE);
    expect(toleranceFor({ method: "svd", accuracy_level: 4, matrices: { "model.layers.0.mlp.up_proj": { rank: 4 } } })).toBe(DEFAULT_TOLERANCE);
    // a quantized LM head runs at the client, which no verifier replays: dense layers keep the dense tolerance
    expect(toleranceFor({ method: "head-int8", block_size: 32, accuracy_level: 4, matrices: { "model.embed_tokens": { bits: 8 } } })).toBe(DEFAULT_TOLERANCE);
    expect(toleranceFor({ ...int4, accuracy_level: 0, matrices: { ...int4.matrices, lm_head: { bits: 8 } } })).toBe(DEFAULT_TOLERANCE);
  });
});
