import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { ModelDirectory } from "../../engine/model/modelDir.js";
import { TextTokenizer } from "../../engine/model/tokenizer.js";
import { SeededRandom } from "../../engine/random.js";
import { Head } from "../../engine/runtime/head.js";
import type { RuntimeOptions } from "../../engine/runtime/session.js";
import { Shard } from "../../engine/runtime/shard.js";
import { InvalidArgumentError } from "../../protocol/errors.js";

/** 48 openings of held-out (validation) King James verses. */
export const DEFAULT_PROMPTS_FILE = fileURLToPath(new URL("./data/eval-prompts.txt", import.meta.url));

export interface CorpusOptions {
  /** Tokens to sample in all (default 20,000). */
  tokens?: number;
  /** Longest sequence (default 256, capped by the model's context). */
  seqLength?: number;
  seed?: number;
}

export const EVAL_DEFAULTS = { tokens: 20_000, seqLength: 256, seed: 1 } as const;

/** A whole model in this process: embeddings and head plus all layers as one shard. */
class WholeModel {
  private constructor(
    readonly model: ModelDirectory,
    readonly head: Head,
    readonly shard: Shard,
  ) {}

  static async load(dir: string, options: RuntimeOptions): Promise<WholeModel> {
    const model = ModelDirectory.open(dir);
    const head = await Head.load(model, { threads: 1 });
    return new WholeModel(model, head, await Shard.load(model, 0, model.config.numLayers, options));
  }

  /** Logits (T, vocab) at every position of `ids`, from a fresh cache. */
  async logits(ids: readonly number[]): Promise<Float32Array> {
    return this.head.logits(await this.shard.compute(this.head.embed(ids), this.shard.newCache()));
  }

  async release(): Promise<void> {
    await this.head.release();
    await this.shard.release();
    this.model.close();
  }
}

export function readPrompts(file: string): string[] {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (cause) {
    throw new InvalidArgumentError(`cannot read prompts ${file}: ${(cause as Error).message}`);
  }
  const prompts = text.split("\n").filter((line) => line.trim() !== "");
  if (prompts.length === 0) throw new InvalidArgumentError(`${file} holds no prompts (one per line)`);
  return prompts;
}

/**
 * Text the reference model writes itself: each prompt continued by ancestral sampling
 * (temperature 1, full vocabulary) up to `seqLength` tokens or EOS, prompts reused with fresh
 * randomness until `tokens` are sampled. Measuring on the reference's own distribution needs no
 * downloaded dataset and weighs each position by how likely the reference finds it.
 */
export async function sampleCorpus(referenceDir: string, prompts: readonly string[], options: CorpusOptions = {}): Promise<number[][]> {
  const tokens = options.tokens ?? EVAL_DEFAULTS.tokens;
  const rng = new SeededRandom(options.seed ?? EVAL_DEFAULTS.seed);
  const tokenizer = TextTokenizer.load(referenceDir);
  const ref = await WholeModel.load(referenceDir, { threads: 1 });
  const { head, shard } = ref;
  const c = ref.model.config;
  const seqLength = Math.min(options.seqLength ?? EVAL_DEFAULTS.seqLength, c.maxPositionEmbeddings);
  const eos = new Set(c.eosTokenIds);
  const corpus: number[][] = [];
  let total = 0;
  try {
    for (let i = 0; total < tokens; i++) {
      const ids = tokenizer.encode(prompts[i % prompts.length]!).slice(0, seqLength - 1);
      const cache = shard.newCache();
      let logits = await head.logits(await shard.compute(head.embed(ids), cache));
      let last = logits.subarray(logits.length - c.vocabSize);
      while (ids.length < seqLength) {
        const next = sampleCategorical(last, rng);
        ids.push(next);
        if (eos.has(next) || ids.length === seqLength) break;
        logits = await head.logits(await shard.compute(head.embed([next]), cache));
        last = logits;
      }
      corpus.push(ids);
      total += ids.length;
    }
  } finally {
    await ref.release();
  }
  return corpus;
}

function sampleCategorical(logits: Float32Array, rng: SeededRandom): number {
  let max = -Infinity;
  for (const v of logits) max = Math.max(max, v);
  let sum = 0;
  for (const v of logits) sum += Math.exp(v - max);
  let u = rng.uniform() * sum;
  for (let i = 0; i < logits.length; i++) {
    u -= Math.exp(logits[i]! - max);
    if (u <= 0) return i;
  }
  return logits.length - 1;
}

export interface EvalResult {
  /** Positions compared (every position that predicts a next token). */
  positions: number;
  meanKl: number;
  p99Kl: number;
  /** Fraction of positions where both models' most likely next token is the same. */
  top1Agreement: number;
  /** Perplexity of the candidate on the corpus over the reference's perplexity. */
  perplexityRatio: number;
  referencePerplexity: number;
}

/** Log-softmax of row `t` of (T, V) logits, in float64. */
function logSoftmaxRow(logits: Float32Array, t: number, V: number): Float64Array {
  const row = logits.subarray(t * V, (t + 1) * V);
  let max = -Infinity;
  for (const v of row) max = Math.max(max, v);
  let sum = 0;
  for (const v of row) sum += Math.exp(v - max);
  const logZ = max + Math.log(sum);
  return Float64Array.from(row, (v) => v - logZ);
}

function argmax(a: Float64Array): number {
  let best = 0;
  for (let i = 1; i < a.length; i++) if (a[i]! > a[best]!) best = i;
  return best;
}

/**
 * KL(reference ‖ candidate) over the full vocabulary at every position of `corpus`, top-1
 * agreement, and the perplexity ratio on the corpus's own next tokens.
 */
export async function evaluateModel(referenceDir: string, candidateDir: string, corpus: readonly number[][], options: RuntimeOptions = {}): Promise<EvalResult> {
  const ref = await WholeModel.load(referenceDir, options);
  const cand = await WholeModel.load(candidateDir, options);
  const V = ref.model.config.vocabSize;
  if (cand.model.config.vocabSize !== V) {
    throw new InvalidArgumentError(`the models' vocabularies differ: ${V} and ${cand.model.config.vocabSize} tokens`);
  }
  const kls: number[] = [];
  let agree = 0;
  let nllRef = 0;
  let nllCand = 0;
  try {
    for (const ids of corpus) {
      const [lr, lc] = [await ref.logits(ids), await cand.logits(ids)];
      for (let t = 0; t + 1 < ids.length; t++) {
        const p = logSoftmaxRow(lr, t, V);
        const q = logSoftmaxRow(lc, t, V);
        let kl = 0;
        for (let i = 0; i < V; i++) kl += Math.exp(p[i]!) * (p[i]! - q[i]!);
        kls.push(Math.max(0, kl));
        if (argmax(p) === argmax(q)) agree++;
        nllRef -= p[ids[t + 1]!]!;
        nllCand -= q[ids[t + 1]!]!;
      }
    }
  } finally {
    await ref.release();
    await cand.release();
  }
  const n = kls.length;
  const sorted = [...kls].sort((a, b) => a - b);
  return {
    positions: n,
    meanKl: kls.reduce((a, b) => a + b, 0) / n,
    p99Kl: sorted[Math.min(n - 1, Math.ceil(0.99 * n) - 1)]!,
    top1Agreement: agree / n,
    perplexityRatio: Math.exp((nllCand - nllRef) / n),
    referencePerplexity: Math.exp(nllRef / n),
  };
}
