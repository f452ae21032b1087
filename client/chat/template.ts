import { readFileSync } from "node:fs";
import { join } from "node:path";
import { Template } from "@huggingface/jinja";
import { InvalidArgumentError } from "../../protocol/errors.js";

export type ChatRole = "system" | "user" | "assistant";

export interface ChatMessage {
  role: ChatRole;
  content: string;
}

/**
 * The template for models whose tokenizer_config.json has none, such as the shipped kjv-llama-6m
 * (trained on `<s> verse </s>` sequences): every message is one verse, and the reply is the next
 * verse, so the model writes what it was trained to write.
 */
export const VERSE_TEMPLATE =
  "{% for message in messages %}{{ bos_token }}{{ message['content'] }}{{ eos_token }}{% endfor %}" +
  "{% if add_generation_prompt %}{{ bos_token }}{% endif %}";

/** A model's chat template (Jinja, rendered with @huggingface/jinja) and the special tokens it names. */
export class ChatTemplate {
  private readonly template: Template;

  constructor(
    source: string,
    /** Where the template came from, for messages ("tokenizer_config.json" or "built-in verse template"). */
    readonly origin: string,
    private readonly specialTokens: { bos_token: string; eos_token: string },
  ) {
    try {
      this.template = new Template(source);
    } catch (cause) {
      throw new InvalidArgumentError(`the chat template of ${origin} does not parse: ${(cause as Error).message}`);
    }
  }

  /** The template of the model in `dir`: its tokenizer_config.json's `chat_template`, else VERSE_TEMPLATE. */
  static forModel(dir: string): ChatTemplate {
    const file = join(dir, "tokenizer_config.json");
    let config: Record<string, unknown> = {};
    try {
      config = JSON.parse(readFileSync(file, "utf8")) as Record<string, unknown>;
    } catch (cause) {
      if ((cause as NodeJS.ErrnoException).code !== "ENOENT") {
        throw new InvalidArgumentError(`cannot read ${file}: ${(cause as Error).message}`, { file });
      }
    }
    const special = { bos_token: tokenText(config.bos_token) ?? "", eos_token: tokenText(config.eos_token) ?? "" };
    const source = templateSource(config.chat_template, file);
    return source === undefined ? new ChatTemplate(VERSE_TEMPLATE, "built-in verse template", special) : new ChatTemplate(source, file, special);
  }

  /** The conversation as text; with `addGenerationPrompt`, followed by what opens the assistant's reply. */
  render(messages: readonly ChatMessage[], addGenerationPrompt: boolean): string {
    try {
      return this.template.render({ messages, add_generation_prompt: addGenerationPrompt, ...this.specialTokens });
    } catch (cause) {
      throw new InvalidArgumentError(`the chat template of ${this.origin} failed: ${(cause as Error).message}`);
    }
  }
}

/** A special token as tokenizer_config.json writes it: a string, or an object with `content`. */
function tokenText(value: unknown): string | undefined {
  if (typeof value === "string") return value;
  if (typeof value === "object" && value !== null && typeof (value as { content?: unknown }).content === "string") return (value as { content: string }).content;
  return undefined;
}

/** `chat_template` is a string, or a list of named templates of which "default" is the chat one. */
function templateSource(value: unknown, file: string): string | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value === "string") return value;
  if (Array.isArray(value)) {
    const named = value.find((t: { name?: unknown }) => t?.name === "default") as { template?: unknown } | undefined;
    if (typeof named?.template === "string") return named.template;
  }
  throw new InvalidArgumentError(`${file}: chat_template must be a string or a list with a "default" template`, { file });
}
