import { FactorNames } from "../../engine/model/compression.js";
import type { TensorToWrite } from "../../engine/model/safetensorsWriter.js";

/** A block-quantized matrix as stored: codes packed per block, one scale per block. */
export interface PackedBlocks {
  rows: number;
  packed: Uint8Array;
  scales: Float32Array;
}

/**
 * Adds a quantized matrix's codes and scales to `out` as the tensors `loadProjection` reads back:
 * `<name>.qweight` (U8, rows × blocks × bytes per block) and `<name>.scales` (F32, rows × blocks).
 * Used by `efed compress` (quantized here) and the GGUF import (blocks reused from the file).
 */
export function putQuantized(out: Map<string, TensorToWrite>, factorName: string, q: PackedBlocks): void {
  const blocks = q.scales.length / q.rows;
  out.set(FactorNames.packed(factorName), { dtype: "U8", shape: [q.rows, blocks, q.packed.length / q.scales.length], data: q.packed });
  out.set(FactorNames.scales(factorName), { dtype: "F32", shape: [q.rows, blocks], data: new Uint8Array(q.scales.buffer, q.scales.byteOffset, q.scales.byteLength) });
}
