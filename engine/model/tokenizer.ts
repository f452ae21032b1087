import { readFileSync } from "node:fs";
import { join } from "node:path";
import { Tokenizer } from "@huggingface/tokenizers";
import { ModelFormatError } from "../errors.js";

/** Text ↔ token ids with the model directory's own `tokenizer.json` (no network). */
export class TextTokenizer {
  private readonly tokenizer: Tokenizer;

  private constructor(tokenizer: Tokenizer) {
    this.tokenizer = tokenizer;
  }

  static load(modelDir: string): TextTokenizer {
    const json = readJson(join(modelDir, "tokenizer.json"));
    const config = readJson(join(modelDir, "tokenizer_config.json"));
    try {
      return new TextTokenizer(new Tokenizer(json as object, config as object));
    } catch (cause) {
      throw new ModelFormatError(`${modelDir}/tokenizer.json cannot be loaded: ${(cause as Error).message}`, { dir: modelDir }, cause);
    }
  }

  /**
   * Token ids of `text`, with the special tokens (e.g. BOS) the tokenizer's config adds unless
   * `addSpecialTokens` is false (a chat template writes them into the text itself).
   */
  encode(text: string, { addSpecialTokens = true }: { addSpecialTokens?: boolean } = {}): number[] {
    return this.tokenizer.encode(text, { add_special_tokens: addSpecialTokens }).ids;
  }

  /** The text of `ids`; special tokens (BOS, EOS) are left out unless `skipSpecialTokens` is false. */
  decode(ids: readonly number[], { skipSpecialTokens = true }: { skipSpecialTokens?: boolean } = {}): string {
    return this.tokenizer.decode([...ids], { skip_special_tokens: skipSpecialTokens });
  }
}

function readJson(path: string): unknown {
  try {
    return JSON.parse(readFileSync(path, "utf8"));
  } catch (cause) {
    throw new ModelFormatError(`cannot read ${path}: ${(cause as Error).message}`, { file: path }, cause);
  }
}
