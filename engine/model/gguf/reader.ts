import { closeSync, fstatSync, openSync, readSync } from "node:fs";
import { ModelFormatError } from "../../errors.js";
import { readRange } from "../readRange.js";
import {
  DEFAULT_ALIGNMENT,
  GGML_BLOCK,
  ggmlByteLength,
  ggmlTypeName,
  GGUF_MAGIC,
  GGUF_VERSION,
  GgufValueType,
  isSupportedGgmlType,
  type GgufScalarType,
  type GgufTensorInfo,
  type GgufValue,
} from "./format.js";

/** Bounds on what a header may declare: a hostile file must not make the reader allocate without limit. */
const LIMITS = {
  tensors: 1 << 16,
  metadata: 1 << 16,
  stringBytes: 1 << 24, // 16 MiB: chat templates are KiB, token strings bytes
  arrayElements: 1 << 24, // vocabularies and merge lists are ≤ ~300k
  dims: 4,
} as const;

const CHUNK_BYTES = 1 << 20;

/** Reads the header sequentially from a file descriptor, a chunk at a time. */
class HeaderCursor {
  private buffer = Buffer.alloc(0);
  private bufferStart = 0; // file offset of buffer[0]
  position = 0;

  constructor(
    private readonly fd: number,
    private readonly fileSize: number,
    private readonly path: string,
  ) {}

  private ensure(n: number): void {
    const end = this.position + n;
    if (end > this.fileSize) throw new ModelFormatError(`${this.path}: the header is truncated (needs byte ${end}, file has ${this.fileSize})`, { path: this.path });
    if (end <= this.bufferStart + this.buffer.length) return;
    const length = Math.max(n, CHUNK_BYTES);
    const chunk = Buffer.alloc(Math.min(length, this.fileSize - this.position));
    let done = 0;
    while (done < chunk.length) {
      const n = readSync(this.fd, chunk, done, chunk.length - done, this.position + done);
      if (n === 0) throw new ModelFormatError(`${this.path}: the file ended while reading its header`, { path: this.path });
      done += n;
    }
    this.buffer = chunk;
    this.bufferStart = this.position;
  }

  private take(n: number): Buffer {
    this.ensure(n);
    const at = this.position - this.bufferStart;
    this.position += n;
    return this.buffer.subarray(at, at + n);
  }

  u32(): number {
    return this.take(4).readUInt32LE(0);
  }

  /** A u64 that must fit a JavaScript number (counts, lengths, dims, offsets). */
  count(what: string, max: number): number {
    const v = this.take(8).readBigUInt64LE(0);
    if (v > BigInt(max)) throw new ModelFormatError(`${this.path}: ${what} is ${v}, expected at most ${max}`, { path: this.path });
    return Number(v);
  }

  string(what: string): string {
    const n = this.count(`the length of ${what}`, LIMITS.stringBytes);
    return this.take(n).toString("utf8");
  }

  scalar(type: GgufScalarType, what: string): number | bigint | boolean | string {
    switch (type) {
      case GgufValueType.UINT8: return this.take(1).readUInt8(0);
      case GgufValueType.INT8: return this.take(1).readInt8(0);
      case GgufValueType.UINT16: return this.take(2).readUInt16LE(0);
      case GgufValueType.INT16: return this.take(2).readInt16LE(0);
      case GgufValueType.UINT32: return this.take(4).readUInt32LE(0);
      case GgufValueType.INT32: return this.take(4).readInt32LE(0);
      case GgufValueType.FLOAT32: return this.take(4).readFloatLE(0);
      case GgufValueType.BOOL: return this.take(1).readUInt8(0) !== 0;
      case GgufValueType.STRING: return this.string(what);
      case GgufValueType.UINT64: return this.take(8).readBigUInt64LE(0);
      case GgufValueType.INT64: return this.take(8).readBigInt64LE(0);
      case GgufValueType.FLOAT64: return this.take(8).readDoubleLE(0);
    }
  }

  valueType(what: string): GgufValueType {
    const type = this.u32();
    if (type > GgufValueType.FLOAT64) throw new ModelFormatError(`${this.path}: ${what} has value type ${type}, expected 0–12`, { path: this.path });
    return type as GgufValueType;
  }
}

/**
 * A GGUF file read lazily: metadata and tensor descriptors are parsed on open and checked against
 * the file's size; tensor data is read only when asked for.
 */
export class GgufFile {
  private fd: number | undefined;

  private constructor(
    readonly path: string,
    fd: number,
    readonly version: number,
    readonly metadata: ReadonlyMap<string, GgufValue>,
    readonly tensors: ReadonlyMap<string, GgufTensorInfo>,
    readonly dataOffset: number,
  ) {
    this.fd = fd;
  }

