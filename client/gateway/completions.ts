import { randomBytes, randomInt } from "node:crypto";
import type { ChatMessage } from "../chat/template.js";
import type { LayerPipeline, LayerSequence } from "../generate.js";
import { runChoice, type ChoiceOutput, type ChoiceSpec, type TokenLogprob } from "./choice.js";
import { badRequest } from "./errors.js";
import type { GatewayModel } from "./models.js";
import type { ChatCompletionBody, CompletionBody } from "./schema.js";

/** Which endpoint a request came to: the two differ only in the prompt and the shape of the answer. */
export type Endpoint = "chat" | "text";

/** A validated request, ready to run. */
export interface PreparedRequest {
  endpoint: Endpoint;
  model: GatewayModel;
  promptIds: number[];
  n: number;
  stream: boolean;
  includeUsage: boolean;
  choice: Omit<ChoiceSpec, "promptIds" | "signal" | "sampling"> & { temperature: number; topP: number; seed: number | undefined };
}

export interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
}

/** Turns a chat body into a request: the messages rendered with the model's chat template. */
export function prepareChat(model: GatewayModel, body: ChatCompletionBody): PreparedRequest {
  if (body.top_logprobs !== undefined && body.top_logprobs !== null && body.logprobs !== true) {
    throw badRequest("top_logprobs", "top_logprobs requires logprobs: true");
  }
  const messages: ChatMessage[] = body.messages.map((m) => ({
    role: m.role === "developer" ? "system" : m.role,
    content: typeof m.content === "string" ? m.content : m.content.map((p) => p.text).join(""),
  }));
  const promptIds = model.tokenizer.encode(model.options.template.render(messages, true), { addSpecialTokens: false });
  const maxField = body.max_completion_tokens !== undefined && body.max_completion_tokens !== null ? "max_completion_tokens" : "max_tokens";
  const topLogprobs = body.logprobs === true ? (body.top_logprobs ?? 0) : undefined;
  return prepare("chat", model, body, promptIds, "messages", maxField, body[maxField] as number | null | undefined, topLogprobs);
}

/** Turns a completions body into a request: the prompt as text (BOS added as the tokenizer says) or token ids. */
export function prepareText(model: GatewayModel, body: CompletionBody): PreparedRequest {
  const prompt = body.prompt;
  let promptIds: number[];
  if (typeof prompt === "string" || typeof prompt[0] === "string") {
    promptIds = model.tokenizer.encode(typeof prompt === "string" ? prompt : (prompt[0] as string));
  } else {
    promptIds = prompt as number[];
    const vocab = model.head.config.vocabSize;
    const bad = promptIds.findIndex((id) => id >= vocab);
    if (bad >= 0) throw badRequest(`prompt[${bad}]`, `token id ${promptIds[bad]} is outside the vocabulary 0..${vocab - 1}`);
  }
  const topLogprobs = body.logprobs === null ? undefined : body.logprobs;
  return prepare("text", model, body, promptIds, "prompt", "max_tokens", body.max_tokens, topLogprobs);
}

function prepare(
  endpoint: Endpoint,
  model: GatewayModel,
  body: ChatCompletionBody | CompletionBody,
  promptIds: number[],
  promptField: string,
  maxField: string,
  maxTokens: number | null | undefined,
  topLogprobs: number | undefined,
): PreparedRequest {
  const context = model.context;
  if (promptIds.length === 0) throw badRequest(promptField, "the prompt has no tokens");
  if (promptIds.length >= context) {
    throw badRequest(promptField, `the prompt has ${promptIds.length} tokens, the model's context is ${context}: no room for a completion`, "context_length_exceeded");
  }
  const room = context - promptIds.length;
  if (maxTokens !== undefined && maxTokens !== null && maxTokens > room) {
    throw badRequest(
      maxField,
      `${maxField} ${maxTokens} and a prompt of ${promptIds.length} tokens make ${promptIds.length + maxTokens}, over the model's context of ${context}`,
      "context_length_exceeded",
    );
  }
  const stop = body.stop === undefined || body.stop === null ? [] : typeof body.stop === "string" ? [body.stop] : body.stop;
  return {
    endpoint,
    model,
    promptIds,
    n: body.n ?? 1,
    stream: body.stream === true,
    includeUsage: body.stream === true && body.stream_options?.include_usage === true,
    choice: {
      maxTokens: maxTokens ?? room,
      stop,
      topLogprobs,
      temperature: body.temperature ?? 1,
      topP: body.top_p ?? 1,
      seed: body.seed ?? undefined,
    },
  };
}

/** What a run of a request produced. */
export interface RequestRun {
  choices: ChoiceOutput[];
  usage: Usage;
  /** The session ids of every sequence the request opened (a remote route names them in receipts). */
  sessionIds: string[];
}

/**
 * Runs the n choices of `request` at once, each on its own sequence of `pipeline`. With a seed,
 * choice i samples with seed + i, so a request is reproducible; without one, each draws a random
 * seed. `onText` gets every release of text of every choice as it happens.
 */
export async function runRequest(
  request: PreparedRequest,
  pipeline: LayerPipeline,
  signal: { aborted: boolean },
  onText?: (index: number, text: string, logprobs: TokenLogprob[]) => void,
): Promise<RequestRun> {
  // read when the request ends: a sequence that failed over has sessions on more than one route
  const sequences: (LayerSequence & { sessionIds?: readonly string[] })[] = [];
  const recording: LayerPipeline = {
    openSequence: async (maxLength) => {
      const sequence = await pipeline.openSequence(maxLength);
      sequences.push(sequence);
      return sequence;
    },
  };
  const { temperature, topP, seed, ...rest } = request.choice;
  const choices = await Promise.all(
    Array.from({ length: request.n }, (_, i) =>
      runChoice(
        request.model,
        recording,
        {
          ...rest,
          promptIds: request.promptIds,
          signal,
          // the sampler's stream takes 32 bits: seed + i wraps like the seed itself
          sampling: { temperature, topP, seed: seed === undefined ? randomInt(2 ** 31) : (seed + i) | 0 },
        },
        onText === undefined ? undefined : (text, logprobs) => onText(i, text, logprobs),
      ),
    ),
  );
  const completion = choices.reduce((a, c) => a + c.completionTokens, 0);
  return {
    choices,
    usage: { prompt_tokens: request.promptIds.length, completion_tokens: completion, total_tokens: request.promptIds.length + completion },
    sessionIds: sequences.flatMap((s) => s.sessionIds ?? []),
  };
}

export function requestId(endpoint: Endpoint): string {
  return `${endpoint === "chat" ? "chatcmpl" : "cmpl"}-${randomBytes(12).toString("hex")}`;
}
