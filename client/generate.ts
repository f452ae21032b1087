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
  /**
   * Called with each token as soon as it is sampled, with the logits it was sampled from (valid only
   * during the call), to stream it. Returning "stop" ends the generation with that token (finish
   * "stop"), e.g. at a stop string.
   */
  onToken?: (id: number, logits: Float32Array) => unknown;
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
  const sequence = await pipeline.openSequence(length);
  const generatedIds: number[] = [];
  let finish: GenerationResult["finish"];
  try {
    finish = await decodeOn(head, sequence, promptIds, [...promptIds], sampler, options, generatedIds);
  } catch (err) {
    // the step's failure is the one reported; the sequence ends without waiting on a broken route
    await sequence.close().catch(() => undefined);
    throw generationFailure(promptIds, generatedIds, err);
  }
  try {
    await sequence.close();
  } catch (err) {
    throw generationFailure(promptIds, generatedIds, err);
  }
  return { promptIds: [...promptIds], generatedIds, finish };
}

/**
 * The decode loop on an open sequence, which stays open: computes `input` (tokens not yet in the
 * sequence) in one step, then one token per step, sampling from the logits of the last position.
 * `history` (the sequence's tokens, `input` included) feeds the repetition penalty and grows with
 * each token. The last token sampled is not computed: whoever continues the sequence feeds it first.
 * Tokens are appended to `generatedIds` as they come, so a caller that catches a failure has those
 * produced before it.
 */
export async function decodeOn(
  head: TokenHead,
  sequence: LayerSequence,
  input: readonly number[],
  history: number[],
  sampler: Sampler,
  options: GenerateOptions,
  generatedIds: number[],
): Promise<GenerationResult["finish"]> {
  const stop = new Set(options.stopTokens ?? []);
  const H = head.config.hiddenSize;
  let next: readonly number[] = input;
  for (let produced = 0; produced < options.maxTokens; produced++) {
    const hidden = await sequence.compute(head.embed(next));
    const logits = await head.logits(hidden.subarray(hidden.length - H));
    const id = sampler.sample(logits, history);
    generatedIds.push(id);
    history.push(id);
    if (options.onToken?.(id, logits) === "stop" || stop.has(id)) return "stop";
    next = [id];
  }
  return "length";
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
export function generationFailure(promptIds: readonly number[], generatedIds: readonly number[], err: unknown): GenerationError {
  const cause = err instanceof Error ? err : new Error(String(err));
  const kept = cause instanceof ReceiptError ? generatedIds.slice(0, Number(cause.step)) : [...generatedIds];
  return new GenerationError({ promptIds: [...promptIds], generatedIds: kept, finish: "error" }, cause);
}
