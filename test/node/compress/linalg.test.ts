import { SingularValueDecomposition, Matrix } from "ml-matrix";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SeededRandom } from "../../../engine/random.js";
import { dampedCholesky, frobeniusSquared, Gemm, mat, multiplyByLowerInverse, Svd, transposed, type Mat } from "../../../node/compress/linalg.js";

let gemm: Gemm;
beforeAll(async () => {
  gemm = await Gemm.create();
});
afterAll(async () => {
  await gemm.release();
});

function randomMat(rows: number, cols: number, seed: number, scaleOfColumn: (c: number) => number = () => 1): Mat {
  const rng = new SeededRandom(seed);
  return mat(rows, cols, Float64Array.from({ length: rows * cols }, (_, i) => rng.normal() * scaleOfColumn(i % cols)));
}

function difference(a: Mat, b: Mat): Mat {
  return mat(a.rows, a.cols, a.data.map((v, i) => v - b.data[i]!));
}

describe("SVD through the Gram eigendecomposition", () => {
  for (const [rows, cols] of [
    [30, 50],
    [50, 30],
    [40, 40],
  ] as const) {
    it(`${rows}×${cols}: singular values match a bidiagonal SVD, and a rank-k truncation's error is the discarded energy`, async () => {
      const m = randomMat(rows, cols, rows * 100 + cols);
      const svd = await Svd.of(m, gemm);
      const reference = new SingularValueDecomposition(Matrix.from1DArray(rows, cols, m.data), { autoTranspose: true }).diagonal;
      expect(svd.values.length).toBe(Math.min(rows, cols));
      for (let i = 0; i < svd.values.length; i++) expect(svd.values[i]).toBeCloseTo(reference[i]!, 9);
      for (const k of [1, 7, 19, Math.min(rows, cols)]) {
        const { left, right } = await svd.factors(k, gemm);
        expect([left.rows, left.cols, right.rows, right.cols]).toEqual([rows, k, k, cols]);
        const error = frobeniusSquared(difference(m, await gemm.multiply(left, right)));
        const discarded = svd.discardedEnergy(k);
        expect(Math.abs(error - discarded)).toBeLessThan(1e-9 * frobeniusSquared(m));
      }
      expect(svd.discardedEnergy(0)).toBeCloseTo(frobeniusSquared(m), 8);
    });
  }
});

describe("activation-aware (whitened) truncation", () => {
  it("the output error on the calibration data equals the discarded whitened energy", async () => {
    const inDim = 24;
    const outDim = 16;
    // calibration activations with a few loud channels, as trained models have
    const x = randomMat(400, inDim, 3, (c) => (c % 7 === 0 ? 20 : 1)); // (tokens, in)
    const w = randomMat(outDim, inDim, 4);
    const s = dampedCholesky(await gemm.gram(x), 0); // S Sᵀ = XᵀX
    const svd = await Svd.of(await gemm.multiply(w, s), gemm);
    for (const k of [2, 8, 15]) {
      const { left, right } = await svd.factors(k, gemm);
      const compressed = await gemm.multiply(left, multiplyByLowerInverse(right, s)); // W' = L·R·S⁻¹
      const outputError = frobeniusSquared(await gemm.multiply(x, transposed(difference(w, compressed)))); // ‖X(W − W')ᵀ‖²
      expect(Math.abs(outputError - svd.discardedEnergy(k)) / svd.discardedEnergy(k)).toBeLessThan(1e-9);
      // and plain truncation at the same rank does worse on this data
      const plain = await Svd.of(w, gemm);
      const p = await plain.factors(k, gemm);
      const plainError = frobeniusSquared(await gemm.multiply(x, transposed(difference(w, await gemm.multiply(p.left, p.right)))));
      expect(plainError).toBeGreaterThan(outputError);
    }
  });

  it("multiplyByLowerInverse solves y·L = x", async () => {
    const l = dampedCholesky(await gemm.gram(randomMat(30, 6, 9)), 0.01);
    const x = randomMat(3, 6, 10);
    const y = multiplyByLowerInverse(x, l);
    const back = await gemm.multiply(y, l);
    for (let i = 0; i < x.data.length; i++) expect(back.data[i]).toBeCloseTo(x.data[i]!, 12);
  });

  it("a Gram that is not positive definite is refused", () => {
    expect(() => dampedCholesky(mat(2, 2, Float64Array.of(1, 1, 1, 1)), 0)).toThrow("not positive definite");
  });
});
