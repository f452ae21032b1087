import { ModelFormatError } from "../errors.js";
import { FactorNames } from "./compression.js";
import { dense, type Factor, type Projection, type QuantBits } from "./projection.js";
import type { TensorSource } from "./tensorSource.js";

/** A float32 buffer of `length` values for dense factor `factor` of a projection, to read it into. */
export type FactorBuffer = (factor: number, length: number) => Float32Array;

/**
 * Reads projection `base` (e.g. "model.layers.0.self_attn.q_proj"), which stands for a (rows, cols)
 * matrix, in whatever form the model directory's compression stores it; dense factors into
 * `bufferFor`'s buffers when given.
 */
export function loadProjection(model: TensorSource, base: string, rows: number, cols: number, bufferFor?: FactorBuffer): Projection {
  const spec = model.compression.matrices?.[base];
  // quantized factors are read as stored: only dense ones take a buffer
  const buffer = (factor: number, length: number): Float32Array | undefined => (spec?.bits === undefined ? bufferFor?.(factor, length) : undefined);
  if (spec?.rank === undefined) return { factors: [loadFactor(model, FactorNames.dense(base), rows, cols, spec?.bits, buffer(0, rows * cols))] };
  const r = spec.rank;
  if (r * (rows + cols) >= rows * cols) {
    throw new ModelFormatError(
      `${model.dir}: rank ${r} of ${base} (${rows}×${cols}) is at or above break-even ${Math.floor((rows * cols) / (rows + cols))}: its factors would store more weights than the matrix`,
      { tensor: base, rank: r },
    );
  }
  return {
    factors: [
      loadFactor(model, FactorNames.left(base), rows, r, spec.bits, buffer(0, rows * r)),
      loadFactor(model, FactorNames.right(base), r, cols, spec.bits, buffer(1, r * cols)),
    ],
  };
}

function loadFactor(model: TensorSource, name: string, rows: number, cols: number, bits: QuantBits | undefined, into?: Float32Array): Factor {
  if (bits === undefined) return dense(rows, cols, model.tensor(name, [rows, cols], into));
  const blockSize = model.compression.block_size!;
  const blocks = Math.ceil(cols / blockSize);
  const packedName = FactorNames.packed(name);
  const info = model.info(packedName);
  const expected = [rows, blocks, (blockSize * bits) / 8];
  if (info.dtype !== "U8" || info.shape.join(",") !== expected.join(",")) {
    throw new ModelFormatError(
      `${model.dir}: tensor ${packedName} is ${info.dtype} [${info.shape.join(", ")}], expected U8 [${expected.join(", ")}] for ${bits}-bit blocks of ${blockSize}`,
      { tensor: packedName },
    );
  }
  return {
    kind: "quantized",
    rows,
    cols,
    bits,
    blockSize,
    packed: model.rawBytes(packedName),
    scales: model.tensor(FactorNames.scales(name), [rows, blocks]),
  };
}
