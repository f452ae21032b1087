import { ModelFormatError } from "../errors.js";
import { FactorNames } from "./compression.js";
import { dense, type Factor, type Projection, type QuantBits } from "./projection.js";
import type { TensorSource } from "./tensorSource.js";

/**
 * Reads projection `base` (e.g. "model.layers.0.self_attn.q_proj"), which stands for a (rows, cols)
 * matrix, in whatever form the model directory's compression stores it.
 */
export function loadProjection(model: TensorSource, base: string, rows: number, cols: number): Projection {
  const spec = model.compression.matrices?.[base];
  if (spec?.rank === undefined) return { factors: [loadFactor(model, FactorNames.dense(base), rows, cols, spec?.bits)] };
  const r = spec.rank;
  if (r * (rows + cols) >= rows * cols) {
    throw new ModelFormatError(
      `${model.dir}: rank ${r} of ${base} (${rows}×${cols}) is at or above break-even ${Math.floor((rows * cols) / (rows + cols))}: its factors would store more weights than the matrix`,
      { tensor: base, rank: r },
    );
  }
  return {
    factors: [loadFactor(model, FactorNames.left(base), rows, r, spec.bits), loadFactor(model, FactorNames.right(base), r, cols, spec.bits)],
  };
}

function loadFactor(model: TensorSource, name: string, rows: number, cols: number, bits: QuantBits | undefined): Factor {
  if (bits === undefined) return dense(rows, cols, model.tensor(name, [rows, cols]));
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
