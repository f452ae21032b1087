import { closeSync, fstatSync, openSync, readSync } from "node:fs";
import { ModelFormatError } from "../errors.js";
import { readRange, readRangeInto } from "./readRange.js";
import { DTYPE_BYTES, fillAsFloat32, isDType, type DType } from "../../protocol/dtype.js";

/** Where one tensor lives in a safetensors file. */
export interface TensorInfo {
  name: string;
  dtype: string;
  shape: number[];
  /** Absolute byte offset of the data in the file. */
  offset: number;
  byteLength: number;
}

/** Headers larger than this are refused: real ones are a few hundred KiB at most. */
const MAX_HEADER_BYTES = 100 * 1024 * 1024;

/**
 * A safetensors file read lazily: the header is parsed on open, tensor data is read from disk only
 * when asked for, so a server holds only the layers it serves. Format: u64 little-endian header
 * length N, N bytes of JSON `{name: {dtype, shape, data_offsets: [begin, end]}}`, then the data.
 */
export class SafetensorsFile {
  readonly path: string;
  readonly tensors: ReadonlyMap<string, TensorInfo>;
  readonly metadata: Readonly<Record<string, string>>;
  private fd: number | undefined;

  private constructor(path: string, fd: number, tensors: Map<string, TensorInfo>, metadata: Record<string, string>) {
    this.path = path;
    this.fd = fd;
    this.tensors = tensors;
    this.metadata = metadata;
  }

  static open(path: string): SafetensorsFile {
    let fd: number;
    try {
      fd = openSync(path, "r");
    } catch (cause) {
      throw new ModelFormatError(`cannot open ${path}: ${(cause as Error).message}`, { path }, cause);
    }
    try {
      const { tensors, metadata } = readHeader(path, fd);
      return new SafetensorsFile(path, fd, tensors, metadata);
    } catch (err) {
      closeSync(fd);
      throw err;
    }
  }

  info(name: string): TensorInfo {
    const info = this.tensors.get(name);
    if (info === undefined) throw new ModelFormatError(`${this.path}: tensor ${name} is missing`, { path: this.path, tensor: name });
    return info;
  }

  /** Raw little-endian bytes of `name`. */
  readBytes(name: string): Uint8Array {
    const info = this.info(name);
    if (this.fd === undefined) throw new ModelFormatError(`${this.path} is closed`, { path: this.path });
    return readRange(this.fd, info.offset, info.byteLength, this.path, name);
  }

  /** Bytes [at, at + into.length) of `name` as stored, read into `into` (returned). */
  readBytesInto(name: string, at: number, into: Uint8Array): Uint8Array {
    const info = this.info(name);
    if (this.fd === undefined) throw new ModelFormatError(`${this.path} is closed`, { path: this.path });
    if (!Number.isSafeInteger(at) || at < 0 || at + into.byteLength > info.byteLength) {
      throw new RangeError(`${this.path}: bytes ${at}…${at + into.byteLength} are not within tensor ${name}'s ${info.byteLength}`);
    }
    return readRangeInto(this.fd, info.offset + at, into, this.path, name);
  }

  /**
   * Tensor `name` as float32, checking its shape when `expectedShape` is given, into `into` when
   * given (exactly the tensor's element count; returned) or a new array.
   */
  readFloat32(name: string, expectedShape?: readonly number[], into?: Float32Array): Float32Array {
    const info = this.info(name);
    if (expectedShape !== undefined && !sameShape(info.shape, expectedShape)) {
      throw new ModelFormatError(
        `${this.path}: tensor ${name} has shape [${info.shape.join(", ")}], expected [${expectedShape.join(", ")}]`,
        { path: this.path, tensor: name, shape: info.shape, expected: expectedShape },
      );
    }
    if (!isDType(info.dtype)) {
      throw new ModelFormatError(`${this.path}: tensor ${name} has unsupported dtype ${info.dtype} (expected F32, F16 or BF16)`, {
        path: this.path,
        tensor: name,
        dtype: info.dtype,
      });
    }
    if (this.fd === undefined) throw new ModelFormatError(`${this.path} is closed`, { path: this.path });
    // One allocation per tensor: F32 is read straight into it, F16/BF16 into its upper half and
    // widened in place. Every fresh page costs a fault (on these VMs ~15 µs per 4 KiB, more than
    // the conversion), and a second copy of a large tensor, however brief, raises the load's peak.
    const n = info.byteLength / DTYPE_BYTES[info.dtype];
    if (into !== undefined && into.length !== n) {
      throw new RangeError(`${this.path}: tensor ${name} has ${n} elements, the buffer given for it ${into.length}`);
    }
    const fd = this.fd;
    return fillAsFloat32(into ?? new Float32Array(n), info.dtype, (stored) => readRangeInto(fd, info.offset, stored, this.path, name));
  }

