import { basename } from "node:path";
import { ModelFormatError } from "../../engine/errors.js";
import { FactorNames } from "../../engine/model/compression.js";
import { ModelDirectory } from "../../engine/model/modelDir.js";
import { quantize, type QuantBits } from "../../engine/model/projection.js";
import { loadProjection } from "../../engine/model/projectionLoader.js";
import { EMBED_TOKENS, lmHeadTensorName, PROJECTIONS, projectionShapes, type ProjectionKey } from "../../engine/model/weights.js";
import { GGUF_QUANT_BLOCK, toGgmlBlocks } from "../../engine/model/gguf/blocks.js";
import { GgmlType, GgufValueType } from "../../engine/model/gguf/format.js";
import { writeGguf, type GgufTensorToWrite } from "../../engine/model/gguf/writer.js";
import { float32ToBF16Bytes, float32ToF16Bytes, isDType, toFloat32, type DType } from "../../protocol/dtype.js";
import { FILE_TYPES, ggufArchitectureOf, shapeMetadata } from "./ggufMetadata.js";
import { tokenizerMetadata } from "./ggufTokenizer.js";
import { ggufNameOf, reorderRotaryRows, rotaryHeadsOf } from "./llamaTensors.js";

/** What an export stores its weights as: as they are stored (`keep`), or one type for every matrix. */
export const EXPORT_TYPES = ["keep", "f32", "f16", "bf16", "q8_0", "q4_0"] as const;
export type ExportType = (typeof EXPORT_TYPES)[number];

export interface ExportReport {
  file: string;
  tensors: number;
  fileType: keyof typeof FILE_TYPES;
  /** Why the tokenizer was left out, when it was. */
  tokenizerLeftOut?: string;
  /** Largest relative change of a quantization scale rounded to F16 (0 when the scales came from GGUF). */
  maxScaleRounding: number;
}

const FLOAT_TYPES: Record<DType, GgmlType> = { F32: GgmlType.F32, F16: GgmlType.F16, BF16: GgmlType.BF16 };

/**
 * Writes the model directory `dir` as a GGUF file llama.cpp runs: matrices in the format they are
 * stored in (dense floats, or eFed's int8/int4 blocks of 32 as Q8_0/Q4_0), or converted to `type`;
 * norms as F32 (what llama.cpp expects); byte-level BPE tokenizers included. SVD-factored matrices
 * have no GGUF form and are refused.
 */
export function exportGguf(dir: string, file: string, type: ExportType = "keep"): ExportReport {
  const model = ModelDirectory.open(dir);
  try {
    const config = model.config;
    const spec = model.compression;
    const arch = ggufArchitectureOf(config);
    const heads = { attention: config.numHeads, keyValue: config.numKvHeads };
    const factored = Object.entries(spec.matrices ?? {}).find(([, m]) => m.rank !== undefined);
    if (factored !== undefined) {
      throw new ModelFormatError(`${dir}: ${factored[0]} is stored as SVD factors (rank ${factored[1].rank}), which GGUF cannot hold; export the dense model or an int8/int4 variant`, { dir });
    }
    const quantized = Object.values(spec.matrices ?? {}).some((m) => m.bits !== undefined);
    if (quantized && type !== "keep") throw new ModelFormatError(`${dir} is already quantized (${spec.method}); export it with --type keep`, { dir });
    if (quantized && spec.block_size !== GGUF_QUANT_BLOCK) {
      throw new ModelFormatError(`${dir}: quantized with blocks of ${spec.block_size}; GGUF's Q8_0/Q4_0 need blocks of ${GGUF_QUANT_BLOCK}`, { dir });
    }
    const projectionOf = projectionIndex(config);
    const tensors: GgufTensorToWrite[] = [];
    const counts = new Map<GgmlType, number>();
    let maxScaleRounding = 0;
    const add = (hfName: string, rows: number, cols: number, ggmlType: GgmlType, data: Uint8Array): void => {
      const ggufName = ggufNameOf(hfName);
      if (ggufName === undefined) throw new ModelFormatError(`${dir}: tensor ${hfName} has no place in a GGUF ${arch} model`, { dir, tensor: hfName });
      const rotary = rotaryHeadsOf(hfName, arch, heads);
      const bytes = rotary === undefined ? data : reorderRotaryRows(data, rows, rotary, true);
      tensors.push({ name: ggufName, dims: rows === 1 ? [cols] : [cols, rows], type: ggmlType, data: bytes });
      if (rows > 1) counts.set(ggmlType, (counts.get(ggmlType) ?? 0) + 1);
    };
    for (const name of orderedNames(model)) {
      const projection = projectionOf.get(name);
      if (projection !== undefined && spec.matrices?.[projection.base]?.bits !== undefined) {
        const factor = loadProjection(model, projection.base, projection.rows, projection.cols).factors[0]!;
        if (factor.kind !== "quantized") throw new Error(`unreachable: ${projection.base} is listed as quantized`);
        const blocks = toGgmlBlocks({ ...factor, bits: factor.bits });
        maxScaleRounding = Math.max(maxScaleRounding, blocks.maxScaleRounding);
        add(FactorNames.dense(projection.base), projection.rows, projection.cols, blocks.type, blocks.data);
        continue;
      }
      if (name.endsWith(".qweight") || name.endsWith(".scales")) continue; // read with their projection above
      const info = model.info(name);
      if (!isDType(info.dtype)) throw new ModelFormatError(`${dir}: tensor ${name} is ${info.dtype}, expected F32, F16 or BF16`, { dir, tensor: name });
      const [rows, cols] = info.shape.length === 1 ? [1, info.shape[0]!] : [info.shape[0]!, info.shape[1]!];
      if (info.shape.length === 1) {
        add(name, 1, cols, GgmlType.F32, asBytes(model.tensor(name, info.shape)));
      } else if (projection !== undefined && (type === "q8_0" || type === "q4_0")) {
        const bits = exportBits(type, name, config);
        if (cols % GGUF_QUANT_BLOCK !== 0) {
          throw new ModelFormatError(`${dir}: ${name} has ${cols} columns; ${bits === 8 ? "Q8_0" : "Q4_0"} needs a multiple of ${GGUF_QUANT_BLOCK} (export it as f16 or f32)`, { dir, tensor: name });
        }
        const blocks = toGgmlBlocks(quantize(model.tensor(name, info.shape), rows, cols, bits, GGUF_QUANT_BLOCK));
        add(name, rows, cols, blocks.type, blocks.data);
      } else {
        const target = type === "f32" ? "F32" : type === "f16" ? "F16" : type === "bf16" ? "BF16" : info.dtype;
        const raw = model.rawBytes(name);
        add(name, rows, cols, FLOAT_TYPES[target], target === info.dtype ? raw : encode(toFloat32(raw, info.dtype), target));
      }
    }
    const fileType = majorityFileType(counts);
    const metadata = shapeMetadata(config, basename(dir), FILE_TYPES[fileType]);
    const tokenizer = tokenizerMetadata(dir, { bosTokenId: config.bosTokenId, eosTokenIds: config.eosTokenIds });
    if (typeof tokenizer !== "string") for (const [k, v] of tokenizer) metadata.set(k, v);
    // llama.cpp refuses a model without a vocabulary unless it says it has none (token ids only)
    else metadata.set("tokenizer.ggml.model", { type: GgufValueType.STRING, value: "no_vocab" });
    writeGguf(file, metadata, tensors);
    return { file, tensors: tensors.length, fileType, maxScaleRounding, ...(typeof tokenizer === "string" ? { tokenizerLeftOut: tokenizer } : {}) };
  } finally {
    model.close();
  }
}

