import { ModelFormatError } from "../errors.js";

/**
 * How a projection matrix W (out, in) of a layer is stored. A dense model has one dense factor; a
 * low-rank (SVD) model has two, W ≈ left (out, rank) · right (rank, in); any factor may instead be
 * block-quantized. The graph applies the factors right to left, so a low-rank projection costs
 * rank·(out + in) weights instead of out·in.
 */
export interface Projection {
  /** W = factors[0] · factors[1] · …, each row-major (rows, cols). */
  factors: Factor[];
}

export type Factor = DenseFactor | QuantizedFactor;

export interface DenseFactor {
  kind: "dense";
  rows: number;
  cols: number;
  data: Float32Array;
}

/**
 * Symmetric block quantization along the input (column) axis, laid out as ONNX Runtime's
 * com.microsoft.MatMulNBits expects: packed (rows, blocks, blockSize·bits/8) of unsigned codes
 * q ∈ [0, 2^bits) with value (q − 2^(bits−1))·scale, two 4-bit codes per byte low nibble first,
 * the last block zero-padded; scales (rows·blocks).
 */
export interface QuantizedFactor {
  kind: "quantized";
  rows: number;
  cols: number;
  bits: QuantBits;
  blockSize: number;
  packed: Uint8Array;
  scales: Float32Array;
}

export const QUANT_BITS = [4, 8] as const;
export type QuantBits = (typeof QUANT_BITS)[number];
/** Block sizes MatMulNBits accepts: powers of two from 16. */
export const QUANT_BLOCK_SIZES = [16, 32, 64, 128, 256] as const;

export function blocksOf(cols: number, blockSize: number): number {
  return Math.ceil(cols / blockSize);
}

export function dense(rows: number, cols: number, data: Float32Array): DenseFactor {
  if (data.length !== rows * cols) throw new Error(`dense factor: ${data.length} values is not ${rows}×${cols}`);
  return { kind: "dense", rows, cols, data };
}

/** Weights a projection stores (parameters, not bytes). */
export function projectionParameters(p: Projection): number {
  return p.factors.reduce((sum, f) => sum + f.rows * f.cols, 0);
}

/** Bytes a projection's weights occupy in the graph (float32 dense, packed codes plus float32 scales). */
export function projectionBytes(p: Projection): number {
  return p.factors.reduce((sum, f) => sum + (f.kind === "dense" ? 4 * f.data.length : f.packed.length + 4 * f.scales.length), 0);
}

/** Quantizes a row-major (rows, cols) matrix with one scale per row and block (max-abs, symmetric). */
export function quantize(data: Float32Array, rows: number, cols: number, bits: QuantBits, blockSize: number): QuantizedFactor {
  checkQuantParams(bits, blockSize);
  const blocks = blocksOf(cols, blockSize);
  const blob = (blockSize * bits) / 8;
  const zero = 1 << (bits - 1);
  const qmax = zero - 1; // symmetric codes: −qmax … qmax around the zero point
  const packed = new Uint8Array(rows * blocks * blob);
  const scales = new Float32Array(rows * blocks);
  for (let r = 0; r < rows; r++) {
    for (let b = 0; b < blocks; b++) {
      const c0 = b * blockSize;
      const c1 = Math.min(c0 + blockSize, cols);
      let maxAbs = 0;
      for (let c = c0; c < c1; c++) maxAbs = Math.max(maxAbs, Math.abs(data[r * cols + c]!));
      const scale = Math.fround(maxAbs / qmax);
      scales[r * blocks + b] = scale;
      const base = (r * blocks + b) * blob;
      for (let i = 0; i < blockSize; i++) {
        const c = c0 + i;
        const code = c < c1 && scale > 0 ? zero + Math.max(-qmax, Math.min(qmax, Math.round(data[r * cols + c]! / scale))) : zero;
        if (bits === 8) packed[base + i] = code;
        else packed[base + (i >> 1)]! |= (i & 1) === 0 ? code : code << 4;
      }
    }
  }
  return { kind: "quantized", rows, cols, bits, blockSize, packed, scales };
}

/** The float32 matrix a quantized factor stands for (for references and error measurements). */
export function dequantize(f: QuantizedFactor): Float32Array {
  const blocks = blocksOf(f.cols, f.blockSize);
  const blob = (f.blockSize * f.bits) / 8;
  const zero = 1 << (f.bits - 1);
  const out = new Float32Array(f.rows * f.cols);
  for (let r = 0; r < f.rows; r++) {
    for (let c = 0; c < f.cols; c++) {
      const b = Math.floor(c / f.blockSize);
      const i = c % f.blockSize;
      const byte = f.packed[(r * blocks + b) * blob + (f.bits === 8 ? i : i >> 1)]!;
      const code = f.bits === 8 ? byte : (i & 1) === 0 ? byte & 0x0f : byte >> 4;
      out[r * f.cols + c] = (code - zero) * f.scales[r * blocks + b]!;
    }
  }
  return out;
}

export function factorToDense(f: Factor): Float32Array {
  return f.kind === "dense" ? f.data : dequantize(f);
}

/** The single (out, in) matrix a projection stands for, in float64 products (references and tests). */
export function projectionToDense(p: Projection): Float32Array {
  let acc = factorToDense(p.factors[0]!);
  const rows = p.factors[0]!.rows;
  let inner = p.factors[0]!.cols;
  for (const f of p.factors.slice(1)) {
    if (f.rows !== inner) throw new Error(`projection factors do not chain: ${inner} columns then ${f.rows} rows`);
    const b = factorToDense(f);
    const out = new Float32Array(rows * f.cols);
    for (let r = 0; r < rows; r++) {
      for (let c = 0; c < f.cols; c++) {
        let s = 0;
        for (let k = 0; k < inner; k++) s += acc[r * inner + k]! * b[k * f.cols + c]!;
        out[r * f.cols + c] = s;
      }
    }
    acc = out;
    inner = f.cols;
  }
  return acc;
}

export function checkQuantParams(bits: number, blockSize: number): void {
  if (!(QUANT_BITS as readonly number[]).includes(bits)) {
    throw new ModelFormatError(`quantization bits must be one of ${QUANT_BITS.join(", ")}, got ${bits}`, { bits });
  }
  if (!(QUANT_BLOCK_SIZES as readonly number[]).includes(blockSize)) {
    throw new ModelFormatError(`quantization block size must be one of ${QUANT_BLOCK_SIZES.join(", ")}, got ${blockSize}`, { blockSize });
  }
}
