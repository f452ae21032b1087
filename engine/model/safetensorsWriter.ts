import { writeFileSync } from "node:fs";
import type { DType } from "../../protocol/dtype.js";

export interface TensorToWrite {
  /** Float dtypes, or U8 for packed quantized codes. */
  dtype: DType | "U8";
  shape: readonly number[];
  /** Little-endian bytes, prod(shape) × dtype size long. */
  data: Uint8Array;
}

/** Writes tensors to a safetensors file (header padded to 8 bytes, tensors in the order given). */
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
  writeFileSync(path, Buffer.concat([prefix, headerBytes, ...[...tensors.values()].map((t) => t.data)]));
}
