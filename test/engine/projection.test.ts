import { describe, expect, it } from "vitest";
import { dequantize, projectionToDense, quantize, dense } from "../../engine/model/projection.js";
import { SeededRandom } from "../../engine/random.js";

describe("block quantization (MatMulNBits layout)", () => {
  it("4-bit: codes around zero point 8, two per byte low nibble first, last block zero-padded", () => {
    // one row of 20 values, block 16 → 2 blocks: −3.5 … 3.5 in steps of 0.5 and 1.0; then 4 × −2
    const row = Float32Array.from({ length: 20 }, (_, i) => (i < 15 ? (i - 7) * 0.5 : i === 15 ? 1 : -2));
    const q = quantize(row, 1, 20, 4, 16);
    expect([...q.scales]).toEqual([0.5, Math.fround(2 / 7)]);
    expect(q.packed.length).toBe(2 * 8);
    expect(q.packed[0]).toBe(0x21); // −3.5 → code 1, −3 → code 2
    expect(q.packed[7]).toBe(0xaf); // 3.5 → code 15, 1 → code 10
    expect([...q.packed.subarray(8)]).toEqual([0x11, 0x11, 0x88, 0x88, 0x88, 0x88, 0x88, 0x88]); // −2 → code 1; padding → 8 (zero)
    const back = dequantize(q);
    expect([...back.subarray(0, 16)]).toEqual([...row.subarray(0, 16)]);
    expect([...back.subarray(16)]).toEqual([-7, -7, -7, -7].map((c) => Math.fround(c * Math.fround(2 / 7))));
  });

  it("8-bit round trip is within half a step of every value", () => {
    const rng = new SeededRandom(5);
    const rows = 7;
    const cols = 70;
    const m = Float32Array.from({ length: rows * cols }, () => rng.normal());
    const q = quantize(m, rows, cols, 8, 32);
    const back = dequantize(q);
    for (let r = 0; r < rows; r++) {
      for (let c = 0; c < cols; c++) {
        const scale = q.scales[r * 3 + Math.floor(c / 32)]!;
        expect(Math.abs(back[r * cols + c]! - m[r * cols + c]!)).toBeLessThanOrEqual(scale / 2 + 1e-7);
      }
    }
  });

  it("refuses bits and block sizes MatMulNBits cannot run", () => {
    expect(() => quantize(new Float32Array(4), 1, 4, 3 as 4, 16)).toThrow("quantization bits must be one of 4, 8, got 3");
    expect(() => quantize(new Float32Array(4), 1, 4, 8, 24)).toThrow("quantization block size must be one of 16, 32, 64, 128, 256, got 24");
  });

  it("a low-rank projection stands for the product of its factors", () => {
    const left = dense(2, 1, Float32Array.of(1, 2));
    const right = dense(1, 3, Float32Array.of(3, 4, 5));
    expect([...projectionToDense({ factors: [left, right] })]).toEqual([3, 4, 5, 6, 8, 10]);
  });
});
