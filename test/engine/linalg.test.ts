import { describe, expect, it } from "vitest";
import { transpose, transposeColumns, transposeInChunks } from "../../engine/onnx/linalg.js";
import { bitsEqual } from "./helpers.js";

/** A (rows, cols) matrix whose every value is distinct: r·cols + c + 0.5. */
function numbered(rows: number, cols: number): Float32Array {
  return Float32Array.from({ length: rows * cols }, (_, i) => i + 0.5);
}

function naiveTranspose(m: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(m.length);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = m[r * cols + c]!;
  return out;
}

describe("transposes of weight matrices", () => {
  it("transpose is the plain transpose for shapes that do and do not fill its row bands", () => {
    for (const [rows, cols] of [[1, 1], [1, 7], [7, 1], [33, 5], [64, 64], [65, 130]] as const) {
      expect(transpose(numbered(rows, cols), rows, cols), `${rows}×${cols}`).toEqual(naiveTranspose(numbered(rows, cols), rows, cols));
    }
  });

  it("transposeColumns writes columns c0…c1 as rows at the start of the buffer and leaves the rest", () => {
    const m = numbered(40, 9);
    const out = new Float32Array(200).fill(-1);
    const part = transposeColumns(m, 40, 9, 3, 7, out);
    expect(part.length).toBe(160);
    expect(part).toEqual(naiveTranspose(m, 40, 9).subarray(3 * 40, 7 * 40));
    expect([...out.subarray(160)]).toEqual(Array(40).fill(-1));
    expect(() => transposeColumns(m, 40, 9, 3, 7, new Float32Array(159))).toThrow("transposeColumns: columns 3…7 of 9, 40 rows, into 159 values");
  });

  it("transposeInChunks hands out the whole transpose in order, also when one column exceeds a chunk", () => {
    // 2^20 + 3 rows: one output row is longer than the default chunk, so the buffer grows
    // 50 rows: 20,971 columns to a chunk, so two chunks, the second partial
    for (const [rows, cols] of [[50, 30_000], [(1 << 20) + 3, 2]] as const) {
      const m = numbered(rows, cols);
      const whole = new Float32Array(rows * cols);
      let next = 0;
      let pieces = 0;
      transposeInChunks(m, rows, cols, (at, values) => {
        if (at !== next) throw new Error(`a chunk at ${at}, expected ${next}`);
        whole.set(values, at);
        next = at + values.length;
        pieces++;
      });
      expect(next).toBe(rows * cols);
      expect(pieces).toBeGreaterThan(1);
      expect(bitsEqual(whole, naiveTranspose(m, rows, cols))).toBe(true); // toEqual on millions of values exhausts the heap
    }
    expect(() => transposeInChunks(new Float32Array(5), 2, 3, () => undefined)).toThrow("transpose: 5 elements is not 2×3");
  });
});
