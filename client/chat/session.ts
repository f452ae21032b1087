import type { TextTokenizer } from "../../engine/model/tokenizer.js";
import { EFedError, InvalidArgumentError } from "../../protocol/errors.js";
import type { TokenHead } from "../batchingHead.js";
import { decodeOn, generationFailure, type GenerationResult, type LayerPipeline, type LayerSequence } from "../generate.js";
import { Sampler, type SamplingOptions } from "../sampler.js";
import type { ChatMessage, ChatTemplate } from "./template.js";

/** The conversation no longer fits the model's context: the chat must start again. */
export class ContextExhaustedError extends EFedError {
  constructor(used: number, needed: number, context: number) {
    super(
      "CONTEXT_EXHAUSTED",
      `the conversation holds ${used} tokens and this message needs ${needed} more plus at least one for the reply, over the model's context of ${context} tokens: start a new chat`,
      { details: { used, needed, context } },
    );
  }
}

export interface ChatSessionOptions extends SamplingOptions {
  /** Tokens that end a reply (the model's EOS ids). */
  stopTokens: readonly number[];
  /** Tokens the conversation may hold in all (default: the model's context, max_position_embeddings). */
  contextTokens?: number;
}

export interface TurnOptions {
  /** Reply tokens at most (fewer when the context has less room left). */
  maxTokens: number;
  /** Called with each reply token as it is sampled (see GenerateOptions.onToken). */
  onToken?: (id: number, logits: Float32Array) => unknown;
}

export interface Turn {
  /** The reply's text (special tokens left out). */
  reply: string;
  generatedIds: number[];
  /** The tokens this turn sent to the pipeline: the previous reply's last token (never computed) and the new message's. */
  sentIds: number[];
  finish: GenerationResult["finish"];
  /** The template did not extend the conversation so far: the session was opened again with all of it. */
  restarted: boolean;
}

/**
 * A multi-turn chat on one sequence of the pipeline, kept open between turns so that the layers'
 * KV caches (on the servers, for a route) hold the conversation: each turn sends only the tokens the
 * sequence has not seen. What a turn sends is found by rendering the whole conversation with the
 * chat template and cutting off the text the sequence already stands for; a template that rewrites
 * earlier text (some trim replies) cannot be continued, and the session then starts a new sequence
 * with the whole conversation (`Turn.restarted`). One sampler serves all turns: a seeded chat is
 * reproducible as a whole.
 */
export class ChatSession {
  readonly messages: ChatMessage[] = [];
  private sequence: LayerSequence | undefined;
  /** Every token of the conversation; those from `computed` on have not been through the layers. */
  private tokens: number[] = [];
  private computed = 0;
  /** The text that `tokens` stand for (special tokens included). */
  private text = "";
  private readonly sampler: Sampler;
  private readonly context: number;

  constructor(
    private readonly head: TokenHead,
    private readonly pipeline: LayerPipeline,
    private readonly tokenizer: TextTokenizer,
    readonly template: ChatTemplate,
    private readonly options: ChatSessionOptions,
  ) {
    this.sampler = new Sampler(options);
    this.context = options.contextTokens ?? head.config.maxPositionEmbeddings;
  }

  /** Tokens the conversation holds so far. */
  get usedTokens(): number {
    return this.tokens.length;
  }

  /** Adds a message (user, or system before the first) and generates the assistant's reply. */
  async say(content: string, turn: TurnOptions, role: ChatMessage["role"] = "user"): Promise<Turn> {
    if (!Number.isInteger(turn.maxTokens) || turn.maxTokens < 1) throw new InvalidArgumentError(`max tokens of a reply must be an integer >= 1, got ${turn.maxTokens}`);
    const conversation: ChatMessage[] = [...this.messages, { role, content }];
    const target = this.template.render(conversation, true);
    const restarted = this.sequence !== undefined && !target.startsWith(this.text);
    if (restarted) await this.reset();
    const newIds = this.tokenizer.encode(target.slice(this.text.length), { addSpecialTokens: false });
    if (this.tokens.length + newIds.length + 1 > this.context) {
      throw new ContextExhaustedError(this.tokens.length, newIds.length, this.context);
    }
    this.sequence ??= await this.pipeline.openSequence(this.context);
    const input = [...this.tokens.slice(this.computed), ...newIds];
    this.tokens.push(...newIds);
    const maxTokens = Math.min(turn.maxTokens, this.context - this.tokens.length);
    const generatedIds: number[] = [];
    let finish: GenerationResult["finish"];
    const history = [...this.tokens];
    try {
      finish = await decodeOn(
        this.head,
        this.sequence,
        input,
        history,
        this.sampler,
        { ...this.options, maxTokens, ...(turn.onToken === undefined ? {} : { onToken: turn.onToken }) },
        generatedIds,
      );
    } catch (err) {
      // the sequence's caches no longer match the conversation: the chat cannot continue on them
      await this.reset();
      throw generationFailure(input, generatedIds, err);
    }
    // every token is now through the layers but the reply's last, which the next turn sends first
    if (generatedIds.length > 0) this.computed = this.tokens.length + generatedIds.length - 1;
    this.tokens.push(...generatedIds);
    const reply = this.tokenizer.decode(generatedIds);
    this.messages.push({ role, content }, { role: "assistant", content: reply });
    this.text = target + this.tokenizer.decode(generatedIds, { skipSpecialTokens: false });
    return { reply, generatedIds, sentIds: input, finish, restarted };
  }

  /** Ends the sequence (the servers drop their caches); the next message opens a new one with the whole conversation. */
  async reset(): Promise<void> {
    const open = this.sequence;
    this.sequence = undefined;
    this.tokens = [];
    this.computed = 0;
    this.text = "";
    await open?.close().catch(() => undefined);
  }

  /** Ends the chat: the sequence closes and the messages are forgotten. */
  async close(): Promise<void> {
    await this.reset();
    this.messages.length = 0;
  }
}
