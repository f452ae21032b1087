import { closeSync, openSync, readSync } from "node:fs";
import { ModelFormatError } from "../errors.js";
import { DTYPE_BYTES, fillAsFloat32, isDType, toFloat32, type DType } from "../../protocol/dtype.js";
import { blocksOf, dequantize, type QuantBits } from "./projection.js";
import { sameShape, type TensorInfo } from "./safetensors.js";

/**
 * Rows of a (rows, cols) matrix as float32, read on demand: what a client needs of the token
 * embeddings (a few rows per step) without holding the (vocab, hidden) table in memory. Each reader
 * holds its own file descriptor, so it outlives the ModelDirectory it was opened from until `close()`.
 */
export interface MatrixRows {
  readonly name: string;
  readonly rows: number;
  readonly cols: number;
  /** Rows `indices` as float32, one after another: (indices.length, cols). */
  read(indices: readonly number[]): Float32Array;
  /**
   * Rows first … first+count-1 as float32: (count, cols). A float tensor's rows are read into `into`
   * when given (it must hold at least count × cols values; the rows are a view of its start); use
   * what is returned, which may be a new array.
   */
  readSpan(first: number, count: number, into?: Float32Array): Float32Array;
  /**
   * Reads the whole matrix once (as stored) and serves every later read from memory, closing the
   * file: for small tables one read per row (a system call each, ~17 µs) costs more than the memory saves.
   */
  keepInMemory(): void;
  close(): void;
}

/** Whole rows of one tensor's bytes, read from its file through a descriptor of its own. */
class ByteRows {
  private fd: number | undefined;

  private constructor(
    readonly path: string,
    readonly name: string,
    readonly rows: number,
    readonly rowBytes: number,
    private readonly offset: number,
    fd: number,
  ) {
    this.fd = fd;
  }

  static open(path: string, info: TensorInfo, rows: number, rowBytes: number): ByteRows {
    let fd: number;
    try {
      fd = openSync(path, "r");
    } catch (cause) {
      throw new ModelFormatError(`cannot open ${path}: ${(cause as Error).message}`, { path }, cause);
    }
    return new ByteRows(path, info.name, rows, rowBytes, info.offset, fd);
  }

  checkRows(first: number, count: number): void {
    if (!Number.isInteger(first) || !Number.isInteger(count) || first < 0 || count < 0 || first + count > this.rows) {
      throw new RangeError(`rows ${first}…${first + count - 1} of ${this.name} are outside 0..${this.rows - 1}`);
    }
  }

  span(first: number, count: number): Uint8Array {
    return this.spanInto(first, count, new Uint8Array(count * this.rowBytes));
  }

  /** Rows first … first+count-1 as stored, into the start of `bytes` (returned as a view of it). */
  spanInto(first: number, count: number, bytes: Uint8Array): Uint8Array {
    this.checkRows(first, count);
    const length = count * this.rowBytes;
    if (bytes.byteLength < length) throw new RangeError(`rows ${first}…${first + count - 1} of ${this.name} need ${length} bytes, the buffer holds ${bytes.byteLength}`);
    this.readInto(bytes, 0, first, count);
    return bytes.subarray(0, length);
  }

  gather(indices: readonly number[]): Uint8Array {
    const bytes = new Uint8Array(indices.length * this.rowBytes);
    indices.forEach((row, i) => {
      this.checkRows(row, 1);
      this.readInto(bytes, i * this.rowBytes, row, 1);
    });
    return bytes;
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
  }
}

function checkShape(path: string, info: TensorInfo, shape: readonly number[]): void {
  if (!sameShape(info.shape, shape)) {
    throw new ModelFormatError(`${path}: tensor ${info.name} has shape [${info.shape.join(", ")}], expected [${shape.join(", ")}]`, {
      path,
      tensor: info.name,
      shape: info.shape,
      expected: shape,
    });
  }
}

/** Rows of a float tensor (F32, F16 or BF16) of a safetensors file. */
export class TensorRows implements MatrixRows {
  readonly path: string;
  readonly name: string;
  readonly rows: number;
  readonly cols: number;
  readonly dtype: DType;
  private readonly file: ByteRows;
  /** The whole tensor as float32 once `keepInMemory()` has read it (the file is then closed). */
  private table: Float32Array | undefined;

  private constructor(path: string, info: TensorInfo, dtype: DType, file: ByteRows) {
    this.path = path;
    this.name = info.name;
    [this.rows, this.cols] = info.shape as [number, number];
    this.dtype = dtype;
    this.file = file;
  }

  /** Opens tensor `info` of the safetensors file at `path`, checking its dtype and its shape against `shape`. */
  static open(path: string, info: TensorInfo, shape: readonly [number, number]): TensorRows {
    checkShape(path, info, shape);
    if (!isDType(info.dtype)) {
      throw new ModelFormatError(`${path}: tensor ${info.name} has unsupported dtype ${info.dtype} (expected F32, F16 or BF16)`, {
        path,
        tensor: info.name,
        dtype: info.dtype,
      });
    }
    return new TensorRows(path, info, info.dtype, ByteRows.open(path, info, shape[0], shape[1] * DTYPE_BYTES[info.dtype]));
  }

  keepInMemory(): void {
    if (this.table !== undefined) return;
    const table = this.readSpan(0, this.rows);
    this.file.close();
    this.table = table;
  }

