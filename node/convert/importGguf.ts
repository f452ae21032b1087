import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { ModelFormatError } from "../../engine/errors.js";
import { accuracyLevelFor, HEAD_MATRICES, type CompressionSpec, type MatrixCompression, type QuantAccuracyLevel } from "../../engine/model/compression.js";
import { InvalidArgumentError } from "../../protocol/errors.js";
import { parseConfig } from "../../engine/model/config.js";
import { buildManifest, writeManifest } from "../../engine/model/manifest.js";
import { ModelDirectory } from "../../engine/model/modelDir.js";
import { writeSafetensors, type TensorToWrite } from "../../engine/model/safetensorsWriter.js";
import { bitsOf, dequantizeGgmlBlocks, fromGgmlBlocks, GGUF_QUANT_BLOCK } from "../../engine/model/gguf/blocks.js";
import { GgmlType, ggmlTypeName } from "../../engine/model/gguf/format.js";
import { GgufFile } from "../../engine/model/gguf/reader.js";
import { configFromMetadata, MetadataReader } from "./ggufMetadata.js";
import { putQuantized } from "../compress/quantizedTensors.js";
import { tokenizerFiles } from "./ggufTokenizer.js";
import { hfNameOf, reorderRotaryRows, rotaryHeadsOf } from "./llamaTensors.js";

export interface ImportReport {
  dir: string;
  variantId: string;
  tensors: number;
  /** ggml type → how many matrices were stored as it. */
  types: Record<string, number>;
  /** Quantized matrices eFed cannot hold in their type, dequantized to F32. */
  dequantized: string[];
  tokenizerLeftOut?: string;
}

const PROJECTION_WEIGHT = /^model\.layers\.\d+\.(self_attn\.[qkvo]_proj|mlp\.(gate|up|down)_proj)\.weight$/;
const HEAD_WEIGHT = /^(model\.embed_tokens|lm_head)\.weight$/;
const FLOAT_DTYPES: Partial<Record<GgmlType, TensorToWrite["dtype"]>> = { [GgmlType.F32]: "F32", [GgmlType.F16]: "F16", [GgmlType.BF16]: "BF16" };

/**
 * Writes the llama-family GGUF `file` as a model directory eFed serves: float tensors byte for byte
 * (rows of q/k reordered back to Hugging Face's rotary layout), Q8_0/Q4_0 projections, embeddings
 * and LM head as int8/int4 blocks of 32 without re-quantizing; config, generation
 * settings, tokenizer (byte-level BPE) and a manifest whose hash is the variant id.
 */
export interface ImportOptions {
  /** MatMulNBits accuracy level of the quantized layers (default: accuracyLevelFor their widest bits). */
  accuracyLevel?: QuantAccuracyLevel | undefined;
}

