import { keccak256Of } from "./keccak.js";
import { float32ToF16Bytes, toFloat32 } from "./dtype.js";
import { InvalidArgumentError } from "./errors.js";

/**
 * Hidden states on the wire, and their hash.
 *
 * Encodings of a (rows, cols) float32 tensor, all little-endian:
 * - fp32: the floats as they are.
 * - fp16: IEEE half precision, round-half-even.
 * - int8: per row, blocks of INT8_BLOCK columns (the last block may be shorter); each block is a
 *   float32 scale (absmax / 127) followed by one int8 per value (round(value / scale)).
 *
 * The activation hash binds the encoding and the shape to the exact bytes sent:
 *   keccak256("efed.activations.v1" ‖ u8 encoding ‖ u32 rows ‖ u32 cols ‖ payload)
 * so a client can check a receipt's output hash against what it received, and one server's output
 * hash equals the next server's input hash.
 */
export const ACTIVATION_ENCODINGS = ["fp32", "fp16", "int8"] as const;
export type ActivationEncoding = (typeof ACTIVATION_ENCODINGS)[number];
export const ENCODING_CODE: Record<ActivationEncoding, number> = { fp32: 0, fp16: 1, int8: 2 };
export const INT8_BLOCK = 32;
const HASH_DOMAIN = new TextEncoder().encode("efed.activations.v1");

export interface EncodedActivations {
  encoding: ActivationEncoding;
  rows: number;
  cols: number;
  payload: Uint8Array;
}

/** Bytes of the payload for a (rows, cols) tensor in `encoding`. */
export function payloadBytes(encoding: ActivationEncoding, rows: number, cols: number): number {
  if (encoding === "fp32") return rows * cols * 4;
  if (encoding === "fp16") return rows * cols * 2;
  const blocks = Math.ceil(cols / INT8_BLOCK);
  return rows * (blocks * 4 + cols);
}

export function encodeActivations(values: Float32Array, rows: number, cols: number, encoding: ActivationEncoding): EncodedActivations {
  if (values.length !== rows * cols) {
    throw new InvalidArgumentError(`activations hold ${values.length} values, expected ${rows}×${cols}`);
  }
  let payload: Uint8Array;
  if (encoding === "fp32") payload = new Uint8Array(values.buffer.slice(values.byteOffset, values.byteOffset + values.byteLength));
  else if (encoding === "fp16") payload = float32ToF16Bytes(values);
  else payload = encodeInt8(values, rows, cols);
  return { encoding, rows, cols, payload };
}

export function decodeActivations(a: EncodedActivations): Float32Array {
  const expected = payloadBytes(a.encoding, a.rows, a.cols);
  if (a.payload.byteLength !== expected) {
    throw new InvalidArgumentError(
      `${a.encoding} activations of shape ${a.rows}×${a.cols} need ${expected} bytes, got ${a.payload.byteLength}`,
    );
  }
  if (a.encoding === "fp32") return toFloat32(a.payload, "F32");
  if (a.encoding === "fp16") return toFloat32(a.payload, "F16");
  return decodeInt8(a.payload, a.rows, a.cols);
}

export function activationHash(a: EncodedActivations): string {
  const header = new Uint8Array(HASH_DOMAIN.length + 9);
  header.set(HASH_DOMAIN, 0);
  const view = new DataView(header.buffer);
  view.setUint8(HASH_DOMAIN.length, ENCODING_CODE[a.encoding]);
  view.setUint32(HASH_DOMAIN.length + 1, a.rows, true);
  view.setUint32(HASH_DOMAIN.length + 5, a.cols, true);
  return keccak256Of(header, a.payload);
}

function encodeInt8(values: Float32Array, rows: number, cols: number): Uint8Array {
  const out = new Uint8Array(payloadBytes("int8", rows, cols));
  const view = new DataView(out.buffer);
  let at = 0;
  for (let r = 0; r < rows; r++) {
    for (let c0 = 0; c0 < cols; c0 += INT8_BLOCK) {
      const c1 = Math.min(c0 + INT8_BLOCK, cols);
      let absmax = 0;
      for (let c = c0; c < c1; c++) absmax = Math.max(absmax, Math.abs(values[r * cols + c]!));
      const scale = Math.fround(absmax / 127);
      view.setFloat32(at, scale, true);
      at += 4;
      for (let c = c0; c < c1; c++) {
        const q = scale === 0 ? 0 : Math.max(-127, Math.min(127, Math.round(values[r * cols + c]! / scale)));
        view.setInt8(at++, q);
      }
    }
  }
  return out;
}

function decodeInt8(payload: Uint8Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(rows * cols);
  const view = new DataView(payload.buffer, payload.byteOffset, payload.byteLength);
  let at = 0;
  for (let r = 0; r < rows; r++) {
    for (let c0 = 0; c0 < cols; c0 += INT8_BLOCK) {
      const c1 = Math.min(c0 + INT8_BLOCK, cols);
      const scale = view.getFloat32(at, true);
      at += 4;
      for (let c = c0; c < c1; c++) out[r * cols + c] = view.getInt8(at++) * scale;
    }
  }
  return out;
}