  read(indices: readonly number[]): Float32Array {
    const table = this.table;
    if (table === undefined) return toFloat32(this.file.gather(indices), this.dtype);
    const out = new Float32Array(indices.length * this.cols);
    indices.forEach((row, i) => {
      this.file.checkRows(row, 1);
      out.set(table.subarray(row * this.cols, (row + 1) * this.cols), i * this.cols);
    });
    return out;
  }

  readSpan(first: number, count: number, into?: Float32Array): Float32Array {
    if (this.table !== undefined) {
      this.file.checkRows(first, count);
      return this.table.slice(first * this.cols, (first + count) * this.cols);
    }
    if (into === undefined) return toFloat32(this.file.span(first, count), this.dtype);
    const n = count * this.cols;
    if (into.length < n) throw new RangeError(`rows ${first}…${first + count - 1} of ${this.name} are ${n} values, the buffer holds ${into.length}`);
    return fillAsFloat32(into.subarray(0, n), this.dtype, (stored) => this.file.spanInto(first, count, stored));
  }

  close(): void {
    this.file.close();
    this.table = undefined;
  }
}

/** Where a block-quantized matrix lives: its packed codes (rows, blocks, blob) and float32 scales (rows, blocks). */
export interface QuantizedTensors {
  codes: TensorInfo & { path: string };
  scales: TensorInfo & { path: string };
  bits: QuantBits;
  blockSize: number;
}

/**
 * Rows of a block-quantized matrix (the MatMulNBits layout of engine/model/projection.ts), each
 * dequantized as it is read: a row costs its codes and scales, not float32 of every value. Kept in
 * memory, the table stays quantized.
 */
export class QuantizedRows implements MatrixRows {
  readonly name: string;
  readonly rows: number;
  readonly cols: number;
  private readonly codes: ByteRows;
  private readonly scales: ByteRows;
  private table: { codes: Uint8Array; scales: Uint8Array } | undefined;

  private constructor(private readonly q: QuantizedTensors, rows: number, cols: number, codes: ByteRows, scales: ByteRows) {
    this.name = q.codes.name;
    this.rows = rows;
    this.cols = cols;
    this.codes = codes;
    this.scales = scales;
  }

  /** Opens the codes and scales `q` names, checking their dtypes and shapes against a (rows, cols) matrix. */
  static open(q: QuantizedTensors, [rows, cols]: readonly [number, number]): QuantizedRows {
    const blocks = blocksOf(cols, q.blockSize);
    const blob = (q.blockSize * q.bits) / 8;
    for (const [info, dtype, shape] of [
      [q.codes, "U8", [rows, blocks, blob]],
      [q.scales, "F32", [rows, blocks]],
    ] as const) {
      checkShape(info.path, info, shape);
      if (info.dtype !== dtype) {
        throw new ModelFormatError(`${info.path}: tensor ${info.name} has dtype ${info.dtype}, expected ${dtype} (${q.bits}-bit blocks of ${q.blockSize})`, {
          path: info.path,
          tensor: info.name,
          dtype: info.dtype,
        });
      }
    }
    const codes = ByteRows.open(q.codes.path, q.codes, rows, blocks * blob);
    try {
      return new QuantizedRows(q, rows, cols, codes, ByteRows.open(q.scales.path, q.scales, rows, blocks * 4));
    } catch (err) {
      codes.close();
      throw err;
    }
  }

  keepInMemory(): void {
    if (this.table !== undefined) return;
    const table = { codes: this.codes.span(0, this.rows), scales: this.scales.span(0, this.rows) };
    this.closeFiles();
    this.table = table;
  }

  read(indices: readonly number[]): Float32Array {
    const t = this.table;
    if (t === undefined) return this.decode(indices.length, this.codes.gather(indices), this.scales.gather(indices));
    const [codeBytes, scaleBytes] = [this.codes.rowBytes, this.scales.rowBytes];
    const codes = new Uint8Array(indices.length * codeBytes);
    const scales = new Uint8Array(indices.length * scaleBytes);
    indices.forEach((row, i) => {
      this.codes.checkRows(row, 1);
      codes.set(t.codes.subarray(row * codeBytes, (row + 1) * codeBytes), i * codeBytes);
      scales.set(t.scales.subarray(row * scaleBytes, (row + 1) * scaleBytes), i * scaleBytes);
    });
    return this.decode(indices.length, codes, scales);
  }

  readSpan(first: number, count: number): Float32Array {
    const t = this.table;
    if (t === undefined) return this.decode(count, this.codes.span(first, count), this.scales.span(first, count));
    this.codes.checkRows(first, count);
    const [codeBytes, scaleBytes] = [this.codes.rowBytes, this.scales.rowBytes];
    return this.decode(count, t.codes.subarray(first * codeBytes, (first + count) * codeBytes), t.scales.slice(first * scaleBytes, (first + count) * scaleBytes));
  }

  close(): void {
    this.closeFiles();
    this.table = undefined;
  }

  private closeFiles(): void {
    this.codes.close();
    this.scales.close();
  }

  /** `scales` must be a fresh (aligned) buffer: it is viewed as float32 in place. */
  private decode(rows: number, codes: Uint8Array, scales: Uint8Array): Float32Array {
    const { bits, blockSize } = this.q;
    return dequantize({ kind: "quantized", rows, cols: this.cols, bits, blockSize, packed: codes, scales: new Float32Array(scales.buffer, scales.byteOffset, scales.length / 4) });
  }
}
