import type { CompressionSpec } from "./compression.js";
import type { ModelConfig } from "./config.js";
import type { TensorInfo } from "./safetensors.js";
import type { MatrixRows } from "./tensorRows.js";

/**
 * Where a model's tensors come from, as the manifest and the weight loaders see it: names, stored
 * bytes and float32 views. `ModelDirectory` is the one implementation; keeping the readers on this
 * interface keeps them from depending on how a directory is laid out.
 */
export interface TensorSource {
  /** Where the tensors live (named in errors). */
  readonly dir: string;
  readonly config: ModelConfig;
  /** How the layers' projections are stored (dense when nothing is compressed). */
  readonly compression: CompressionSpec;
  has(name: string): boolean;
  tensorNames(): IterableIterator<string>;
  /** The tensor's bytes exactly as stored (for hashing). */
  rawBytes(name: string): Uint8Array;
  /** Bytes [at, at + into.length) of the tensor as stored, read into `into` (returned). */
  rawBytesInto(name: string, at: number, into: Uint8Array): Uint8Array;
  info(name: string): TensorInfo;
  /**
   * Tensor `name` as float32 with its shape checked against `shape`; read into `into` (which must
   * hold exactly its element count, and is returned) instead of a new array when given.
   */
  tensor(name: string, shape: readonly number[], into?: Float32Array): Float32Array;
  /**
   * The 2-D tensor `name` (dense, or quantized when the compression lists it by its name without
   * ".weight"), checked against `shape`, for reading rows on demand as float32 (close it when done).
   */
  openRows(name: string, shape: readonly [number, number]): MatrixRows;
}
