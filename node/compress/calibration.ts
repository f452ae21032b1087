import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import type { ModelDirectory } from "../../engine/model/modelDir.js";
import { TextTokenizer } from "../../engine/model/tokenizer.js";
import { EMBED_TOKENS, readHeadMatrix } from "../../engine/model/weights.js";
import { Head } from "../../engine/runtime/head.js";
import { Shard } from "../../engine/runtime/shard.js";
import { SeededRandom } from "../../engine/random.js";
import { PROBE_POINTS, ShardIO, type ProbePoint } from "../../engine/onnx/shardGraph.js";
import { InvalidArgumentError } from "../../protocol/errors.js";
import { mat, type Gemm, type Mat } from "./linalg.js";

/** King James text from the shipped model's training split (every 60th verse), ~15k tokens. */
export const DEFAULT_CALIBRATION_FILE = fileURLToPath(new URL("./data/calibration.txt", import.meta.url));

/**
 * Calibration sequences: the token ids (a leading BOS removed) cut into pieces of `seqLength − 1`,
 * each starting with BOS again when the model has one, `maxTokens` in all.
 */
export function calibrationSequencesFromIds(model: ModelDirectory, ids: readonly number[], maxTokens: number, seqLength: number): number[][] {
  const bos = model.config.bosTokenId;
  const body = bos !== undefined && ids[0] === bos ? ids.slice(1) : ids;
  const piece = bos === undefined ? seqLength : seqLength - 1;
  const sequences: number[][] = [];
  let used = 0;
  for (let i = 0; i + piece <= body.length && used + seqLength <= maxTokens; i += piece) {
    const chunk = body.slice(i, i + piece);
    sequences.push(bos === undefined ? chunk : [bos, ...chunk]);
    used += seqLength;
  }
  if (sequences.length === 0) {
    throw new InvalidArgumentError(`calibration has ${body.length} tokens, fewer than one sequence of ${seqLength}`);
  }
  return sequences;
}

/** Calibration sequences from text, tokenized with the model directory's tokenizer.json. */
export function calibrationSequences(model: ModelDirectory, text: string, maxTokens: number, seqLength: number): number[][] {
  return calibrationSequencesFromIds(model, TextTokenizer.load(model.dir).encode(text), maxTokens, seqLength);
}

export function readCalibrationText(file: string): string {
  try {
    return readFileSync(file, "utf8");
  } catch (cause) {
    throw new InvalidArgumentError(`cannot read calibration text ${file}: ${(cause as Error).message}`);
  }
}

/** Most token ids a `--calib-ids` file may hold (a bound on what a file can make us allocate). */
export const MAX_CALIBRATION_IDS = 1 << 22;

/**
 * Token ids for calibration from `file`: integers separated by whitespace or commas (a JSON array
 * reads as such), each within the model's vocabulary.
 */
export function readCalibrationIds(file: string, vocabSize: number): number[] {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (cause) {
    throw new InvalidArgumentError(`cannot read calibration ids ${file}: ${(cause as Error).message}`);
  }
  const fields = text.replace(/^\s*\[|\]\s*$/g, "").split(/[\s,]+/).filter((f) => f !== "");
  if (fields.length > MAX_CALIBRATION_IDS) {
    throw new InvalidArgumentError(`${file} holds ${fields.length} token ids, more than the ${MAX_CALIBRATION_IDS} calibration can use`);
  }
  return fields.map((field, i) => {
    const id = Number(field);
    if (!/^\d+$/.test(field) || id >= vocabSize) {
      throw new InvalidArgumentError(`${file}: entry ${i + 1} is ${JSON.stringify(field)}, expected a token id in 0..${vocabSize - 1}`);
    }
    return id;
  });
}

/**
 * Calibration sequences sampled from the dense model itself (temperature 1, seeded), for a model
 * directory that has no tokenizer to read calibration text with. Each sequence starts at BOS (or,
 * without one, at a seeded random token) and is sampled token by token to `seqLength`.
 */
