import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import type { ModelDirectory } from "../../engine/model/modelDir.js";
import { TextTokenizer } from "../../engine/model/tokenizer.js";
import { Shard } from "../../engine/runtime/shard.js";
import { PROBE_POINTS, ShardIO, type ProbePoint } from "../../engine/onnx/shardGraph.js";
import { InvalidArgumentError } from "../../protocol/errors.js";
import { mat, type Gemm, type Mat } from "./linalg.js";

/** King James text from the shipped model's training split (every 60th verse), ~15k tokens. */
export const DEFAULT_CALIBRATION_FILE = fileURLToPath(new URL("./data/calibration.txt", import.meta.url));

/**
 * Calibration sequences: the text's tokens (BOS removed) cut into pieces of `seqLength − 1`,
 * each starting with BOS again when the model has one, `maxTokens` in all.
 */
export function calibrationSequences(model: ModelDirectory, text: string, maxTokens: number, seqLength: number): number[][] {
  const bos = model.config.bosTokenId;
  let ids = TextTokenizer.load(model.dir).encode(text);
  if (bos !== undefined && ids[0] === bos) ids = ids.slice(1);
  const piece = bos === undefined ? seqLength : seqLength - 1;
  const sequences: number[][] = [];
  let used = 0;
  for (let i = 0; i + piece <= ids.length && used + seqLength <= maxTokens; i += piece) {
    const chunk = ids.slice(i, i + piece);
    sequences.push(bos === undefined ? chunk : [bos, ...chunk]);
    used += seqLength;
  }
  if (sequences.length === 0) {
    throw new InvalidArgumentError(`calibration text has ${ids.length} tokens, fewer than one sequence of ${seqLength}`);
  }
  return sequences;
}

export function readCalibrationText(file: string): string {
  try {
    return readFileSync(file, "utf8");
  } catch (cause) {
    throw new InvalidArgumentError(`cannot read calibration text ${file}: ${(cause as Error).message}`);
  }
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
    const embed = model.tensor("model.embed_tokens.weight", [c.vocabSize, c.hiddenSize]);
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
