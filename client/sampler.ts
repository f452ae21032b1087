import { InvalidArgumentError } from "../protocol/errors.js";
import { SeededRandom } from "../engine/random.js";

export interface SamplingOptions {
  /** 0 picks the most likely token (greedy); higher values flatten the distribution. */
  temperature: number;
  /** Keep only the k most likely tokens (0 or undefined: all). */
  topK?: number;
  /** Keep the smallest set of most likely tokens whose probability reaches p (1 or undefined: all). */
  topP?: number;
  /** > 1 discourages tokens already in the sequence (HF convention: divide positive logits, multiply negative). */
  repetitionPenalty?: number;
  /** Seed of the sampling stream: the same seed and logits give the same tokens. */
  seed?: number;
}

export function validateSampling(o: SamplingOptions): SamplingOptions {
  if (!(o.temperature >= 0) || !Number.isFinite(o.temperature)) {
    throw new InvalidArgumentError(`temperature must be a finite number >= 0, got ${o.temperature}`);
  }
  if (o.topK !== undefined && (!Number.isInteger(o.topK) || o.topK < 0)) {
    throw new InvalidArgumentError(`top-k must be an integer >= 0, got ${o.topK}`);
  }
  if (o.topP !== undefined && !(o.topP > 0 && o.topP <= 1)) throw new InvalidArgumentError(`top-p must be in (0, 1], got ${o.topP}`);
  if (o.repetitionPenalty !== undefined && !(o.repetitionPenalty > 0 && Number.isFinite(o.repetitionPenalty))) {
    throw new InvalidArgumentError(`repetition penalty must be a positive number, got ${o.repetitionPenalty}`);
  }
  if (o.seed !== undefined && !Number.isSafeInteger(o.seed)) throw new InvalidArgumentError(`seed must be an integer, got ${o.seed}`);
  return o;
}

/** Picks the next token from logits, deterministically for a given seed. */
export class Sampler {
  private readonly options: SamplingOptions;
  private readonly random: SeededRandom;

  constructor(options: SamplingOptions) {
    this.options = validateSampling(options);
    this.random = new SeededRandom(options.seed ?? 0);
  }

  /** The next token given `logits` (vocab) and the tokens of the sequence so far. */
  sample(logits: Float32Array, history: readonly number[]): number {
    const scores = Float64Array.from(logits);
    const penalty = this.options.repetitionPenalty ?? 1;
    if (penalty !== 1) {
      for (const id of new Set(history)) {
        const s = scores[id]!;
        scores[id] = s > 0 ? s / penalty : s * penalty;
      }
    }
    if (this.options.temperature === 0) return argmax(scores);

    // Candidates sorted by score, best first (ties: lower id first, so order is deterministic).
    let order = Array.from(scores.keys()).sort((a, b) => scores[b]! - scores[a]! || a - b);
    const k = this.options.topK ?? 0;
    if (k > 0 && k < order.length) order = order.slice(0, k);
    const max = scores[order[0]!]!;
    let probs = order.map((id) => Math.exp((scores[id]! - max) / this.options.temperature));
    let total = probs.reduce((a, b) => a + b, 0);
    const p = this.options.topP ?? 1;
    if (p < 1) {
      let cumulative = 0;
      let keep = 0;
      while (keep < probs.length && cumulative < p * total) cumulative += probs[keep++]!;
      order = order.slice(0, keep);
      probs = probs.slice(0, keep);
      total = cumulative;
    }
    let u = this.random.uniform() * total;
    for (let i = 0; i < order.length; i++) {
      u -= probs[i]!;
      if (u < 0) return order[i]!;
    }
    return order[order.length - 1]!;
  }
}

/** Index of the largest value; the first one on ties. */
export function argmax(values: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < values.length; i++) if (values[i]! > values[best]!) best = i;
  return best;
}
