import { ModelFormatError } from "../errors.js";

export const SUPPORTED_MODEL_TYPES = ["llama", "mistral", "qwen2"] as const;
export type ModelType = (typeof SUPPORTED_MODEL_TYPES)[number];

/** Llama 3 style frequency-dependent RoPE scaling. */
export interface Llama3RopeScaling {
  factor: number;
  lowFreqFactor: number;
  highFreqFactor: number;
  originalMaxPositionEmbeddings: number;
}

/** The architecture of a Llama-family model, validated. Field names follow the engine, not HF. */
export interface ModelConfig {
  modelType: ModelType;
  vocabSize: number;
  hiddenSize: number;
  intermediateSize: number;
  numLayers: number;
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  rmsNormEps: number;
  ropeTheta: number;
  ropeScaling: Llama3RopeScaling | undefined;
  maxPositionEmbeddings: number;
  tieWordEmbeddings: boolean;
  /** q/k/v projections carry biases (qwen2; llama with attention_bias). */
  qkvBias: boolean;
  /** The output projection carries a bias (llama with attention_bias). */
  oBias: boolean;
  bosTokenId: number | undefined;
  eosTokenIds: number[];
}

/** Parses and validates a Hugging Face `config.json` object; `file` names it in errors. */
export function parseConfig(raw: unknown, file: string): ModelConfig {
  if (typeof raw !== "object" || raw === null) throw new ModelFormatError(`${file}: not a JSON object`, { file });
  const c = raw as Record<string, unknown>;
  const bad = (field: string, expected: string): never => {
    throw new ModelFormatError(`${file}: ${field} is ${JSON.stringify(c[field])}, expected ${expected}`, { file, field });
  };
  const positiveInt = (field: string): number => {
    const v = c[field];
    return typeof v === "number" && Number.isSafeInteger(v) && v > 0 ? v : bad(field, "a positive integer");
  };
  const positiveNumber = (field: string, fallback?: number): number => {
    const v = c[field] ?? fallback;
    return typeof v === "number" && Number.isFinite(v) && v > 0 ? v : bad(field, "a positive number");
  };

  const modelType = c.model_type;
  if (typeof modelType !== "string" || !(SUPPORTED_MODEL_TYPES as readonly string[]).includes(modelType)) {
    throw new ModelFormatError(
      `${file}: unsupported model_type ${JSON.stringify(modelType)} (supported: ${SUPPORTED_MODEL_TYPES.join(", ")})`,
      { file, field: "model_type" },
    );
  }
  const hiddenSize = positiveInt("hidden_size");
  const numHeads = positiveInt("num_attention_heads");
  const numKvHeads = c.num_key_value_heads === undefined || c.num_key_value_heads === null ? numHeads : positiveInt("num_key_value_heads");
  if (numHeads % numKvHeads !== 0) bad("num_key_value_heads", `a divisor of num_attention_heads (${numHeads})`);
  let headDim: number;
  if (c.head_dim === undefined || c.head_dim === null) {
    if (hiddenSize % numHeads !== 0) bad("hidden_size", `a multiple of num_attention_heads (${numHeads}) or an explicit head_dim`);
    headDim = hiddenSize / numHeads;
  } else headDim = positiveInt("head_dim");
  if (headDim % 2 !== 0) bad("head_dim", "an even number (RoPE rotates pairs)");

  const attentionBias = c.attention_bias === true;
  const eos = c.eos_token_id;
  const eosTokenIds = typeof eos === "number" ? [eos] : Array.isArray(eos) ? eos.filter((x): x is number => typeof x === "number") : [];
  return {
    modelType: modelType as ModelType,
    vocabSize: positiveInt("vocab_size"),
    hiddenSize,
    intermediateSize: positiveInt("intermediate_size"),
    numLayers: positiveInt("num_hidden_layers"),
    numHeads,
    numKvHeads,
    headDim,
    rmsNormEps: positiveNumber("rms_norm_eps", 1e-6),
    ropeTheta: positiveNumber("rope_theta", 10000),
    ropeScaling: parseRopeScaling(c.rope_scaling, file),
    maxPositionEmbeddings: positiveInt("max_position_embeddings"),
    tieWordEmbeddings: c.tie_word_embeddings === true,
    qkvBias: modelType === "qwen2" || attentionBias,
    oBias: modelType !== "qwen2" && attentionBias,
    bosTokenId: typeof c.bos_token_id === "number" ? c.bos_token_id : undefined,
    eosTokenIds,
  };
}

function parseRopeScaling(raw: unknown, file: string): Llama3RopeScaling | undefined {
  if (raw === undefined || raw === null) return undefined;
  const r = raw as Record<string, unknown>;
  const type = r.rope_type ?? r.type;
  if (type === "default") return undefined;
  if (type !== "llama3") {
    throw new ModelFormatError(`${file}: unsupported rope_scaling type ${JSON.stringify(type)} (supported: llama3)`, {
      file,
      field: "rope_scaling",
    });
  }
  const num = (k: string): number => {
    const v = r[k];
    if (typeof v !== "number" || !(v > 0)) {
      throw new ModelFormatError(`${file}: rope_scaling.${k} is ${JSON.stringify(v)}, expected a positive number`, { file });
    }
    return v;
  };
  return {
    factor: num("factor"),
    lowFreqFactor: num("low_freq_factor"),
    highFreqFactor: num("high_freq_factor"),
    originalMaxPositionEmbeddings: num("original_max_position_embeddings"),
  };
}

/**
 * RoPE inverse frequencies (headDim/2 of them), in float64, with Llama 3 scaling applied when
 * configured: θ^(-2i/d), long wavelengths divided by `factor`, a smooth blend in between.
 */
export function ropeInverseFrequencies(config: ModelConfig): Float64Array {
  const half = config.headDim / 2;
  const inv = new Float64Array(half);
  for (let i = 0; i < half; i++) inv[i] = 1 / config.ropeTheta ** ((2 * i) / config.headDim);
  const s = config.ropeScaling;
  if (s === undefined) return inv;
  const lowFreqWavelen = s.originalMaxPositionEmbeddings / s.lowFreqFactor;
  const highFreqWavelen = s.originalMaxPositionEmbeddings / s.highFreqFactor;
  for (let i = 0; i < half; i++) {
    const wavelen = (2 * Math.PI) / inv[i]!;
    if (wavelen > lowFreqWavelen) inv[i] = inv[i]! / s.factor;
    else if (wavelen >= highFreqWavelen) {
      const smooth = (s.originalMaxPositionEmbeddings / wavelen - s.lowFreqFactor) / (s.highFreqFactor - s.lowFreqFactor);
      inv[i] = (1 - smooth) * (inv[i]! / s.factor) + smooth * inv[i]!;
    }
  }
  return inv;
}