  static open(path: string): GgufFile {
    let fd: number;
    try {
      fd = openSync(path, "r");
    } catch (cause) {
      throw new ModelFormatError(`cannot open ${path}: ${(cause as Error).message}`, { path }, cause);
    }
    try {
      const fileSize = fstatSync(fd).size;
      const c = new HeaderCursor(fd, fileSize, path);
      const magic = c.u32();
      if (magic !== GGUF_MAGIC) throw new ModelFormatError(`${path} is not a GGUF file (magic 0x${magic.toString(16)}, expected "GGUF")`, { path });
      const version = c.u32();
      if (version !== 2 && version !== GGUF_VERSION) throw new ModelFormatError(`${path}: GGUF version ${version}, expected 2 or 3`, { path });
      const tensorCount = c.count("the tensor count", LIMITS.tensors);
      const metadataCount = c.count("the metadata count", LIMITS.metadata);
      const metadata = new Map<string, GgufValue>();
      for (let i = 0; i < metadataCount; i++) {
        const key = c.string(`metadata key ${i}`);
        const type = c.valueType(key);
        if (type === GgufValueType.ARRAY) {
          const elementType = c.valueType(`${key}[]`);
          if (elementType === GgufValueType.ARRAY) throw new ModelFormatError(`${path}: ${key} is an array of arrays, which eFed does not read`, { path });
          const n = c.count(`the length of ${key}`, LIMITS.arrayElements);
          const value: (number | bigint | boolean | string)[] = new Array(n);
          for (let j = 0; j < n; j++) value[j] = c.scalar(elementType, key);
          metadata.set(key, { type, elementType, value });
        } else {
          metadata.set(key, { type, value: c.scalar(type, key) });
        }
      }
      const alignment = alignmentOf(metadata, path);
      const infos: GgufTensorInfo[] = [];
      for (let i = 0; i < tensorCount; i++) {
        const name = c.string(`tensor name ${i}`);
        const nDims = c.u32();
        if (nDims < 1 || nDims > LIMITS.dims) throw new ModelFormatError(`${path}: tensor ${name} has ${nDims} dims, expected 1–${LIMITS.dims}`, { path, tensor: name });
        const dims = Array.from({ length: nDims }, () => c.count(`a dim of ${name}`, fileSize));
        const type = c.u32();
        const offset = c.count(`the offset of ${name}`, fileSize);
        if (!isSupportedGgmlType(type)) {
          throw new ModelFormatError(`${path}: tensor ${name} is ${ggmlTypeName(type)}; eFed reads F32, F16, BF16, Q8_0 and Q4_0`, { path, tensor: name, type: ggmlTypeName(type) });
        }
        const elements = dims.reduce((a, d) => a * d, 1);
        if (dims[0]! % GGML_BLOCK[type].elements !== 0) {
          throw new ModelFormatError(`${path}: tensor ${name} has rows of ${dims[0]} elements, not a multiple of ${ggmlTypeName(type)}'s block of ${GGML_BLOCK[type].elements}`, { path, tensor: name });
        }
        if (offset % alignment !== 0) throw new ModelFormatError(`${path}: tensor ${name} starts at ${offset}, not a multiple of the alignment ${alignment}`, { path, tensor: name });
        infos.push({ name, dims, type, offset, byteLength: ggmlByteLength(type, elements) });
      }
      const dataOffset = Math.ceil(c.position / alignment) * alignment;
      const tensors = new Map<string, GgufTensorInfo>();
      for (const info of infos) {
        if (tensors.has(info.name)) throw new ModelFormatError(`${path}: tensor ${info.name} appears twice`, { path, tensor: info.name });
        if (dataOffset + info.offset + info.byteLength > fileSize) {
          throw new ModelFormatError(`${path}: tensor ${info.name} ends at byte ${dataOffset + info.offset + info.byteLength}, past the end of the file (${fileSize})`, { path, tensor: info.name });
        }
        tensors.set(info.name, info);
      }
      return new GgufFile(path, fd, version, metadata, tensors, dataOffset);
    } catch (err) {
      closeSync(fd);
      throw err;
    }
  }

  info(name: string): GgufTensorInfo {
    const info = this.tensors.get(name);
    if (info === undefined) throw new ModelFormatError(`${this.path}: tensor ${name} is missing`, { path: this.path, tensor: name });
    return info;
  }

  /** The tensor's bytes exactly as stored. */
  readBytes(name: string): Uint8Array {
    const info = this.info(name);
    if (this.fd === undefined) throw new ModelFormatError(`${this.path} is closed`, { path: this.path });
    return readRange(this.fd, this.dataOffset + info.offset, info.byteLength, this.path, name);
  }

  close(): void {
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = undefined;
  }
}

function alignmentOf(metadata: ReadonlyMap<string, GgufValue>, path: string): number {
  const entry = metadata.get("general.alignment");
  if (entry === undefined) return DEFAULT_ALIGNMENT;
  const a = entry.value;
  if (typeof a !== "number" || !Number.isInteger(a) || a <= 0 || (a & (a - 1)) !== 0) {
    throw new ModelFormatError(`${path}: general.alignment is ${String(a)}, expected a power of two`, { path });
  }
  return a;
}
