/**
 * The GGUF container (version 3, as llama.cpp writes it): magic "GGUF", version, tensor count,
 * metadata count, typed key/value metadata, tensor descriptors (name, dims innermost first, ggml
 * type, offset into the data section), padding to `general.alignment`, then the tensor data.
 */

export const GGUF_MAGIC = 0x46554747; // "GGUF" read as a little-endian u32
export const GGUF_VERSION = 3;
export const DEFAULT_ALIGNMENT = 32;

/** Metadata value types. */
export enum GgufValueType {
  UINT8 = 0,
  INT8 = 1,
  UINT16 = 2,
  INT16 = 3,
  UINT32 = 4,
  INT32 = 5,
  FLOAT32 = 6,
  BOOL = 7,
  STRING = 8,
  ARRAY = 9,
  UINT64 = 10,
  INT64 = 11,
  FLOAT64 = 12,
}

export type GgufScalarType = Exclude<GgufValueType, GgufValueType.ARRAY>;

/** One metadata value with the type it is stored as (so a file is written back exactly). */
export type GgufValue =
  | { type: GgufScalarType; value: number | bigint | boolean | string }
  | { type: GgufValueType.ARRAY; elementType: GgufScalarType; value: (number | bigint | boolean | string)[] };

/** The ggml tensor types eFed reads and writes; any other is refused by name. */
export enum GgmlType {
  F32 = 0,
  F16 = 1,
  Q4_0 = 2,
  Q8_0 = 8,
  BF16 = 30,
}

/** Elements per block and bytes per block of each supported type. */
export const GGML_BLOCK: Readonly<Record<GgmlType, { elements: number; bytes: number }>> = {
  [GgmlType.F32]: { elements: 1, bytes: 4 },
  [GgmlType.F16]: { elements: 1, bytes: 2 },
  [GgmlType.BF16]: { elements: 1, bytes: 2 },
  [GgmlType.Q8_0]: { elements: 32, bytes: 34 }, // f16 scale + 32 × int8
  [GgmlType.Q4_0]: { elements: 32, bytes: 18 }, // f16 scale + 32 × 4-bit codes (offset 8)
};

/** Names of ggml types, for errors about the ones eFed does not support. */
const GGML_TYPE_NAMES: readonly string[] = [
  "F32", "F16", "Q4_0", "Q4_1", "Q4_2", "Q4_3", "Q5_0", "Q5_1", "Q8_0", "Q8_1", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "Q8_K",
  "IQ2_XXS", "IQ2_XS", "IQ3_XXS", "IQ1_S", "IQ4_NL", "IQ3_S", "IQ2_S", "IQ4_XS", "I8", "I16", "I32", "I64", "F64", "IQ1_M", "BF16",
];

export function ggmlTypeName(type: number): string {
  return GGML_TYPE_NAMES[type] ?? `type ${type}`;
}

export function isSupportedGgmlType(type: number): type is GgmlType {
  return Object.hasOwn(GGML_BLOCK, type);
}

/** Bytes of a tensor of `elements` elements of `type` (elements must fill whole blocks). */
export function ggmlByteLength(type: GgmlType, elements: number): number {
  const block = GGML_BLOCK[type];
  return (elements / block.elements) * block.bytes;
}

/** A tensor descriptor: `dims` innermost first (a row-major (rows, cols) matrix is [cols, rows]). */
export interface GgufTensorInfo {
  name: string;
  dims: number[];
  type: GgmlType;
  /** Byte offset of the data from the start of the data section. */
  offset: number;
  byteLength: number;
}
