import { accuracyLevelOf, layersQuantized, type CompressionSpec } from "../../engine/model/compression.js";
import { InvalidArgumentError } from "../../protocol/errors.js";
import { INT8_BLOCK, decodeActivations, encodeActivations, type EncodedActivations } from "../../protocol/activations.js";

/**
 * How far a stored output may be from the verifier's recomputation before it counts as wrong.
 *
 * The server computed its output on another kernel path than the verifier's one-pass prefill
 * (1-row decode kernels, batched decode, prefill chunks), then rounded it to the wire encoding. So
 * for each element
 *
 *   |stored − recomputed| ≤ halfQuantum(stored element) + compute noise
 *
 * where halfQuantum is what the encoding's rounding may move a value (0 for fp32, half an fp16 ulp
 * of the stored value, half the int8 block's scale). The compute noise is measured relative to the
 * scale of the activations: the excess over the half quantum, divided by the RMS of the recomputed
 * row, is the element's score, and a step's score is its largest. A step passes when its score is at
 * most the tolerance (DEFAULT_TOLERANCE, calibrated in docs/verification.md: `npm run bench:verify`).
 */
export const DEFAULT_TOLERANCE = 1e-4;

/**
 * The tolerance of variants whose quantized (MatMulNBits) factors run at accuracy level 4: ONNX
 * Runtime quantizes their activations to int8 per block, and the rounding is discontinuous, so the
 * ~1e-6 differences between a server's decode step and the verifier's one-pass replay sometimes
 * flip a rounding (measured: scores up to 7e-2, docs/verification.md). Such variants are audited
 * for gross faults only. Variants that pin accuracy level 0 (new int4 variants) get the dense one.
 */
export const QUANTIZED_TOLERANCE = 0.25;

/** The tolerance for a variant with this compression (its manifest's): looser only where the kernels force it. */
export function toleranceFor(compression: CompressionSpec): number {
  return layersQuantized(compression) && accuracyLevelOf(compression) !== 0 ? QUANTIZED_TOLERANCE : DEFAULT_TOLERANCE;
}

export interface OutputComparison {
  /** Largest |stored − recomputed| over the step's elements (absolute, includes the wire rounding). */
  maxAbsDiff: number;
  /** Largest excess over the wire encoding's half quantum, relative to its row's RMS (see DEFAULT_TOLERANCE). */
  score: number;
  /** Whether the stored bytes equal the recomputation encoded the same way (bit-exact agreement). */
  exact: boolean;
}

/** Compares a stored output (as the server encoded it) with the verifier's fp32 recomputation of the same rows. */
export function compareOutput(stored: EncodedActivations, recomputed: Float32Array): OutputComparison {
  const { rows, cols } = stored;
  const values = decodeActivations(stored);
  if (recomputed.length !== values.length) {
    throw new InvalidArgumentError(`the recomputed output holds ${recomputed.length} values, expected the stored ${rows}×${cols}`);
  }
  const slack = halfQuanta(stored, values);
  let maxAbsDiff = 0;
  let score = 0;
  for (let r = 0; r < rows; r++) {
    let sumSq = 0;
    let excess = 0;
    for (let c = r * cols; c < (r + 1) * cols; c++) {
      const v = recomputed[c]!;
      sumSq += v * v;
      const s = values[c]!;
      const diff = Math.abs(s - v);
      // NaN is as wrong as it gets; an fp16 infinity stands for any value past the largest fp16
      const d = Number.isNaN(diff) ? Infinity : diff;
      maxAbsDiff = Math.max(maxAbsDiff, d);
      excess = Math.max(excess, Number.isFinite(s) ? d - slack[c]! : overflowExcess(s, v, stored.encoding));
    }
    const rms = Math.sqrt(sumSq / cols);
    // a zero row is compared absolutely: nothing honest can differ from it by more than the encoding
    score = Math.max(score, excess <= 0 ? 0 : excess / (rms > 0 ? rms : Number.MIN_VALUE));
  }
  const again = encodeActivations(recomputed, rows, cols, stored.encoding).payload;
  const exact = again.byteLength === stored.payload.byteLength && Buffer.from(again).equals(Buffer.from(stored.payload));
  return { maxAbsDiff, score, exact };
}

/** Per element, how far the encoding's rounding may have moved the value that is stored as `decoded`. */
export function halfQuanta(stored: EncodedActivations, decoded: Float32Array): Float32Array {
  const out = new Float32Array(decoded.length);
  if (stored.encoding === "fp16") {
    for (let i = 0; i < decoded.length; i++) out[i] = halfUlpF16(decoded[i]!);
  } else if (stored.encoding === "int8") {
    const view = new DataView(stored.payload.buffer, stored.payload.byteOffset, stored.payload.byteLength);
    let at = 0;
    for (let r = 0; r < stored.rows; r++) {
      for (let c0 = 0; c0 < stored.cols; c0 += INT8_BLOCK) {
        const c1 = Math.min(c0 + INT8_BLOCK, stored.cols);
        const half = view.getFloat32(at, true) / 2;
        out.fill(half, r * stored.cols + c0, r * stored.cols + c1);
        at += 4 + (c1 - c0);
      }
    }
  }
  return out;
}

/**
 * Half the fp16 spacing at a value that fp16 stores: round-to-nearest moved the original by at most
 * this (rounding up into a binade never moves a value by more than the spacing of the binade it
 * lands in).
 */
function halfUlpF16(x: number): number {
  const a = Math.abs(x);
  if (a < 2 ** -14) return 2 ** -25; // subnormals: a fixed spacing of 2^-24
  return 2 ** (Math.floor(Math.log2(a)) - 11);
}

/** fp16 rounds values past 65520 to an infinity of their sign; anything else stored as infinite (or NaN) is wrong. */
function overflowExcess(stored: number, recomputed: number, encoding: EncodedActivations["encoding"]): number {
  const overflowed = encoding === "fp16" && Math.abs(recomputed) >= 65520 && Math.sign(recomputed) === Math.sign(stored);
  return overflowed ? 0 : Infinity;
}
