import { closeSync, openSync, writeSync } from "node:fs";
import type { DType } from "../../protocol/dtype.js";

export interface TensorToWrite {
  /** Float dtypes, or U8 for packed quantized codes. */
  dtype: DType | "U8";
  shape: readonly number[];
  /** Little-endian bytes, prod(shape) × dtype size long. */
  data: Uint8Array;
}

/**
 * Writes tensors to a safetensors file (header padded to 8 bytes, tensors in the order given), one
 * tensor at a time so a large model is never copied into one buffer.
 */
export function writeSafetensors(path: string, tensors: ReadonlyMap<string, TensorToWrite>, metadata?: Record<string, string>): void {
  const header: Record<string, unknown> = {};
  if (metadata !== undefined) header.__metadata__ = metadata;
  let offset = 0;
  for (const [name, t] of tensors) {
    header[name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + t.data.byteLength] };
    offset += t.data.byteLength;
  }
  const json = Buffer.from(JSON.stringify(header), "utf8");
  const headerBytes = Buffer.concat([json, Buffer.alloc((8 - (json.length % 8)) % 8, 0x20)]);
  const prefix = Buffer.alloc(8);
  prefix.writeBigUInt64LE(BigInt(headerBytes.length));
  const fd = openSync(path, "w");
  try {
    for (const bytes of [prefix, headerBytes, ...[...tensors.values()].map((t) => t.data)]) writeAll(fd, bytes);
  } finally {
    closeSync(fd);
  }
}

/** Writes all of `bytes` at the file's current position (writeSync may write less than asked). */
export function writeAll(fd: number, bytes: Uint8Array): void {
  let done = 0;
  while (done < bytes.byteLength) done += writeSync(fd, bytes, done, bytes.byteLength - done);
}
