import { ModelFormatError } from "../errors.js";
import { checkQuantParams, type QuantBits } from "./projection.js";

/**
 * The compression a model directory's weights carry, as recorded in its manifest (so it is part of
 * the variant id). Only the layers' attention and MLP projections are ever compressed; embeddings,
 * norms and the LM head stay dense.
 */
export interface CompressionSpec {
  /** "none", "svd", "svd-whiten", "int8", "int4", "svd-whiten+int8", … (informational beyond the fields below). */
  method: string;
  /** Block size of every quantized factor (MatMulNBits). */
  block_size?: number;
  /**
   * MatMulNBits `accuracy_level` of every quantized factor (QUANT_ACCURACY_LEVELS); absent in
   * manifests written before it was recorded, which run at LEGACY_ACCURACY_LEVEL.
   */
  accuracy_level?: QuantAccuracyLevel;
  /**
   * Per projection (e.g. "model.layers.3.mlp.up_proj"): a rank when it is stored as two SVD
   * factors, bits when its factors are quantized. Projections not listed are dense float. The
   * embedding and LM head ("model.embed_tokens", "lm_head") may be listed with bits only: the
   * client's LM head then runs MatMulNBits at HEAD_ACCURACY_LEVEL, and embedding rows are
   * dequantized as they are read.
   */
  matrices?: Record<string, MatrixCompression>;
  /** Anything else the compressor records (ratio, energy, calibration, …). */
  [extra: string]: unknown;
}

export interface MatrixCompression {
  rank?: number;
  bits?: QuantBits;
}

export const NO_COMPRESSION: CompressionSpec = { method: "none" };

/**
 * MatMulNBits accuracy levels a manifest may pin (ONNX Runtime's meaning): 0 = the activations stay
 * float32 (the weights are dequantized), 4 = the activations are quantized to int8 per block.
 * Level 4 is faster but its rounding of the activations is discontinuous, so a server's decode step
 * and a verifier's prefill replay of it differ by up to ~7e-2 of the activations' scale; at level 0
 * they differ like dense float32 (~4e-6). docs/verification.md measures both.
 */
export const QUANT_ACCURACY_LEVELS = [0, 4] as const;
export type QuantAccuracyLevel = (typeof QUANT_ACCURACY_LEVELS)[number];
/**
 * The level a quantized LM head runs at, whatever `accuracy_level` says of the layers: the head runs
 * at the client, which no verifier replays, and level 4 is its fast kernel (int8 at level 0 has
 * none) and gives a row the same logits alone or in a batch (BatchingHead needs that; level 0
 * int4 does not, measured on a 49152×576 head).
 */
export const HEAD_ACCURACY_LEVEL: QuantAccuracyLevel = 4;

/** The (vocab, hidden) matrices outside the layers that a compression may list (quantized only, never factored). */
export const HEAD_MATRICES: readonly string[] = ["model.embed_tokens", "lm_head"];

/** The level of a quantized manifest without `accuracy_level`: its variant id stands for these numerics. */
export const LEGACY_ACCURACY_LEVEL: QuantAccuracyLevel = 4;

/**
 * The level a newly compressed variant records: int4 at 0 (auditable at the dense tolerance, decode
 * about as fast as at level 4), int8 at 4 (level 0 has no fast 8-bit kernel: decode ~13× slower).
 */
export function accuracyLevelFor(bits: QuantBits): QuantAccuracyLevel {
  return bits === 4 ? 0 : 4;
}

/** Whether any of the layers' projections is stored quantized (the head's matrices do not count: no verifier replays them). */
export function layersQuantized(spec: CompressionSpec): boolean {
  return Object.entries(spec.matrices ?? {}).some(([name, m]) => m.bits !== undefined && !HEAD_MATRICES.includes(name));
}

/** The level the quantized factors of a variant with this compression run at. */
export function accuracyLevelOf(spec: CompressionSpec): QuantAccuracyLevel {
  return spec.accuracy_level ?? LEGACY_ACCURACY_LEVEL;
}

/** Tensor names of a projection's factors as stored in safetensors. */
export const FactorNames = {
  dense: (base: string) => `${base}.weight`,
  base: (dense: string) => dense.replace(/\.weight$/, ""), // the inverse of `dense`: the name `matrices` lists
  left: (base: string) => `${base}.svd_left`, // (out, rank)
  right: (base: string) => `${base}.svd_right`, // (rank, in)
  packed: (factor: string) => `${factor}.qweight`, // U8 (rows, blocks, blockSize·bits/8)
  scales: (factor: string) => `${factor}.scales`, // F32 (rows, blocks)
} as const;

/** Validates the `compression` object of a manifest; `file` names it in errors. */
export function parseCompression(raw: unknown, file: string): CompressionSpec {
  const fail = (what: string): never => {
    throw new ModelFormatError(`${file}: compression ${what}`, { file });
  };
  if (typeof raw !== "object" || raw === null) return fail("is not an object");
  const spec = raw as CompressionSpec;
  if (typeof spec.method !== "string") fail(`method is ${JSON.stringify(spec.method)}, expected a string`);
  const matrices = spec.matrices ?? {};
  if (typeof matrices !== "object" || matrices === null) fail("matrices is not an object");
  let quantized = false;
  for (const [name, m] of Object.entries(matrices)) {
    if (m.rank !== undefined && !(Number.isSafeInteger(m.rank) && m.rank > 0)) {
      fail(`rank of ${name} is ${JSON.stringify(m.rank)}, expected a positive integer`);
    }
    if (HEAD_MATRICES.includes(name) && (m.rank !== undefined || m.bits === undefined)) fail(`of ${name} must give bits and no rank (it can be quantized, not factored)`);
    if (m.bits !== undefined) quantized = true;
    if (m.rank === undefined && m.bits === undefined) fail(`of ${name} has neither rank nor bits`);
  }
  if (spec.accuracy_level !== undefined && !(QUANT_ACCURACY_LEVELS as readonly unknown[]).includes(spec.accuracy_level)) {
    fail(`accuracy_level is ${JSON.stringify(spec.accuracy_level)}, expected one of ${QUANT_ACCURACY_LEVELS.join(", ")}`);
  }
  if (quantized) {
    for (const [name, m] of Object.entries(matrices)) {
      if (m.bits === undefined) continue;
      try {
        checkQuantParams(m.bits, spec.block_size ?? NaN);
      } catch (cause) {
        fail(`of ${name}: ${(cause as Error).message}`);
      }
    }
  }
  return spec;
}