export async function sampledCalibrationSequences(
  model: ModelDirectory,
  maxTokens: number,
  seqLength: number,
  seed: number,
  onProgress: (done: number, total: number) => void = () => {},
): Promise<number[][]> {
  const c = model.config;
  const count = Math.floor(maxTokens / seqLength);
  if (count === 0) throw new InvalidArgumentError(`${maxTokens} calibration tokens are fewer than one sequence of ${seqLength}`);
  const random = new SeededRandom(seed);
  const shard = await Shard.load(model, 0, c.numLayers);
  const head = await Head.load(model);
  try {
    const sequences: number[][] = [];
    for (let s = 0; s < count; s++) {
      const ids = [c.bosTokenId ?? Math.floor(random.uniform() * c.vocabSize)];
      const cache = shard.newCache();
      let next = ids;
      while (ids.length < seqLength) {
        const hidden = await shard.compute(head.embed(next), cache);
        const logits = await head.logits(hidden.subarray(hidden.length - c.hiddenSize));
        next = [sampleFromLogits(logits, random)];
        ids.push(next[0]!);
      }
      sequences.push(ids);
      onProgress(s + 1, count);
    }
    return sequences;
  } finally {
    await shard.release();
    await head.release();
  }
}

/** One token drawn from softmax(`logits`) with `random`. */
function sampleFromLogits(logits: Float32Array, random: SeededRandom): number {
  let max = -Infinity;
  for (const x of logits) if (x > max) max = x;
  let total = 0;
  const weights = new Float64Array(logits.length);
  for (let i = 0; i < logits.length; i++) total += weights[i] = Math.exp(logits[i]! - max);
  let u = random.uniform() * total;
  for (let i = 0; i < weights.length; i++) if ((u -= weights[i]!) < 0) return i;
  return weights.length - 1;
}

/** XᵀX of every projection input of one layer over all calibration tokens: (width, width) per probe point. */
export type LayerGrams = Record<ProbePoint, Mat>;

/**
 * Runs calibration sequences through the dense model one layer at a time, so only one layer's
 * graph and Gram matrices are alive at once: each call to `nextLayer` advances every sequence
 * through the next layer and returns that layer's input Gram matrices.
 */
export class LayerCalibrator {
  private readonly model: ModelDirectory;
  private readonly gemm: Gemm;
  private readonly hidden: Float32Array[];
  private layer = 0;
  readonly tokens: number;

  constructor(model: ModelDirectory, sequences: readonly number[][], gemm: Gemm) {
    this.model = model;
    this.gemm = gemm;
    const c = model.config;
    const embed = readHeadMatrix(model, EMBED_TOKENS);
    this.hidden = sequences.map((ids) => {
      const out = new Float32Array(ids.length * c.hiddenSize);
      ids.forEach((id, t) => out.set(embed.subarray(id * c.hiddenSize, (id + 1) * c.hiddenSize), t * c.hiddenSize));
      return out;
    });
    this.tokens = sequences.reduce((n, s) => n + s.length, 0);
  }

  async nextLayer(): Promise<LayerGrams> {
    const layer = this.layer++;
    const shard = await Shard.load(this.model, layer, layer + 1, { probes: true });
    const grams = new Map<ProbePoint, Mat>();
    try {
      for (let i = 0; i < this.hidden.length; i++) {
        const { hidden, probes } = await shard.computeWithProbes(this.hidden[i]!, shard.newCache());
        for (const point of PROBE_POINTS) {
          const x = probes.get(ShardIO.probe(layer, point))!;
          const width = x.length / (this.hidden[i]!.length / this.model.config.hiddenSize);
          const g = await this.gemm.gram(mat(x.length / width, width, Float64Array.from(x)));
          const acc = grams.get(point);
          if (acc === undefined) grams.set(point, g);
          else for (let j = 0; j < g.data.length; j++) acc.data[j]! += g.data[j]!;
        }
        this.hidden[i] = hidden;
      }
    } finally {
      await shard.release();
    }
    return Object.fromEntries(grams) as LayerGrams;
  }
}
