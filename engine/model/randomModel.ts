import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { SeededRandom } from "../random.js";
import { parseConfig, type ModelConfig } from "./config.js";
import { float32ToBF16Bytes, float32ToF16Bytes, type DType } from "../../protocol/dtype.js";
import { writeSafetensors, type TensorToWrite } from "./safetensorsWriter.js";
import { expectedTensors } from "./weights.js";

/** A Hugging Face config.json object (snake_case, as HF writes it). */
export type HfConfig = Record<string, unknown>;

export interface RandomModelOptions {
  seed: number;
  dtype: DType;
  /** Standard deviation of projection weights (default 0.02, as HF initializes). */
  std?: number;
}

/**
 * Writes a model directory with seeded random weights for `hfConfig`: config.json and
 * model.safetensors. Norm weights are drawn around 1 so every layer matters; used by tests and
 * by speed benchmarks at the shapes of real public models.
 */
export function writeRandomModel(dir: string, hfConfig: HfConfig, options: RandomModelOptions): ModelConfig {
  mkdirSync(dir, { recursive: true });
  const configPath = join(dir, "config.json");
  const config = parseConfig(hfConfig, configPath);
  const rng = new SeededRandom(options.seed);
  const std = options.std ?? 0.02;
  const tensors = new Map<string, TensorToWrite>();
  for (const [name, shape] of expectedTensors(config)) {
    const n = shape.reduce((a, d) => a * d, 1);
    const values = new Float32Array(n);
    const isNorm = name.endsWith("norm.weight");
    const isBias = name.endsWith(".bias");
    for (let i = 0; i < n; i++) values[i] = isNorm ? 1 + 0.1 * rng.normal() : (isBias ? 0.1 : std) * rng.normal();
    tensors.set(name, { dtype: options.dtype, shape, data: encode(values, options.dtype) });
  }
  writeFileSync(configPath, JSON.stringify(hfConfig, null, 2) + "\n");
  writeSafetensors(join(dir, "model.safetensors"), tensors, { format: "pt" });
  return config;
}

function encode(values: Float32Array, dtype: DType): Uint8Array {
  if (dtype === "F16") return float32ToF16Bytes(values);
  if (dtype === "BF16") return float32ToBF16Bytes(values);
  return new Uint8Array(values.buffer);
}

/** Config of a small Llama-family model for tests; override any field. */
export function tinyConfig(overrides: HfConfig = {}): HfConfig {
  return {
    architectures: ["LlamaForCausalLM"],
    model_type: "llama",
    vocab_size: 97,
    hidden_size: 48,
    intermediate_size: 80,
    num_hidden_layers: 4,
    num_attention_heads: 4,
    num_key_value_heads: 2,
    max_position_embeddings: 256,
    rms_norm_eps: 1e-5,
    rope_theta: 10000,
    tie_word_embeddings: false,
    bos_token_id: 1,
    eos_token_id: 2,
    torch_dtype: "float32",
    ...overrides,
  };
}

/** The exact shapes of public models, for speed benchmarks (weights are random). */
export const PUBLIC_SHAPES: Record<string, HfConfig> = {
  "smollm2-135m": {
    architectures: ["LlamaForCausalLM"],
    model_type: "llama",
    vocab_size: 49152,
    hidden_size: 576,
    intermediate_size: 1536,
    num_hidden_layers: 30,
    num_attention_heads: 9,
    num_key_value_heads: 3,
    max_position_embeddings: 8192,
    rms_norm_eps: 1e-5,
    rope_theta: 100000,
    tie_word_embeddings: true,
    bos_token_id: 1,
    eos_token_id: 2,
    torch_dtype: "bfloat16",
  },
  "tinyllama-1.1b": {
    architectures: ["LlamaForCausalLM"],
    model_type: "llama",
    vocab_size: 32000,
    hidden_size: 2048,
    intermediate_size: 5632,
    num_hidden_layers: 22,
    num_attention_heads: 32,
    num_key_value_heads: 4,
    max_position_embeddings: 2048,
    rms_norm_eps: 1e-5,
    rope_theta: 10000,
    tie_word_embeddings: false,
    bos_token_id: 1,
    eos_token_id: 2,
    torch_dtype: "bfloat16",
  },
};
