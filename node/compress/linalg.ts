import { CholeskyDecomposition, EigenvalueDecomposition, Matrix } from "ml-matrix";

/** A dense row-major float64 matrix. */
export interface Mat {
  rows: number;
  cols: number;
  data: Float64Array;
}

export function mat(rows: number, cols: number, data = new Float64Array(rows * cols)): Mat {
  if (data.length !== rows * cols) throw new Error(`matrix: ${data.length} values is not ${rows}×${cols}`);
  return { rows, cols, data };
}

export function fromFloat32(rows: number, cols: number, data: Float32Array): Mat {
  return mat(rows, cols, Float64Array.from(data));
}

export function frobeniusSquared(m: Mat): number {
  let s = 0;
  for (const v of m.data) s += v * v;
  return s;
}

/** a · b. */
export function multiply(a: Mat, b: Mat): Mat {
  if (a.cols !== b.rows) throw new Error(`multiply: ${a.rows}×${a.cols} by ${b.rows}×${b.cols}`);
  const out = new Float64Array(a.rows * b.cols);
  for (let i = 0; i < a.rows; i++) {
    const o = i * b.cols;
    for (let k = 0; k < a.cols; k++) {
      const aik = a.data[i * a.cols + k]!;
      if (aik === 0) continue;
      const bk = k * b.cols;
      for (let j = 0; j < b.cols; j++) out[o + j]! += aik * b.data[bk + j]!;
    }
  }
  return mat(a.rows, b.cols, out);
}

/** m · mᵀ (rows × rows), from dot products of contiguous rows; only half is computed. */
export function gramOfRows(m: Mat): Mat {
  const { rows, cols, data } = m;
  const g = new Float64Array(rows * rows);
  for (let i = 0; i < rows; i++) {
    const a = i * cols;
    for (let j = 0; j <= i; j++) {
      const b = j * cols;
      let s = 0;
      for (let c = 0; c < cols; c++) s += data[a + c]! * data[b + c]!;
      g[i * rows + j] = s;
      g[j * rows + i] = s;
    }
  }
  return mat(rows, rows, g);
}

export function transposed(m: Mat): Mat {
  const out = new Float64Array(m.data.length);
  for (let r = 0; r < m.rows; r++) for (let c = 0; c < m.cols; c++) out[c * m.rows + r] = m.data[r * m.cols + c]!;
  return mat(m.cols, m.rows, out);
}

function toMlMatrix(m: Mat): Matrix {
  return Matrix.from1DArray(m.rows, m.cols, m.data);
}

function fromMlMatrix(m: Matrix): Mat {
  return mat(m.rows, m.columns, Float64Array.from(m.to1DArray()));
}

/**
 * A singular value decomposition M = U Σ Vᵀ computed from the eigendecomposition of the smaller
 * Gram matrix (M Mᵀ or Mᵀ M, symmetric QL via ml-matrix). Forming the Gram squares the condition
 * number, which only blurs singular values below ~1e-8·σ₁ — far below anything a truncation keeps —
 * and costs one Gram product plus an eigensolve of the smaller side instead of a full bidiagonal
 * SVD. Only the vectors of the kept rank are formed on the other side.
 */
export class Svd {
  /** Singular values, descending; min(rows, cols) of them. */
  readonly values: Float64Array;
  private readonly m: Mat;
  /** Eigenvectors of the smaller Gram, one per column, ordered like `values`. */
  private readonly small: Mat;
  private readonly wide: boolean; // rows ≤ cols: the small side is U

  constructor(m: Mat) {
    this.m = m;
    this.wide = m.rows <= m.cols;
    const gram = this.wide ? gramOfRows(m) : gramOfRows(transposed(m));
    const eig = new EigenvalueDecomposition(toMlMatrix(gram), { assumeSymmetric: true });
    const n = gram.rows;
    const order = Array.from({ length: n }, (_, i) => i).sort((a, b) => eig.realEigenvalues[b]! - eig.realEigenvalues[a]!);
    this.values = Float64Array.from(order, (i) => Math.sqrt(Math.max(0, eig.realEigenvalues[i]!)));
    const vectors = fromMlMatrix(eig.eigenvectorMatrix);
    const small = new Float64Array(n * n);
    for (let r = 0; r < n; r++) for (let k = 0; k < n; k++) small[r * n + k] = vectors.data[r * n + order[k]!]!;
    this.small = mat(n, n, small);
  }

