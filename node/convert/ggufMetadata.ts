import { ModelFormatError } from "../../engine/errors.js";
import type { ModelConfig } from "../../engine/model/config.js";
import { GgufValueType, type GgufScalarType, type GgufValue } from "../../engine/model/gguf/format.js";

/** What the metadata of a llama-family GGUF says about the model's shape (llama.cpp's keys). */

/** The GGUF architecture of a Hugging Face model type. */
export function ggufArchitectureOf(config: ModelConfig): string {
  return config.modelType === "qwen2" ? "qwen2" : "llama"; // mistral's layers are llama's
}

const u32 = (value: number): GgufValue => ({ type: GgufValueType.UINT32, value });
const f32 = (value: number): GgufValue => ({ type: GgufValueType.FLOAT32, value });
const str = (value: string): GgufValue => ({ type: GgufValueType.STRING, value });

/** llama.cpp's `general.file_type` for a model mostly stored as `type`. */
export const FILE_TYPES = { F32: 0, F16: 1, Q4_0: 2, Q8_0: 7, BF16: 32 } as const;

/** The metadata describing `config`'s shape, keyed as llama.cpp reads it. */
export function shapeMetadata(config: ModelConfig, name: string, fileType: number): Map<string, GgufValue> {
  if (config.ropeScaling !== undefined) {
    throw new ModelFormatError(`${name}: rope_scaling (llama3) has no GGUF export yet; export a model without it`, { model: name });
  }
  const arch = ggufArchitectureOf(config);
  const m = new Map<string, GgufValue>([
    ["general.architecture", str(arch)],
    ["general.name", str(name)],
    ["general.file_type", u32(fileType)],
    [`${arch}.context_length`, u32(config.maxPositionEmbeddings)],
    [`${arch}.embedding_length`, u32(config.hiddenSize)],
    [`${arch}.block_count`, u32(config.numLayers)],
    [`${arch}.feed_forward_length`, u32(config.intermediateSize)],
    [`${arch}.attention.head_count`, u32(config.numHeads)],
    [`${arch}.attention.head_count_kv`, u32(config.numKvHeads)],
    [`${arch}.attention.key_length`, u32(config.headDim)],
    [`${arch}.attention.value_length`, u32(config.headDim)],
    [`${arch}.rope.dimension_count`, u32(config.headDim)],
    [`${arch}.attention.layer_norm_rms_epsilon`, f32(config.rmsNormEps)],
    [`${arch}.rope.freq_base`, f32(config.ropeTheta)],
    [`${arch}.vocab_size`, u32(config.vocabSize)],
  ]);
  return m;
}

/** Reads typed values out of a GGUF's metadata, naming the file and key when one is missing or mistyped. */
export class MetadataReader {
  constructor(
    private readonly metadata: ReadonlyMap<string, GgufValue>,
    private readonly path: string,
  ) {}

  has(key: string): boolean {
    return this.metadata.has(key);
  }

  number(key: string, fallback?: number): number {
    const entry = this.metadata.get(key);
    if (entry === undefined) {
      if (fallback !== undefined) return fallback;
      throw new ModelFormatError(`${this.path}: metadata ${key} is missing`, { path: this.path, key });
    }
    if (entry.type === GgufValueType.ARRAY || !(typeof entry.value === "number" || typeof entry.value === "bigint")) {
      throw new ModelFormatError(`${this.path}: metadata ${key} is not a number`, { path: this.path, key });
    }
    return Number(entry.value);
  }

  string(key: string): string | undefined {
    const entry = this.metadata.get(key);
    if (entry === undefined) return undefined;
    if (entry.type !== GgufValueType.STRING) throw new ModelFormatError(`${this.path}: metadata ${key} is not a string`, { path: this.path, key });
    return entry.value as string;
  }

  boolean(key: string): boolean | undefined {
    const entry = this.metadata.get(key);
    if (entry === undefined) return undefined;
    if (entry.type !== GgufValueType.BOOL) throw new ModelFormatError(`${this.path}: metadata ${key} is not a boolean`, { path: this.path, key });
    return entry.value as boolean;
  }

  array<T extends number | string>(key: string, kind: "number" | "string"): T[] | undefined {
    const entry = this.metadata.get(key);
    if (entry === undefined) return undefined;
    const ok = entry.type === GgufValueType.ARRAY && (kind === "string" ? entry.elementType === GgufValueType.STRING : entry.elementType !== GgufValueType.STRING);
    if (!ok) throw new ModelFormatError(`${this.path}: metadata ${key} is not an array of ${kind}s`, { path: this.path, key });
    return (entry.value as (number | bigint | string)[]).map((v) => (typeof v === "bigint" ? Number(v) : v)) as T[];
  }
}

/** The Hugging Face `config.json` of a GGUF's metadata (architectures llama and qwen2). */
export function configFromMetadata(r: MetadataReader, path: string, tiedEmbeddings: boolean, vocabSize: number): Record<string, unknown> {
  const arch = r.string("general.architecture");
  if (arch !== "llama" && arch !== "qwen2") {
    throw new ModelFormatError(`${path}: architecture ${JSON.stringify(arch)} is not one eFed serves (llama, qwen2)`, { path, architecture: arch });
  }
  if (r.has(`${arch}.rope.scaling.type`) && r.string(`${arch}.rope.scaling.type`) !== "none") {
    throw new ModelFormatError(`${path}: rope scaling ${r.string(`${arch}.rope.scaling.type`)} is not imported yet`, { path });
  }
  const hidden = r.number(`${arch}.embedding_length`);
  const heads = r.number(`${arch}.attention.head_count`);
  const headDim = r.number(`${arch}.attention.key_length`, r.number(`${arch}.rope.dimension_count`, hidden / heads));
  return {
    architectures: [arch === "qwen2" ? "Qwen2ForCausalLM" : "LlamaForCausalLM"],
    model_type: arch,
    hidden_size: hidden,
    intermediate_size: r.number(`${arch}.feed_forward_length`),
    num_hidden_layers: r.number(`${arch}.block_count`),
    num_attention_heads: heads,
    num_key_value_heads: r.number(`${arch}.attention.head_count_kv`, heads),
    head_dim: headDim,
    rms_norm_eps: r.number(`${arch}.attention.layer_norm_rms_epsilon`),
    rope_theta: r.number(`${arch}.rope.freq_base`, 10000),
    max_position_embeddings: r.number(`${arch}.context_length`),
    vocab_size: vocabSize,
    tie_word_embeddings: tiedEmbeddings,
    hidden_act: "silu",
    bos_token_id: r.has("tokenizer.ggml.bos_token_id") ? r.number("tokenizer.ggml.bos_token_id") : undefined,
    eos_token_id: r.has("tokenizer.ggml.eos_token_id") ? r.number("tokenizer.ggml.eos_token_id") : undefined,
    ...(arch === "llama" ? { attention_bias: false, mlp_bias: false } : {}),
  };
}

export function arrayValue(elementType: GgufScalarType, value: (number | string | boolean)[]): GgufValue {
  return { type: GgufValueType.ARRAY, elementType, value };
}
