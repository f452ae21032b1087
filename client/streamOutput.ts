import { EFedError } from "../protocol/errors.js";
import type { GenerationResult } from "./generate.js";
import { TextStream, type TokenDecoder } from "./streamText.js";

/** How `efed generate` prints: text as it comes, one JSON object at the end, or one JSON event per line. */
export type OutputMode = "text" | "json" | "jsonl";

/** What a run adds to its JSON besides the tokens. */
export interface RunFacts {
  /** The servers of the route, in order (absent in-process). */
  servers?: readonly string[];
  /** Verified receipts received (absent in-process). */
  receipts?: number;
}

/**
 * Prints one generation as it happens. Text mode writes each token's text as soon as it is whole
 * (ids, comma-separated, when the model has no tokenizer); jsonl writes `{"event":"token",...}`
 * per token then one `done` or `error` event; json writes one object at the end. Timing is measured
 * from construction, or from `begin` (call it just before the generation starts).
 */
export class GenerationPrinter {
  private readonly stream: TextStream | undefined;
  private started = performance.now();
  private firstTokenMs: number | undefined;
  private count = 0;

  constructor(
    private readonly mode: OutputMode,
    private readonly tokenizer: TokenDecoder | undefined,
    private readonly write: (s: string) => void = (s) => void process.stdout.write(s),
  ) {
    this.stream = tokenizer === undefined ? undefined : new TextStream(tokenizer);
  }

  /** The generation starts now (loading and connecting are not part of its timing). */
  begin(): void {
    this.started = performance.now();
  }

  token(id: number): void {
    this.firstTokenMs ??= performance.now() - this.started;
    const text = this.stream?.push(id);
    if (this.mode === "jsonl") this.write(`${JSON.stringify({ event: "token", index: this.count, id, text: text ?? null })}\n`);
    else if (this.mode === "text") this.write(text ?? `${this.count > 0 ? "," : ""}${id}`);
    this.count++;
  }

  /** Ends the output: the rest of the text, or the final JSON (with the error when the generation failed). */
  finish(result: GenerationResult, failure: Error | undefined, facts: RunFacts = {}): void {
    const rest = this.stream?.flush() ?? "";
    const error = failure === undefined ? {} : { error: { code: failure instanceof EFedError ? failure.code : "FAILED", message: failure.message } };
    if (this.mode === "text") {
      if (this.count > 0 || failure === undefined) this.write(`${rest}\n`);
      return;
    }
    const totalMs = performance.now() - this.started;
    const decodeMs = totalMs - (this.firstTokenMs ?? totalMs);
    const timing = {
      firstTokenMs: round(this.firstTokenMs ?? null),
      totalMs: round(totalMs),
      // tokens after the first, over the time after it: the decode rate, prefill excluded
      decodeTokensPerSecond: this.count > 1 && decodeMs > 0 ? round(((this.count - 1) * 1000) / decodeMs) : null,
    };
    const text = this.tokenizer === undefined ? null : this.tokenizer.decode(result.generatedIds);
    const summary = { promptIds: result.promptIds, generatedIds: result.generatedIds, text, finish: result.finish, timing, ...facts, ...error };
    const line = this.mode === "json" ? summary : { event: failure === undefined ? "done" : "error", ...summary };
    this.write(`${JSON.stringify(line)}\n`);
  }
}

function round(ms: number | null): number | null {
  return ms === null ? null : Math.round(ms * 100) / 100;
}