  /** Σ σᵢ² over i ≥ rank: the squared Frobenius error of the best rank-`rank` approximation. */
  discardedEnergy(rank: number): number {
    let s = 0;
    for (let i = rank; i < this.values.length; i++) s += this.values[i]! ** 2;
    return s;
  }

  /**
   * The rank-`rank` truncation as two factors, M ≈ left · right, with √σ on each side so both
   * factors have similar ranges (this matters once they are quantized): left (rows, rank),
   * right (rank, cols).
   */
  factors(rank: number): { left: Mat; right: Mat } {
    const { rows, cols } = this.m;
    const n = this.small.rows;
    const left = new Float64Array(rows * rank);
    const right = new Float64Array(rank * cols);
    for (let k = 0; k < rank; k++) {
      const sigma = this.values[k]!;
      const root = Math.sqrt(sigma);
      // the other side's vector: Mᵀu/σ (wide) or Mv/σ (tall); zero when σ vanishes
      const other = sigma > 0 ? this.otherVector(k, sigma) : new Float64Array(this.wide ? cols : rows);
      for (let i = 0; i < n; i++) {
        const s = this.small.data[i * n + k]! * root;
        if (this.wide) left[i * rank + k] = s;
        else right[k * cols + i] = s;
      }
      for (let i = 0; i < other.length; i++) {
        if (this.wide) right[k * cols + i] = other[i]! * root;
        else left[i * rank + k] = other[i]! * root;
      }
    }
    return { left: mat(rows, rank, left), right: mat(rank, cols, right) };
  }

  private otherVector(k: number, sigma: number): Float64Array {
    const { rows, cols, data } = this.m;
    const n = this.small.rows;
    if (this.wide) {
      const out = new Float64Array(cols); // Mᵀ u_k / σ
      for (let r = 0; r < rows; r++) {
        const u = this.small.data[r * n + k]! / sigma;
        for (let c = 0; c < cols; c++) out[c]! += data[r * cols + c]! * u;
      }
      return out;
    }
    const out = new Float64Array(rows); // M v_k / σ
    for (let r = 0; r < rows; r++) {
      let s = 0;
      for (let c = 0; c < cols; c++) s += data[r * cols + c]! * this.small.data[c * n + k]!;
      out[r] = s / sigma;
    }
    return out;
  }
}

/** Lower-triangular L with L Lᵀ = a (a symmetric positive definite); throws when it is not. */
export function cholesky(a: Mat): Mat {
  const chol = new CholeskyDecomposition(toMlMatrix(a));
  if (!chol.isPositiveDefinite()) throw new Error("matrix is not positive definite");
  return fromMlMatrix(chol.lowerTriangularMatrix);
}

/** x · L⁻¹ for lower-triangular L: solves y L = x row by row (back substitution over columns). */
export function multiplyByLowerInverse(x: Mat, l: Mat): Mat {
  const n = l.rows;
  if (x.cols !== n) throw new Error(`multiplyByLowerInverse: ${x.rows}×${x.cols} by ${n}×${n}`);
  const lt = transposed(l).data; // column j of L is contiguous: lt[j·n + i] = L_ij
  const out = new Float64Array(x.data.length);
  for (let r = 0; r < x.rows; r++) {
    const base = r * n;
    // y L = x  ⇔  for j from n−1 down: y_j = (x_j − Σ_{i>j} y_i L_ij) / L_jj
    for (let j = n - 1; j >= 0; j--) {
      let s = x.data[base + j]!;
      const col = j * n;
      for (let i = j + 1; i < n; i++) s -= out[base + i]! * lt[col + i]!;
      out[base + j] = s / lt[col + j]!;
    }
  }
  return mat(x.rows, n, out);
}
