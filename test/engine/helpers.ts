import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ModelDirectory } from "../../engine/model/modelDir.js";
import { Head } from "../../engine/runtime/head.js";
import { Shard } from "../../engine/runtime/shard.js";
import { tinyConfig, writeRandomModel, type HfConfig, type RandomModelOptions } from "../../engine/model/randomModel.js";

/** A scratch directory removed by `cleanup()`. */
export function scratchDir(): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), "efed-test-"));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/** Writes a random tiny model (config overrides on top of `tinyConfig`) and opens it. */
export function randomModel(root: string, name: string, overrides: HfConfig = {}, options: Partial<RandomModelOptions> = {}): ModelDirectory {
  const dir = join(root, name);
  writeRandomModel(dir, tinyConfig(overrides), { seed: 7, dtype: "F32", std: 0.15, ...options });
  return ModelDirectory.open(dir);
}

/** A tiny random model with head_dim 16 (so its shard uses the fused attention kernel and batches), all its layers and its head. */
export async function fusedModel(root: string, name: string): Promise<{ model: ModelDirectory; shard: Shard; head: Head }> {
  const model = randomModel(root, name, { hidden_size: 64, num_attention_heads: 4, num_key_value_heads: 2 });
  return { model, shard: await Shard.load(model, 0, model.config.numLayers), head: await Head.load(model) };
}

export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length ${a.length} != ${b.length}`);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

export function bitsEqual(a: Float32Array, b: Float32Array): boolean {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
}
