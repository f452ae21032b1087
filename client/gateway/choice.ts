import { generate, GenerationError, type LayerPipeline } from "../generate.js";
import type { SamplingOptions } from "../sampler.js";
import { StopMatcher } from "../streamStop.js";
import { TextStream } from "../streamText.js";
import type { GatewayModel } from "./models.js";

/** A token's log probability, with the most likely alternatives at its position. */
export interface TokenLogprob {
  token: string;
  logprob: number;
  bytes: number[];
  top: { token: string; logprob: number; bytes: number[] }[];
}

export interface ChoiceSpec {
  promptIds: readonly number[];
  maxTokens: number;
  sampling: SamplingOptions;
  /** Text that ends the choice; it is not part of the output. */
  stop: readonly string[];
  /** Alternatives per token to report (undefined: no logprobs at all). */
  topLogprobs: number | undefined;
  /** Set when the client has gone: the choice ends at its next token. */
  signal: { aborted: boolean };
}

export interface ChoiceOutput {
  text: string;
  finish: "stop" | "length";
  completionTokens: number;
  logprobs: TokenLogprob[];
}

/**
 * One choice of a request: a generation on its own sequence, whose text is released as it becomes
 * certain — whole characters (see TextStream), and none of a stop string (see StopMatcher). Each
 * release goes to `onText` with the logprobs of the tokens since the previous one.
 */
export async function runChoice(
  model: GatewayModel,
  pipeline: LayerPipeline,
  spec: ChoiceSpec,
  onText?: (text: string, logprobs: TokenLogprob[]) => void,
): Promise<ChoiceOutput> {
  const stream = new TextStream(model.tokenizer);
  const matcher = new StopMatcher(spec.stop);
  const logprobs: TokenLogprob[] = [];
  let unsent = 0; // logprobs not yet given to onText
  let text = "";
  const release = (piece: string, last: boolean): void => {
    if (piece === "" && !(last && unsent < logprobs.length)) return;
    text += piece;
    onText?.(piece, logprobs.slice(unsent));
    unsent = logprobs.length;
  };
  const result = await generate(model.head, pipeline, spec.promptIds, {
    ...spec.sampling,
    maxTokens: spec.maxTokens,
    stopTokens: model.options.eosTokenIds,
    onToken: (id, logits) => {
      if (spec.topLogprobs !== undefined) logprobs.push(tokenLogprob(model, id, logits, spec.topLogprobs));
      release(matcher.push(stream.push(id)), false);
      return matcher.done || spec.signal.aborted ? "stop" : undefined;
    },
  }).catch((err: unknown) => {
    throw err instanceof GenerationError ? err.cause : err;
  });
  release(matcher.push(stream.flush()) + matcher.flush(), true);
  return { text, finish: result.finish === "length" ? "length" : "stop", completionTokens: result.generatedIds.length, logprobs };
}

/** Log-softmax of `logits` at `id`, and the `top` most likely tokens (the model's distribution, before sampling settings). */
function tokenLogprob(model: GatewayModel, id: number, logits: Float32Array, top: number): TokenLogprob {
  let max = -Infinity;
  for (const l of logits) if (l > max) max = l;
  let sum = 0;
  for (const l of logits) sum += Math.exp(l - max);
  const logZ = max + Math.log(sum);
  const best: number[] = []; // ids, most likely first
  for (let i = 0; i < logits.length && top > 0; i++) {
    if (best.length === top && logits[i]! <= logits[best[top - 1]!]!) continue;
    let at = best.length;
    while (at > 0 && logits[i]! > logits[best[at - 1]!]!) at--;
    best.splice(at, 0, i);
    if (best.length > top) best.pop();
  }
  const entry = (t: number): { token: string; logprob: number; bytes: number[] } => {
    const token = model.tokenizer.decode([t], { skipSpecialTokens: false });
    return { token, logprob: logits[t]! - logZ, bytes: [...Buffer.from(token, "utf8")] };
  };
  return { ...entry(id), top: best.map(entry) };
}
