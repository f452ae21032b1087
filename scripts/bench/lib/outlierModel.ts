import { copyFileSync, existsSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { ModelDirectory } from "../../../engine/model/modelDir.js";
import { writeSafetensors, type TensorToWrite } from "../../../engine/model/safetensorsWriter.js";
import { expectedTensors } from "../../../engine/model/weights.js";
import { SeededRandom } from "../../../engine/random.js";

export interface OutlierOptions {
  /** How many hidden channels become outliers (the same ones in every layer, as in LLaMA). */
  channels: number;
  /** How much louder they get; a power of two keeps a rescaled model's function bit-exact. */
  scale: number;
  seed: number;
  /**
   * "rescaled": the projections' input columns are divided by `scale`, so the model computes exactly
   * what the source does and only where the weights' energy sits moves. "amplified": the columns are
   * kept, so loud inputs meet ordinary weights as in LLaMA, and the model computes something else.
   */
  mode: "rescaled" | "amplified";
}

export interface OutlierModel {
  dir: string;
  /** The hidden channels made loud, ascending. */
  channels: number[];
}

/** Files copied alongside the weights so the new directory tokenizes and generates like the source. */
const SIDE_FILES = ["config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json"];

/**
 * Writes a copy of `sourceDir` whose projections see a few hidden channels `scale`× louder than the
 * rest, the activation outliers LLaMA-scale models show: both RMSNorm weights are multiplied by
 * `scale` on those channels. In "rescaled" mode the matching input columns of the projections that
 * read the norms' outputs (q, k, v; gate, up) are divided by it, and with a power-of-two scale every
 * product is unchanged bit for bit. Weights are written as F32 so no rounding enters; the source's
 * manifest is not copied (the weights differ).
 */
export function writeOutlierModel(sourceDir: string, dir: string, options: OutlierOptions): OutlierModel {
  const { channels: count, scale, seed, mode } = options;
  if (!(Number.isInteger(Math.log2(scale)) && scale > 1)) throw new Error(`outlier scale ${scale}: expected a power of two above 1`);
  const source = ModelDirectory.open(sourceDir);
  try {
    const { hiddenSize } = source.config;
    if (!(Number.isInteger(count) && count >= 1 && count <= hiddenSize)) {
      throw new Error(`outlier channels ${count}: expected an integer in 1..${hiddenSize}`);
    }
    const channels = pickChannels(hiddenSize, count, seed);
    const tensors = new Map<string, TensorToWrite>();
    for (const [name, shape] of expectedTensors(source.config)) {
      const values = source.tensor(name, shape);
      if (/\.(input_layernorm|post_attention_layernorm)\.weight$/.test(name)) {
        for (const c of channels) values[c]! *= scale;
      } else if (mode === "rescaled" && /\.(self_attn\.[qkv]_proj|mlp\.(gate|up)_proj)\.weight$/.test(name)) {
        const [rows, cols] = shape as [number, number];
        for (let r = 0; r < rows; r++) for (const c of channels) values[r * cols + c]! /= scale;
      }
      tensors.set(name, { dtype: "F32", shape, data: new Uint8Array(values.buffer, values.byteOffset, values.byteLength) });
    }
    mkdirSync(dir, { recursive: true });
    for (const file of SIDE_FILES) if (existsSync(join(sourceDir, file))) copyFileSync(join(sourceDir, file), join(dir, file));
    writeSafetensors(join(dir, "model.safetensors"), tensors, { format: "pt" });
    return { dir, channels };
  } finally {
    source.close();
  }
}

/** `count` distinct channels of `hiddenSize`, drawn by `seed`, ascending. */
function pickChannels(hiddenSize: number, count: number, seed: number): number[] {
  const rng = new SeededRandom(seed);
  const picked = new Set<number>();
  while (picked.size < count) picked.add(Math.floor(rng.uniform() * hiddenSize));
  return [...picked].sort((a, b) => a - b);
}
