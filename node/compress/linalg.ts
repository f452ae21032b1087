import { CholeskyDecomposition, EigenvalueDecomposition, Matrix } from "ml-matrix";
import { ElemType, GraphBuilder } from "../../engine/onnx/graphBuilder.js";
import { createSession, ort, type RuntimeOptions } from "../../engine/runtime/session.js";

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

/**
 * Float64 matrix products through ONNX Runtime (Eigen GEMM on CPU): the Gram matrices of
 * calibration activations and of weight matrices are the bulk of compression's arithmetic, and a
 * JavaScript loop runs them ~50× slower.
 */
export class Gemm {
  private constructor(
    private readonly product: ort.InferenceSession,
    private readonly gramSession: ort.InferenceSession,
  ) {}

  static async create(options: RuntimeOptions = {}): Promise<Gemm> {
    const build = (gram: boolean): Uint8Array => {
      const g = new GraphBuilder();
      const a = g.input("a", ElemType.DOUBLE, ["M", "K"]);
      if (gram) {
        g.output(g.op("MatMul", [g.op("Transpose", [a], { perm: [1, 0] }), a]), "c", ElemType.DOUBLE, ["K", "K"]);
      } else {
        const b = g.input("b", ElemType.DOUBLE, ["K", "N"]);
        g.output(g.op("MatMul", [a, b]), "c", ElemType.DOUBLE, ["M", "N"]);
      }
      return g.serialize(gram ? "gram" : "product");
    };
    return new Gemm(await createSession(build(false), options), await createSession(build(true), options));
  }

  /** a · b. */
  async multiply(a: Mat, b: Mat): Promise<Mat> {
    if (a.cols !== b.rows) throw new Error(`multiply: ${a.rows}×${a.cols} by ${b.rows}×${b.cols}`);
    const out = await this.product.run({ a: tensor(a), b: tensor(b) });
    return mat(a.rows, b.cols, out.c!.data as Float64Array<ArrayBuffer>);
  }

  /** xᵀ · x (cols × cols). */
  async gram(x: Mat): Promise<Mat> {
    const out = await this.gramSession.run({ a: tensor(x) });
    return mat(x.cols, x.cols, out.c!.data as Float64Array<ArrayBuffer>);
  }

  async release(): Promise<void> {
    await this.product.release();
    await this.gramSession.release();
  }
}

function tensor(m: Mat): ort.Tensor {
  return new ort.Tensor("float64", m.data, [m.rows, m.cols]);
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
 * Gram matrix (M Mᵀ or Mᵀ M; symmetric tridiagonal QL via ml-matrix). Forming the Gram squares the
 * condition number, which only blurs singular values below ~1e-8·σ₁ — far below anything a
 * truncation keeps — and costs one GEMM plus an eigensolve of the smaller side instead of a full
 * bidiagonal SVD. The other side's vectors are formed only for the kept rank, by one more GEMM.
 */
export class Svd {
  private constructor(
    /** Singular values, descending; min(rows, cols) of them. */
    readonly values: Float64Array,
    private readonly m: Mat,
    /** Eigenvectors of the smaller Gram, one per column, ordered like `values`. */
    private readonly small: Mat,
    /** rows ≤ cols: the small side is U. */
    private readonly wide: boolean,
  ) {}

  static async of(m: Mat, gemm: Gemm): Promise<Svd> {
    const wide = m.rows <= m.cols;
    const gram = await gemm.gram(wide ? transposed(m) : m);
    const eig = new EigenvalueDecomposition(toMlMatrix(gram), { assumeSymmetric: true });
    const n = gram.rows;
    const order = Array.from({ length: n }, (_, i) => i).sort((a, b) => eig.realEigenvalues[b]! - eig.realEigenvalues[a]!);
    const values = Float64Array.from(order, (i) => Math.sqrt(Math.max(0, eig.realEigenvalues[i]!)));
    const vectors = fromMlMatrix(eig.eigenvectorMatrix);
    const small = new Float64Array(n * n);
    for (let r = 0; r < n; r++) for (let k = 0; k < n; k++) small[r * n + k] = vectors.data[r * n + order[k]!]!;
    return new Svd(values, m, mat(n, n, small), wide);
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
  async factors(rank: number, gemm: Gemm): Promise<{ left: Mat; right: Mat }> {
    const n = this.small.rows;
    // the kept small-side vectors, scaled by 1/σ for the other side (zero where σ vanishes)
    const kept = new Float64Array(n * rank);
    const keptOverSigma = new Float64Array(n * rank);
    for (let i = 0; i < n; i++) {
      for (let k = 0; k < rank; k++) {
        const v = this.small.data[i * n + k]!;
        const sigma = this.values[k]!;
        kept[i * rank + k] = v * Math.sqrt(sigma);
        keptOverSigma[i * rank + k] = sigma > 0 ? v / Math.sqrt(sigma) : 0;
      }
    }
    // wide: U_k√Σ is kept, and √Σ V_kᵀ = √Σ⁻¹ U_kᵀ M = (Mᵀ U_k √Σ⁻¹)ᵀ; tall: symmetric
    if (this.wide) {
      const right = await gemm.multiply(transposed(mat(n, rank, keptOverSigma)), this.m);
      return { left: mat(n, rank, kept), right };
    }
    const left = await gemm.multiply(this.m, mat(n, rank, keptOverSigma));
    return { left, right: transposed(mat(n, rank, kept)) };
  }
}

/** Lower-triangular L with L Lᵀ = a (a symmetric positive definite); throws when it is not. */
export function cholesky(a: Mat): Mat {
  const chol = new CholeskyDecomposition(toMlMatrix(a));
  if (!chol.isPositiveDefinite()) throw new Error("matrix is not positive definite");
  return fromMlMatrix(chol.lowerTriangularMatrix);
}

/**
 * Lower-triangular S with S Sᵀ = G + λ·mean(diag G)·I: the whitening factor of a calibration Gram
 * G = XᵀX (SVD-LLM). A small λ keeps G positive definite when some input direction never varies.
 */
export function dampedCholesky(gram: Mat, damping: number): Mat {
  const n = gram.rows;
  let trace = 0;
  for (let i = 0; i < n; i++) trace += gram.data[i * n + i]!;
  const damped = mat(n, n, Float64Array.from(gram.data));
  const lambda = (damping * trace) / n;
  for (let i = 0; i < n; i++) damped.data[i * n + i]! += lambda;
  return cholesky(damped);
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
