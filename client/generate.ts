import { EngineError } from "../engine/errors.js";
import type { TokenHead } from "./batchingHead.js";
import { Sampler, type SamplingOptions } from "./sampler.js";

/** One sequence's passage through all layers: hidden states in, hidden states out, state kept inside. */
export interface LayerSequence {
  forward(hidden: Float32Array): Promise<Float32Array>;
  close(): Promise<void>;
}

/** Whatever runs the transformer layers for a client: shards in this process, or servers on a route. */
export interface LayerPipeline {
  openSequence(): Promise<LayerSequence>;
}

export interface GenerateOptions extends SamplingOptions {
  maxTokens: number;
  /** Stop when one of these is produced (it is included in the output). */
  stopTokens?: readonly number[];
}

export interface GenerationResult {
  promptIds: number[];
  generatedIds: number[];
  /** Why generation ended. */
  finish: "length" | "stop";
}

/**
 * The client's generation loop: embed the prompt, prefill it through the layers in one step, then
 * decode one token per step, sampling from the LM head's logits of the last position.
 */
export async function generate(
  head: TokenHead,
  pipeline: LayerPipeline,
  promptIds: readonly number[],
  options: GenerateOptions,
): Promise<GenerationResult> {
  if (promptIds.length === 0) throw new EngineError("EMPTY_PROMPT", "the prompt has no tokens");
  if (!Number.isInteger(options.maxTokens) || options.maxTokens < 0) {
    throw new EngineError("BAD_MAX_TOKENS", `max tokens must be an integer >= 0, got ${options.maxTokens}`);
  }
  const sampler = new Sampler(options);
  const stop = new Set(options.stopTokens ?? []);
  const H = head.config.hiddenSize;
  const sequence = await pipeline.openSequence();
  const history = [...promptIds];
  const generatedIds: number[] = [];
  try {
    let input: readonly number[] = promptIds;
    while (generatedIds.length < options.maxTokens) {
      const hidden = await sequence.forward(head.embed(input));
      const logits = await head.logits(hidden.subarray(hidden.length - H));
      const next = sampler.sample(logits, history);
      generatedIds.push(next);
      history.push(next);
      if (stop.has(next)) return { promptIds: [...promptIds], generatedIds, finish: "stop" };
      input = [next];
    }
    return { promptIds: [...promptIds], generatedIds, finish: "length" };
  } finally {
    await sequence.close();
  }
}