/**
 * Bits of matrix `name` in a `type` export: Q4_0 keeps the LM head (lm_head, or the embeddings when
 * tied) at Q8_0, as llama.cpp's quantizer keeps its output matrix at 6 bits or more (Q8_0 when the
 * hidden size is not a multiple of 256; eFed has no Q6_K).
 */
function exportBits(type: "q8_0" | "q4_0", name: string, config: ModelDirectory["config"]): QuantBits {
  return type === "q8_0" || name === lmHeadTensorName(config) ? 8 : 4;
}

/** Dense weight name → its matrix, for the layers' seven projections, the embeddings and the LM head. */
function projectionIndex(config: ModelDirectory["config"]): Map<string, { base: string; rows: number; cols: number }> {
  const shapes = projectionShapes(config);
  const index = new Map<string, { base: string; rows: number; cols: number }>();
  for (const name of new Set([EMBED_TOKENS, lmHeadTensorName(config)])) {
    const base = FactorNames.base(name);
    index.set(name, { base, rows: config.vocabSize, cols: config.hiddenSize });
    index.set(FactorNames.packed(name), { base, rows: config.vocabSize, cols: config.hiddenSize });
  }
  for (let layer = 0; layer < config.numLayers; layer++) {
    for (const key of Object.keys(PROJECTIONS) as ProjectionKey[]) {
      const base = `model.layers.${layer}.${PROJECTIONS[key]}`;
      const [rows, cols] = shapes[key];
      index.set(FactorNames.dense(base), { base, rows, cols });
      index.set(FactorNames.packed(FactorNames.dense(base)), { base, rows, cols });
    }
  }
  return index;
}

/** Embeddings first, then layer by layer, then the final norm and head (llama.cpp's order). */
function orderedNames(model: ModelDirectory): string[] {
  const rank = (name: string): [number, string] => {
    const m = /^model\.layers\.(\d+)\./.exec(name);
    if (m !== null) return [1 + Number(m[1]), name];
    return [name.startsWith("model.embed_tokens") ? 0 : Number.MAX_SAFE_INTEGER, name];
  };
  return [...model.tensorNames()].sort((a, b) => {
    const [ra, na] = rank(a);
    const [rb, nb] = rank(b);
    return ra !== rb ? ra - rb : na < nb ? -1 : na > nb ? 1 : 0;
  });
}

function majorityFileType(counts: ReadonlyMap<GgmlType, number>): keyof typeof FILE_TYPES {
  const names: Record<GgmlType, keyof typeof FILE_TYPES> = {
    [GgmlType.F32]: "F32",
    [GgmlType.F16]: "F16",
    [GgmlType.BF16]: "BF16",
    [GgmlType.Q8_0]: "Q8_0",
    [GgmlType.Q4_0]: "Q4_0",
  };
  let best: GgmlType = GgmlType.F32;
  for (const [t, n] of counts) if (n > (counts.get(best) ?? 0)) best = t;
  return names[best];
}

function encode(values: Float32Array, dtype: DType): Uint8Array {
  if (dtype === "F16") return float32ToF16Bytes(values);
  if (dtype === "BF16") return float32ToBF16Bytes(values);
  return asBytes(values);
}

function asBytes(values: Float32Array): Uint8Array {
  return new Uint8Array(values.buffer, values.byteOffset, values.byteLength);
}
