import { closeSync, openSync, readSync } from "node:fs";
import { ModelFormatError } from "../errors.js";
import { DTYPE_BYTES, isDType, toFloat32, type DType } from "../../protocol/dtype.js";
import { sameShape, type TensorInfo } from "./safetensors.js";

/**
 * Rows of a 2-D tensor read from its file on demand, as float32: what a client needs of the token
 * embeddings (a few rows per step) without holding the (vocab, hidden) table in memory. Holds its
 * own file descriptor, so it outlives the ModelDirectory it was opened from until `close()`.
 */
export class TensorRows {
  readonly path: string;
  readonly name: string;
  readonly rows: number;
  readonly cols: number;
  readonly dtype: DType;
  private fd: number | undefined;
  /** The whole tensor as float32 once `keepInMemory()` has read it (the file is then closed). */
  private table: Float32Array | undefined;
  private readonly offset: number;
  private readonly rowBytes: number;

  private constructor(path: string, info: TensorInfo, dtype: DType, fd: number) {
    this.path = path;
    this.name = info.name;
    [this.rows, this.cols] = info.shape as [number, number];
    this.dtype = dtype;
    this.fd = fd;
    this.offset = info.offset;
    this.rowBytes = this.cols * DTYPE_BYTES[dtype];
  }

  /** Opens tensor `info` of the safetensors file at `path`, checking its dtype and its shape against `shape`. */
  static open(path: string, info: TensorInfo, shape: readonly [number, number]): TensorRows {
    if (!sameShape(info.shape, shape)) {
      throw new ModelFormatError(`${path}: tensor ${info.name} has shape [${info.shape.join(", ")}], expected [${shape.join(", ")}]`, {
        path,
        tensor: info.name,
        shape: info.shape,
        expected: shape,
      });
    }
    if (!isDType(info.dtype)) {
      throw new ModelFormatError(`${path}: tensor ${info.name} has unsupported dtype ${info.dtype} (expected F32, F16 or BF16)`, {
        path,
        tensor: info.name,
        dtype: info.dtype,
      });
    }
    let fd: number;
    try {
      fd = openSync(path, "r");
    } catch (cause) {
      throw new ModelFormatError(`cannot open ${path}: ${(cause as Error).message}`, { path }, cause);
    }
    return new TensorRows(path, info, info.dtype, fd);
  }

  /**
   * Reads the whole tensor once and serves every later read from memory, closing the file: for
   * small tables one read per row (a system call each, ~17 µs) costs more than the memory saves.
   */
  keepInMemory(): void {
    if (this.table !== undefined) return;
    const table = this.readSpan(0, this.rows);
    this.close();
    this.table = table;
  }

  /** Rows `indices` as float32, one after another: (indices.length, cols). */
  read(indices: readonly number[]): Float32Array {
    const table = this.table;
    if (table !== undefined) {
      const out = new Float32Array(indices.length * this.cols);
      indices.forEach((row, i) => {
        this.checkRows(row, 1);
        out.set(table.subarray(row * this.cols, (row + 1) * this.cols), i * this.cols);
      });
      return out;
    }
    const bytes = new Uint8Array(indices.length * this.rowBytes);
    indices.forEach((row, i) => {
      this.checkRows(row, 1);
      this.readInto(bytes, i * this.rowBytes, row, 1);
    });
    return toFloat32(bytes, this.dtype);
  }

  /** Rows first … first+count-1 as float32 (one read): (count, cols). */
  readSpan(first: number, count: number): Float32Array {
    this.checkRows(first, count);
    if (this.table !== undefined) return this.table.slice(first * this.cols, (first + count) * this.cols);
    const bytes = new Uint8Array(count * this.rowBytes);
    this.readInto(bytes, 0, first, count);
    return toFloat32(bytes, this.dtype);
  }

  private checkRows(first: number, count: number): void {
    if (!Number.isInteger(first) || !Number.isInteger(count) || first < 0 || count < 0 || first + count > this.rows) {
      throw new RangeError(`rows ${first}…${first + count - 1} of ${this.name} are outside 0..${this.rows - 1}`);
    }
  }

  private readInto(bytes: Uint8Array, at: number, first: number, count: number): void {
    const fd = this.fd;
    if (fd === undefined) throw new ModelFormatError(`${this.path}: rows of ${this.name} were read after close()`, { path: this.path, tensor: this.name });
    const length = count * this.rowBytes;
    let done = 0;
    while (done < length) {
      const n = readSync(fd, bytes, at + done, length - done, this.offset + first * this.rowBytes + done);
      if (n === 0) throw new ModelFormatError(`${this.path}: tensor ${this.name} is truncated (file ends inside row ${first + Math.floor(done / this.rowBytes)})`, { path: this.path, tensor: this.name });
      done += n;
    }
  }

  close(): void {
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = undefined;
    this.table = undefined;
  }
}
