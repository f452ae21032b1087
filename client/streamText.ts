/** What incremental decoding needs of a tokenizer. */
export interface TokenDecoder {
  decode(ids: readonly number[]): string;
}

/**
 * Turns tokens into text as they arrive. Decoding one token at a time is wrong for byte-level
 * tokenizers: a token may hold part of a UTF-8 character (decoded alone it is U+FFFD), and a
 * decoder may drop or add a leading space at the start of what it is given. So each token is decoded
 * together with the few tokens before it, and text is released only once it no longer ends in an
 * unfinished character; the concatenation of everything `push` and `flush` return equals
 * `decode(all tokens)`.
 */
export class TextStream {
  private readonly ids: number[] = [];
  /** Tokens before `prefix` are done; tokens prefix..read give text already released. */
  private prefix = 0;
  private read = 0;

  constructor(private readonly tokenizer: TokenDecoder) {}

  /** The text that `id` completes (often "", e.g. half a character). */
  push(id: number): string {
    this.ids.push(id);
    const released = this.decode(this.prefix, this.read);
    const text = this.decode(this.prefix, this.ids.length);
    if (text.length <= released.length || text.endsWith("\uFFFD") || !text.startsWith(released)) return "";
    this.prefix = this.read;
    this.read = this.ids.length;
    return text.slice(released.length);
  }

  /** The text still held back (an unfinished character at the end decodes as U+FFFD). */
  flush(): string {
    const released = this.decode(this.prefix, this.read);
    const text = this.decode(this.prefix, this.ids.length);
    this.prefix = this.read = this.ids.length;
    return text.startsWith(released) ? text.slice(released.length) : "";
  }

  /** Text of tokens from..to (tokenizers refuse an empty list). */
  private decode(from: number, to: number): string {
    return from < to ? this.tokenizer.decode(this.ids.slice(from, to)) : "";
  }
}
