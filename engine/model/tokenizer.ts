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

  /** Token ids of `text`, with the special tokens (e.g. BOS) the tokenizer's config adds. */
  encode(text: string): number[] {
    return this.tokenizer.encode(text).ids;
  }

  decode(ids: readonly number[]): string {
    return this.tokenizer.decode([...ids], { skip_special_tokens: true });
  }
}

function readJson(path: string): unknown {
  try {
    return JSON.parse(readFileSync(path, "utf8"));
  } catch (cause) {
    throw new ModelFormatError(`cannot read ${path}: ${(cause as Error).message}`, { file: path }, cause);
  }
}
