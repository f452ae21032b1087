import { float32ToF16Bytes, toFloat32 } from "../../../protocol/dtype.js";
import { GGML_BLOCK, GgmlType } from "./format.js";

/**
 * llama.cpp's Q8_0 and Q4_0 blocks against eFed's quantized factors (MatMulNBits layout): both
 * are symmetric, 32 elements per block, one scale per block, codes offset by 128 (8-bit) or 8
 * (4-bit). They differ in where the scale lives (an F16 in front of each block vs an F32 table),
 * whether 8-bit codes are signed, and the nibble order (Q4_0 keeps element j and j+16 in byte j;
 * MatMulNBits keeps 2i and 2i+1 in byte i). Converting is lossless except the scale's width.
 */

export const GGUF_QUANT_BLOCK = 32;

/** eFed's side: codes (rows, blocks, blockBytes) and F32 scales (rows, blocks). */
export interface PackedFactor {
  rows: number;
  cols: number;
  bits: 4 | 8;
  packed: Uint8Array;
  scales: Float32Array;
}

/** Bits of the quantized factor a ggml type maps to, if it is a quantized type. */
export function bitsOf(type: GgmlType): 4 | 8 | undefined {
  if (type === GgmlType.Q8_0) return 8;
  if (type === GgmlType.Q4_0) return 4;
  return undefined;
}

/** Converts Q8_0/Q4_0 blocks of a (rows, cols) matrix to eFed's packed codes and scales. */
export function fromGgmlBlocks(type: GgmlType.Q8_0 | GgmlType.Q4_0, data: Uint8Array, rows: number, cols: number): PackedFactor {
  const bits = type === GgmlType.Q8_0 ? 8 : 4;
  const blocks = cols / GGUF_QUANT_BLOCK;
  const blockBytes = GGML_BLOCK[type].bytes;
  const codeBytes = (GGUF_QUANT_BLOCK * bits) / 8;
  const packed = new Uint8Array(rows * blocks * codeBytes);
  const scaleHalves = new Uint8Array(rows * blocks * 2);
  for (let b = 0; b < rows * blocks; b++) {
    const src = b * blockBytes;
    scaleHalves[2 * b] = data[src]!;
    scaleHalves[2 * b + 1] = data[src + 1]!;
    const dst = b * codeBytes;
    if (bits === 8) {
      for (let i = 0; i < 32; i++) packed[dst + i] = (data[src + 2 + i]! + 128) & 0xff; // int8 → offset-128 code
    } else {
      for (let i = 0; i < 32; i++) {
        const code = i < 16 ? data[src + 2 + i]! & 0x0f : data[src + 2 + i - 16]! >> 4;
        packed[dst + (i >> 1)]! |= (i & 1) === 0 ? code : code << 4;
      }
    }
  }
  return { rows, cols, bits, packed, scales: toFloat32(scaleHalves, "F16") };
}

/**
 * Converts eFed's packed codes and scales (block size 32) to Q8_0/Q4_0 blocks. Scales are rounded to
 * F16; `maxScaleRounding` reports the largest relative change (0 for factors imported from GGUF).
 */
export function toGgmlBlocks(f: PackedFactor): { type: GgmlType; data: Uint8Array; maxScaleRounding: number } {
  const type = f.bits === 8 ? GgmlType.Q8_0 : GgmlType.Q4_0;
  const blocks = f.cols / GGUF_QUANT_BLOCK;
  const blockBytes = GGML_BLOCK[type].bytes;
  const codeBytes = (GGUF_QUANT_BLOCK * f.bits) / 8;
  const halves = float32ToF16Bytes(f.scales);
  const rounded = toFloat32(halves, "F16");
  let maxScaleRounding = 0;
  for (let i = 0; i < f.scales.length; i++) {
    if (f.scales[i] !== 0) maxScaleRounding = Math.max(maxScaleRounding, Math.abs(rounded[i]! - f.scales[i]!) / Math.abs(f.scales[i]!));
  }
  const data = new Uint8Array(f.rows * blocks * blockBytes);
  for (let b = 0; b < f.rows * blocks; b++) {
    const dst = b * blockBytes;
    data[dst] = halves[2 * b]!;
    data[dst + 1] = halves[2 * b + 1]!;
    const src = b * codeBytes;
    if (f.bits === 8) {
      for (let i = 0; i < 32; i++) data[dst + 2 + i] = (f.packed[src + i]! - 128) & 0xff;
    } else {
      for (let i = 0; i < 32; i++) {
        const byte = f.packed[src + (i >> 1)]!;
        const code = (i & 1) === 0 ? byte & 0x0f : byte >> 4;
        if (i < 16) data[dst + 2 + i]! |= code;
        else data[dst + 2 + i - 16]! |= code << 4;
      }
    }
  }
  return { type, data, maxScaleRounding };
}

/** The float32 values of Q8_0/Q4_0 blocks (what llama.cpp computes with), row-major. */
export function dequantizeGgmlBlocks(type: GgmlType.Q8_0 | GgmlType.Q4_0, data: Uint8Array, elements: number): Float32Array {
  const out = new Float32Array(elements);
  const blockBytes = GGML_BLOCK[type].bytes;
  const scaleBytes = new Uint8Array(2);
  for (let b = 0; b < elements / GGUF_QUANT_BLOCK; b++) {
    const src = b * blockBytes;
    scaleBytes[0] = data[src]!;
    scaleBytes[1] = data[src + 1]!;
    const d = toFloat32(scaleBytes, "F16")[0]!;
    for (let i = 0; i < 32; i++) {
      const q =
        type === GgmlType.Q8_0
          ? ((data[src + 2 + i]! << 24) >> 24) // signed int8
          : (i < 16 ? data[src + 2 + i]! & 0x0f : data[src + 2 + i - 16]! >> 4) - 8;
      out[b * 32 + i] = Math.fround(d * q);
    }
  }
  return out;
}
