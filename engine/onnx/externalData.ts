import { closeSync, openSync, writeSync } from "node:fs";
import { basename } from "node:path";
import { EngineError } from "../errors.js";

/**
 * Tensors at least this large go to the data file; smaller ones (scalars, shape constants, norms
 * of tiny models) stay inline in the protobuf, where they cost nothing and keep graphs readable.
 */
export const EXTERNAL_MIN_BYTES = 1024;

/**
 * Each tensor starts on a page boundary so ONNX Runtime can map it straight from the file instead
 * of copying (it maps page-aligned ranges).
 */
export const EXTERNAL_ALIGN_BYTES = 4096;

/** Where a tensor's bytes are in the data file: the ONNX external-data entries of a TensorProto. */
export interface ExternalLocation {
  location: string; // file name, relative to the model file's directory
  offset: number;
  length: number;
}

/**
 * The data file of a graph in ONNX's external-data format: tensors are appended as the graph is
 * built (each written once, then forgotten), so building never holds more than one tensor's copy.
 * A tensor never written in full reads as zeros where it was not (the file is sparse there).
 * The model file that refers to it must be written into the same directory.
 */
export class ExternalDataFile {
  readonly path: string;
  private fd: number | undefined;
  private size = 0;

  /** Creates `path`, which must not exist (mode 0600: weights are the operator's business). */
  constructor(path: string) {
    try {
      this.fd = openSync(path, "wx", 0o600);
    } catch (cause) {
      throw new EngineError("SCRATCH_UNAVAILABLE", `cannot create the graph data file ${path}: ${(cause as Error).message}`, { path });
    }
    this.path = path;
  }

  /** Bytes written so far (with alignment padding). */
  get byteLength(): number {
    return this.size;
  }

  /** Appends `bytes` at the next aligned offset and says where they are. */
  append(bytes: Uint8Array): ExternalLocation {
    const where = this.reserve(bytes.byteLength);
    this.writeAt(where, 0, bytes);
    return where;
  }

  /**
   * Reserves `length` bytes at the next aligned offset, to be filled by `writeAt` in any order (a
   * transpose can then be written a block of source rows at a time).
   */
  reserve(length: number): ExternalLocation {
    if (this.fd === undefined) throw new EngineError("SCRATCH_CLOSED", `graph data file ${this.path} is already closed`);
    const offset = Math.ceil(this.size / EXTERNAL_ALIGN_BYTES) * EXTERNAL_ALIGN_BYTES;
    this.size = offset + length;
    return { location: basename(this.path), offset, length };
  }

  /** Writes `bytes` at byte `at` of the reserved range `where`. */
  writeAt(where: ExternalLocation, at: number, bytes: Uint8Array): void {
    const fd = this.fd;
    if (fd === undefined) throw new EngineError("SCRATCH_CLOSED", `graph data file ${this.path} is already closed`);
    if (at < 0 || at + bytes.byteLength > where.length) {
      throw new RangeError(`write of ${bytes.byteLength} bytes at ${at} overruns a ${where.length}-byte tensor in ${this.path}`);
    }
    let done = 0;
    while (done < bytes.byteLength) done += writeSync(fd, bytes, done, bytes.byteLength - done, where.offset + at + done);
  }

  close(): void {
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = undefined;
  }
}