  close(): void {
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = undefined;
  }
}

export function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

/** Element size of a dtype string, or undefined for dtypes eFed does not compute with. */
function elementBytes(dtype: string): number | undefined {
  if (isDType(dtype)) return DTYPE_BYTES[dtype as DType];
  const others: Record<string, number> = { F64: 8, I64: 8, I32: 4, I16: 2, I8: 1, U8: 1, BOOL: 1, U16: 2, U32: 4, U64: 8 };
  return others[dtype];
}

function readHeader(path: string, fd: number): { tensors: Map<string, TensorInfo>; metadata: Record<string, string> } {
  const fileSize = fstatSync(fd).size;
  const fail = (why: string): never => {
    throw new ModelFormatError(`${path}: corrupt safetensors header: ${why}`, { path });
  };
  if (fileSize < 8) fail(`file is ${fileSize} bytes, shorter than the 8-byte length prefix`);
  const prefix = Buffer.alloc(8);
  readSync(fd, prefix, 0, 8, 0);
  const headerLength = prefix.readBigUInt64LE(0);
  if (headerLength > BigInt(Math.min(MAX_HEADER_BYTES, fileSize - 8))) {
    fail(`declared header length ${headerLength} exceeds the file (${fileSize} bytes) or the ${MAX_HEADER_BYTES}-byte limit`);
  }
  const n = Number(headerLength);
  const headerBytes = Buffer.alloc(n);
  readSync(fd, headerBytes, 0, n, 8);
  let header: unknown;
  try {
    header = JSON.parse(headerBytes.toString("utf8"));
  } catch (cause) {
    return fail(`header is not JSON (${(cause as Error).message})`);
  }
  if (typeof header !== "object" || header === null || Array.isArray(header)) return fail("header is not a JSON object");
  const dataStart = 8 + n;
  const dataSize = fileSize - dataStart;
  const tensors = new Map<string, TensorInfo>();
  let metadata: Record<string, string> = {};
  for (const [name, value] of Object.entries(header as Record<string, unknown>)) {
    if (name === "__metadata__") {
      metadata = value as Record<string, string>;
      continue;
    }
    const v = value as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    if (typeof v.dtype !== "string") fail(`tensor ${name} has no dtype`);
    const dtype = v.dtype as string;
    const size = elementBytes(dtype);
    if (size === undefined) fail(`tensor ${name} has unknown dtype ${dtype}`);
    if (!Array.isArray(v.shape) || !v.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) fail(`tensor ${name} has a bad shape`);
    const shape = v.shape as number[];
    const offsets = v.data_offsets;
    if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every((o) => Number.isSafeInteger(o) && o >= 0)) {
      fail(`tensor ${name} has bad data_offsets`);
    }
    const [begin, end] = offsets as [number, number];
    const expected = shape.reduce((a, d) => a * d, 1) * size!;
    if (end < begin || end - begin !== expected) {
      fail(`tensor ${name} spans ${end - begin} bytes but dtype ${dtype} and shape [${shape.join(", ")}] need ${expected}`);
    }
    if (end > dataSize) {
      throw new ModelFormatError(
        `${path}: tensor ${name} is truncated: its data ends at byte ${end} of a ${dataSize}-byte data section`,
        { path, tensor: name },
      );
    }
    tensors.set(name, { name, dtype, shape, offset: dataStart + begin, byteLength: end - begin });
  }
  return { tensors, metadata };
}
