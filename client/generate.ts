import { EngineError } from "../engine/errors.js";
import { EFedError } from "../protocol/errors.js";
import type { TokenHead } from "./batchingHead.js";
import { ReceiptError } from "./routeError.js";
import { Sampler, type SamplingOptions } from "./sampler.js";

/** One sequence's passage through all layers: hidden states in, hidden states out, state kept inside. */
export interface LayerSequence {
  compute(hidden: Float32Array): Promise<Float32Array>;
  close(): Promise<void>;
}

/** Whatever runs the transformer layers for a client: shards in this process, or servers on a route. */
export interface LayerPipeline {
  /** A new sequence that will hold at most `maxLength` tokens (when not given, the pipeline's own limit). */
  openSequence(maxLength?: number): Promise<LayerSequence>;
}

export interface GenerateOptions extends SamplingOptions {
  maxTokens: number;
  /** Stop when one of these is produced (it is included in the output). */
  stopTokens?: readonly number[];
}

export interface GenerationResult {
  promptIds: number[];
  generatedIds: number[];
  /** Why generation ended ("error": see GenerationError). */
  finish: "length" | "stop" | "error";
}

/**
 * Generation failed part way: `partial` holds the tokens generated before the failure (`finish:
 * "error"`), and `cause` the failure itself, whose message this error repeats. When the failure is a
 * receipt that does not check out for step k, the tokens of step k on are left out: they were
 * computed from an output that cannot be trusted.
 */
export class GenerationError extends EFedError {
  constructor(
    readonly partial: GenerationResult,
    cause: Error,
  ) {
    super(cause instanceof EFedError ? cause.code : "GENERATION_FAILED", cause.message, { cause, details: { generatedTokens: partial.generatedIds.length } });
  }
}

/**
 * The client's generation loop: embed the prompt, prefill it through the layers in one step, then
 * decode one token per step, sampling from the LM head's logits of the last position. Step i gives
 * generated token i. Refuses before any step when the prompt and `maxTokens` together exceed the
 * model's context; a failure once the sequence is open throws a GenerationError carrying the partial
 * result (opening it fails with the pipeline's own error: nothing was generated).
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
  const length = sequenceLength(promptIds.length, options.maxTokens, head.config.maxPositionEmbeddings);
  const sampler = new Sampler(options);
  const stop = new Set(options.stopTokens ?? []);
  const H = head.config.hiddenSize;
  const sequence = await pipeline.openSequence(length);
  const history = [...promptIds];
  const generatedIds: number[] = [];
  let result: GenerationResult;
  try {
    let input: readonly number[] = promptIds;
    let finish: GenerationResult["finish"] = "length";
    while (generatedIds.length < options.maxTokens) {
      const hidden = await sequence.compute(head.embed(input));
      const logits = await head.logits(hidden.subarray(hidden.length - H));
      const next = sampler.sample(logits, history);
      generatedIds.push(next);
      history.push(next);
      if (stop.has(next)) {
        finish = "stop";
        break;
      }
      input = [next];
    }
    result = { promptIds: [...promptIds], generatedIds, finish };
  } catch (err) {
    // the step's failure is the one reported; the sequence ends without waiting on a broken route
    await sequence.close().catch(() => undefined);
    throw failedWith(promptIds, generatedIds, err);
  }
  try {
    await sequence.close();
  } catch (err) {
    throw failedWith(promptIds, generatedIds, err);
  }
  return result;
}

/** Tokens a sequence of the prompt and `maxTokens` holds; refused when that is over the model's context. */
export function sequenceLength(promptTokens: number, maxTokens: number, context: number): number {
  const length = promptTokens + maxTokens;
  if (length > context) {
    throw new EngineError(
      "CONTEXT_EXCEEDED",
      `a prompt of ${promptTokens} tokens and max tokens ${maxTokens} make ${length} tokens, over the model's context of ${context} (max_position_embeddings)`,
    );
  }
  return length;
}

/** The GenerationError of `err`, keeping only the tokens of steps before a receipt that failed. */
function failedWith(promptIds: readonly number[], generatedIds: readonly number[], err: unknown): GenerationError {
  const cause = err instanceof Error ? err : new Error(String(err));
  const kept = cause instanceof ReceiptError ? generatedIds.slice(0, Number(cause.step)) : [...generatedIds];
  return new GenerationError({ promptIds: [...promptIds], generatedIds: kept, finish: "error" }, cause);
}
