import { closeSync, openSync } from "node:fs";
import { writeAll } from "../safetensorsWriter.js";
import {
  DEFAULT_ALIGNMENT,
  GGML_BLOCK,
  ggmlByteLength,
  GGUF_MAGIC,
  GGUF_VERSION,
  GgufValueType,
  type GgmlType,
  type GgufScalarType,
  type GgufValue,
} from "./format.js";

/** A tensor to write: `dims` innermost first, `data` exactly `ggmlByteLength(type, prod(dims))` bytes. */
export interface GgufTensorToWrite {
  name: string;
  dims: readonly number[];
  type: GgmlType;
  data: Uint8Array;
}

/** Serialises header pieces into growing buffers. */
class HeaderWriter {
  readonly parts: Buffer[] = [];
  length = 0;

  private push(b: Buffer): void {
    this.parts.push(b);
    this.length += b.length;
  }

  u32(v: number): void {
    const b = Buffer.alloc(4);
    b.writeUInt32LE(v);
    this.push(b);
  }

  u64(v: number | bigint): void {
    const b = Buffer.alloc(8);
    b.writeBigUInt64LE(BigInt(v));
    this.push(b);
  }

  string(s: string): void {
    const bytes = Buffer.from(s, "utf8");
    this.u64(bytes.length);
    this.push(bytes);
  }

  scalar(type: GgufScalarType, v: number | bigint | boolean | string): void {
    const fixed = (n: number, write: (b: Buffer) => void): void => {
      const b = Buffer.alloc(n);
      write(b);
      this.push(b);
    };
    switch (type) {
      case GgufValueType.UINT8: return fixed(1, (b) => b.writeUInt8(v as number));
      case GgufValueType.INT8: return fixed(1, (b) => b.writeInt8(v as number));
      case GgufValueType.UINT16: return fixed(2, (b) => b.writeUInt16LE(v as number));
      case GgufValueType.INT16: return fixed(2, (b) => b.writeInt16LE(v as number));
      case GgufValueType.UINT32: return fixed(4, (b) => b.writeUInt32LE(v as number));
      case GgufValueType.INT32: return fixed(4, (b) => b.writeInt32LE(v as number));
      case GgufValueType.FLOAT32: return fixed(4, (b) => b.writeFloatLE(v as number));
      case GgufValueType.BOOL: return fixed(1, (b) => b.writeUInt8(v === true ? 1 : 0));
      case GgufValueType.STRING: return this.string(v as string);
      case GgufValueType.UINT64: return fixed(8, (b) => b.writeBigUInt64LE(BigInt(v as number | bigint)));
      case GgufValueType.INT64: return fixed(8, (b) => b.writeBigInt64LE(BigInt(v as number | bigint)));
      case GgufValueType.FLOAT64: return fixed(8, (b) => b.writeDoubleLE(v as number));
    }
  }

  pad(alignment: number): void {
    const padding = (alignment - (this.length % alignment)) % alignment;
    if (padding > 0) this.push(Buffer.alloc(padding));
  }
}

/**
 * Writes a GGUF v3 file: metadata in the order given, tensors in the order given, each aligned to
 * `general.alignment` (32 unless the metadata says otherwise). Data is written tensor by tensor, so
 * the whole model is never copied into one buffer.
 */
export function writeGguf(path: string, metadata: ReadonlyMap<string, GgufValue>, tensors: readonly GgufTensorToWrite[]): void {
  const alignmentEntry = metadata.get("general.alignment");
  const alignment = alignmentEntry === undefined ? DEFAULT_ALIGNMENT : Number(alignmentEntry.value);
  const h = new HeaderWriter();
  h.u32(GGUF_MAGIC);
  h.u32(GGUF_VERSION);
  h.u64(tensors.length);
  h.u64(metadata.size);
  for (const [key, entry] of metadata) {
    h.string(key);
    h.u32(entry.type);
    if (entry.type === GgufValueType.ARRAY) {
      h.u32(entry.elementType);
      h.u64(entry.value.length);
      for (const v of entry.value) h.scalar(entry.elementType, v);
    } else {
      h.scalar(entry.type, entry.value);
    }
  }
  let offset = 0;
  for (const t of tensors) {
    const elements = t.dims.reduce((a, d) => a * d, 1);
    if (t.dims[0]! % GGML_BLOCK[t.type].elements !== 0 || t.data.byteLength !== ggmlByteLength(t.type, elements)) {
      throw new RangeError(`tensor ${t.name}: ${t.data.byteLength} bytes do not hold dims [${t.dims.join(", ")}] of ggml type ${t.type}`);
    }
    h.string(t.name);
    h.u32(t.dims.length);
    for (const d of t.dims) h.u64(d);
    h.u32(t.type);
    h.u64(offset);
    offset += Math.ceil(t.data.byteLength / alignment) * alignment;
  }
  h.pad(alignment);
  const fd = openSync(path, "w");
  try {
    writeAll(fd, Buffer.concat(h.parts));
    for (const t of tensors) {
      writeAll(fd, t.data);
      const padding = (alignment - (t.data.byteLength % alignment)) % alignment;
      if (padding > 0) writeAll(fd, new Uint8Array(padding));
    }
  } finally {
    closeSync(fd);
  }
}