export function importGguf(file: string, outDir: string, options: ImportOptions = {}): ImportReport {
  const gguf = GgufFile.open(file);
  try {
    const r = new MetadataReader(gguf.metadata, file);
    const embed = gguf.info("token_embd.weight");
    const rawConfig = configFromMetadata(r, file, !gguf.tensors.has("output.weight"), embed.dims[1] ?? 0);
    const config = parseConfig(rawConfig, file);
    const arch = String(rawConfig.model_type);
    const heads = { attention: config.numHeads, keyValue: config.numKvHeads };
    const out = new Map<string, TensorToWrite>();
    const matrices: Record<string, MatrixCompression> = {};
    const types: Record<string, number> = {};
    const dequantized: string[] = [];
    for (const info of gguf.tensors.values()) {
      const hfName = hfNameOf(info.name);
      if (hfName === undefined) {
        throw new ModelFormatError(`${file}: tensor ${info.name} is not part of a llama-family model eFed serves`, { file, tensor: info.name });
      }
      const [cols, rows] = info.dims.length === 1 ? [info.dims[0]!, 1] : [info.dims[0]!, info.dims[1]!];
      if (info.dims.length > 2) throw new ModelFormatError(`${file}: tensor ${info.name} has ${info.dims.length} dims, expected 1 or 2`, { file, tensor: info.name });
      const rotary = rotaryHeadsOf(hfName, arch, heads);
      const raw = gguf.readBytes(info.name);
      const bytes = rotary === undefined || rows === 1 ? raw : reorderRotaryRows(raw, rows, rotary, false);
      const shape = info.dims.length === 1 ? [cols] : [rows, cols];
      if (info.dims.length === 2) types[ggmlTypeName(info.type)] = (types[ggmlTypeName(info.type)] ?? 0) + 1;
      const floatType = FLOAT_DTYPES[info.type];
      if (floatType !== undefined) {
        out.set(hfName, { dtype: floatType, shape, data: bytes });
        continue;
      }
      const quantType = info.type as GgmlType.Q8_0 | GgmlType.Q4_0;
      if (PROJECTION_WEIGHT.test(hfName) || HEAD_WEIGHT.test(hfName)) {
        putQuantized(out, hfName, fromGgmlBlocks(quantType, bytes, rows, cols));
        matrices[hfName.slice(0, -".weight".length)] = { bits: bitsOf(quantType)! };
      } else {
        const values = dequantizeGgmlBlocks(quantType, bytes, rows * cols);
        out.set(hfName, { dtype: "F32", shape, data: new Uint8Array(values.buffer) });
        dequantized.push(hfName);
      }
    }
    mkdirSync(outDir, { recursive: true });
    writeFileSync(join(outDir, "config.json"), `${JSON.stringify(rawConfig, null, 2)}\n`);
    const generation = { bos_token_id: config.bosTokenId, eos_token_id: config.eosTokenIds[0], do_sample: false };
    writeFileSync(join(outDir, "generation_config.json"), `${JSON.stringify(generation, null, 2)}\n`);
    const tokenizer = tokenizerFiles(r);
    if (typeof tokenizer !== "string") {
      writeFileSync(join(outDir, "tokenizer.json"), JSON.stringify(tokenizer.tokenizer));
      writeFileSync(join(outDir, "tokenizer_config.json"), `${JSON.stringify(tokenizer.tokenizerConfig, null, 2)}\n`);
    }
    writeSafetensors(join(outDir, "model.safetensors"), out);
    const spec = compressionOf(matrices, options.accuracyLevel);
    if (options.accuracyLevel !== undefined && spec.accuracy_level === undefined) {
      throw new InvalidArgumentError(`${file}: --accuracy-level applies to quantized layers; this model's layers are not quantized`);
    }
    const model = ModelDirectory.open(outDir);
    const variantId = writeManifest(outDir, buildManifest(model, spec));
    model.close();
    return { dir: outDir, variantId, tensors: gguf.tensors.size, types, dequantized, ...(typeof tokenizer === "string" ? { tokenizerLeftOut: tokenizer } : {}) };
  } finally {
    gguf.close();
  }
}

/**
 * The manifest's compression for the matrices that stayed quantized. The accuracy level is the
 * layers' (the head has its own, HEAD_ACCURACY_LEVEL); the method names the layers' widths, then
 * the head's when it is quantized ("int4+head-int8").
 */
function compressionOf(matrices: Record<string, MatrixCompression>, level: QuantAccuracyLevel | undefined): CompressionSpec {
  const widths = (head: boolean): number[] => [...new Set(Object.entries(matrices).filter(([name]) => HEAD_MATRICES.includes(name) === head).map(([, m]) => m.bits!))].sort();
  const [layers, head] = [widths(false), widths(true)];
  if (layers.length + head.length === 0) return { method: "none" };
  const method = [...layers.map((b) => `int${b}`), ...head.map((b) => `head-int${b}`)].join("+");
  const spec: CompressionSpec = { method, block_size: GGUF_QUANT_BLOCK, matrices };
  if (layers.length > 0) spec.accuracy_level = level ?? accuracyLevelFor(layers.includes(8) ? 8 : 4);
  return spec;
}
