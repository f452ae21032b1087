import type { TokenLogprob } from "./choice.js";
import type { Endpoint, RequestRun, Usage } from "./completions.js";

/** The fields every answer of one request shares. */
export interface AnswerHead {
  id: string;
  created: number;
  model: string;
}

type Finish = "stop" | "length" | null;

/** Logprobs as chat completions give them. */
function chatLogprobs(lp: readonly TokenLogprob[]): { content: unknown[]; refusal: null } {
  return {
    content: lp.map((t) => ({ token: t.token, logprob: t.logprob, bytes: t.bytes, top_logprobs: t.top.map((a) => ({ token: a.token, logprob: a.logprob, bytes: a.bytes })) })),
    refusal: null,
  };
}

/** Logprobs as (legacy) completions give them; offsets count characters from `offset`. */
function textLogprobs(lp: readonly TokenLogprob[], offset: number): Record<string, unknown> {
  const text_offset: number[] = [];
  for (const t of lp) {
    text_offset.push(offset);
    offset += t.token.length;
  }
  return {
    tokens: lp.map((t) => t.token),
    token_logprobs: lp.map((t) => t.logprob),
    top_logprobs: lp.map((t) => Object.fromEntries(t.top.map((a) => [a.token, a.logprob]))),
    text_offset,
  };
}

/** The non-streaming answer. */
export function completionBody(endpoint: Endpoint, head: AnswerHead, run: RequestRun, withLogprobs: boolean): Record<string, unknown> {
  if (endpoint === "chat") {
    return {
      ...head,
      object: "chat.completion",
      choices: run.choices.map((c, index) => ({
        index,
        message: { role: "assistant", content: c.text, refusal: null },
        logprobs: withLogprobs ? chatLogprobs(c.logprobs) : null,
        finish_reason: c.finish,
      })),
      usage: run.usage,
    };
  }
  return {
    ...head,
    object: "text_completion",
    choices: run.choices.map((c, index) => ({ index, text: c.text, logprobs: withLogprobs ? textLogprobs(c.logprobs, 0) : null, finish_reason: c.finish })),
    usage: run.usage,
  };
}

/**
 * The chunks of a streamed answer. Chat chunks carry `delta`s (the first of a choice gives the role),
 * text chunks carry `text`; a choice's last chunk has its finish_reason; with include_usage every
 * chunk has `usage: null` and a last chunk with no choices has the usage.
 */
export class ChunkWriter {
  private readonly started = new Set<number>();
  private readonly offsets = new Map<number, number>();

  constructor(
    private readonly endpoint: Endpoint,
    private readonly head: AnswerHead,
    private readonly includeUsage: boolean,
    private readonly withLogprobs: boolean,
  ) {}

  /** The chunk that opens choice `index` (chat only: the assistant role), or undefined. */
  open(index: number): Record<string, unknown> | undefined {
    if (this.endpoint !== "chat" || this.started.has(index)) return undefined;
    this.started.add(index);
    return this.chunk({ index, delta: { role: "assistant", content: "" }, logprobs: null, finish_reason: null });
  }

  text(index: number, text: string, lp: readonly TokenLogprob[]): Record<string, unknown> {
    return this.choiceChunk(index, text, lp, null);
  }

  finish(index: number, finish: Finish): Record<string, unknown> {
    return this.choiceChunk(index, "", [], finish);
  }

  usage(usage: Usage): Record<string, unknown> {
    return { ...this.base(), choices: [], usage };
  }

  private choiceChunk(index: number, text: string, lp: readonly TokenLogprob[], finish: Finish): Record<string, unknown> {
    const logprobs = this.withLogprobs && lp.length > 0 ? this.logprobsOf(index, lp) : null;
    if (this.endpoint === "chat") {
      return this.chunk({ index, delta: finish === null ? { content: text } : {}, logprobs, finish_reason: finish });
    }
    return this.chunk({ index, text, logprobs, finish_reason: finish });
  }

  private logprobsOf(index: number, lp: readonly TokenLogprob[]): unknown {
    if (this.endpoint === "chat") return chatLogprobs(lp);
    const offset = this.offsets.get(index) ?? 0;
    this.offsets.set(index, offset + lp.reduce((a, t) => a + t.token.length, 0));
    return textLogprobs(lp, offset);
  }

  private chunk(choice: Record<string, unknown>): Record<string, unknown> {
    return { ...this.base(), choices: [choice], ...(this.includeUsage ? { usage: null } : {}) };
  }

  private base(): Record<string, unknown> {
    return { ...this.head, object: this.endpoint === "chat" ? "chat.completion.chunk" : "text_completion" };
  }
}
