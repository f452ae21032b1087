import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { GgufValueType, type GgufValue } from "../../engine/model/gguf/format.js";
import { arrayValue, type MetadataReader } from "./ggufMetadata.js";

/**
 * Byte-level BPE tokenizers (GPT-2 style, what the shipped model and most llama-3/qwen models use)
 * between Hugging Face's tokenizer.json and GGUF's `tokenizer.ggml.*` keys (model "gpt2"). Other
 * tokenizer kinds are left out of a conversion, which says so.
 */

const TOKEN_TYPE = { normal: 1, unknown: 2, control: 3 } as const;

interface HfTokenizerJson {
  added_tokens?: { id: number; content: string; special?: boolean }[];
  pre_tokenizer?: { type?: string } | null;
  model?: { type?: string; vocab?: Record<string, number>; merges?: (string | [string, string])[]; unk_token?: string | null };
}

/** GGUF tokenizer metadata for `modelDir`'s tokenizer, or the reason it has none. */
export function tokenizerMetadata(modelDir: string, config: { bosTokenId: number | undefined; eosTokenIds: number[] }): Map<string, GgufValue> | string {
  const path = join(modelDir, "tokenizer.json");
  if (!existsSync(path)) return `${modelDir} has no tokenizer.json`;
  const json = JSON.parse(readFileSync(path, "utf8")) as HfTokenizerJson;
  if (json.model?.type !== "BPE" || json.pre_tokenizer?.type !== "ByteLevel") {
    return `its tokenizer is ${json.model?.type ?? "unknown"} with ${json.pre_tokenizer?.type ?? "no"} pre-tokenizer; only byte-level BPE is converted`;
  }
  const vocab = json.model.vocab ?? {};
  const size = Object.keys(vocab).length;
  const tokens: string[] = new Array(size);
  for (const [token, id] of Object.entries(vocab)) tokens[id] = token;
  if (tokens.some((t) => t === undefined)) return "its vocabulary's ids are not 0 … n−1";
  const special = new Set((json.added_tokens ?? []).filter((t) => t.special === true).map((t) => t.id));
  const unk = json.model.unk_token == null ? undefined : vocab[json.model.unk_token];
  const types = tokens.map((_, id) => (id === unk ? TOKEN_TYPE.unknown : special.has(id) ? TOKEN_TYPE.control : TOKEN_TYPE.normal));
  const merges = (json.model.merges ?? []).map((m) => (typeof m === "string" ? m : `${m[0]} ${m[1]}`));
  const tokenizerConfig = readTokenizerConfig(modelDir);
  const m = new Map<string, GgufValue>([
    ["tokenizer.ggml.model", { type: GgufValueType.STRING, value: "gpt2" }],
    ["tokenizer.ggml.pre", { type: GgufValueType.STRING, value: "gpt-2" }],
    ["tokenizer.ggml.tokens", arrayValue(GgufValueType.STRING, tokens)],
    ["tokenizer.ggml.token_type", arrayValue(GgufValueType.INT32, types)],
    ["tokenizer.ggml.merges", arrayValue(GgufValueType.STRING, merges)],
  ]);
  if (config.bosTokenId !== undefined) m.set("tokenizer.ggml.bos_token_id", { type: GgufValueType.UINT32, value: config.bosTokenId });
  if (config.eosTokenIds[0] !== undefined) m.set("tokenizer.ggml.eos_token_id", { type: GgufValueType.UINT32, value: config.eosTokenIds[0] });
  if (unk !== undefined) m.set("tokenizer.ggml.unknown_token_id", { type: GgufValueType.UINT32, value: unk });
  m.set("tokenizer.ggml.add_bos_token", { type: GgufValueType.BOOL, value: tokenizerConfig.add_bos_token === true });
  if (typeof tokenizerConfig.chat_template === "string") m.set("tokenizer.chat_template", { type: GgufValueType.STRING, value: tokenizerConfig.chat_template });
  return m;
}

function readTokenizerConfig(modelDir: string): Record<string, unknown> {
  const path = join(modelDir, "tokenizer_config.json");
  return existsSync(path) ? (JSON.parse(readFileSync(path, "utf8")) as Record<string, unknown>) : {};
}

/** tokenizer.json and tokenizer_config.json for a GGUF's tokenizer, or the reason there are none. */
export function tokenizerFiles(r: MetadataReader): { tokenizer: object; tokenizerConfig: object } | string {
  const model = r.string("tokenizer.ggml.model");
  if (model !== "gpt2") return `its tokenizer is ${JSON.stringify(model)}; only byte-level BPE ("gpt2") is converted`;
  const tokens = r.array<string>("tokenizer.ggml.tokens", "string") ?? [];
  const types = r.array<number>("tokenizer.ggml.token_type", "number") ?? [];
  const merges = r.array<string>("tokenizer.ggml.merges", "string") ?? [];
  const id = (key: string): number | undefined => (r.has(key) ? r.number(key) : undefined);
  const bos = id("tokenizer.ggml.bos_token_id");
  const eos = id("tokenizer.ggml.eos_token_id");
  const unk = id("tokenizer.ggml.unknown_token_id");
  const addBos = r.boolean("tokenizer.ggml.add_bos_token") ?? false;
  const specialIds = tokens.map((_, i) => i).filter((i) => types[i] === TOKEN_TYPE.control || types[i] === TOKEN_TYPE.unknown);
  const added = specialIds.map((i) => ({ id: i, content: tokens[i]!, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true }));
  const byteLevel = { add_prefix_space: false, trim_offsets: true, use_regex: true };
  const bosToken = bos === undefined ? undefined : tokens[bos];
  const tokenizer = {
    version: "1.0",
    truncation: null,
    padding: null,
    added_tokens: added,
    normalizer: null,
    pre_tokenizer: { type: "ByteLevel", ...byteLevel },
    post_processor:
      addBos && bosToken !== undefined
        ? {
            type: "TemplateProcessing",
            single: [{ SpecialToken: { id: bosToken, type_id: 0 } }, { Sequence: { id: "A", type_id: 0 } }],
            pair: [{ SpecialToken: { id: bosToken, type_id: 0 } }, { Sequence: { id: "A", type_id: 0 } }, { SpecialToken: { id: bosToken, type_id: 1 } }, { Sequence: { id: "B", type_id: 1 } }],
            special_tokens: { [bosToken]: { id: bosToken, ids: [bos], tokens: [bosToken] } },
          }
        : { type: "ByteLevel", ...byteLevel },
    decoder: { type: "ByteLevel", ...byteLevel, add_prefix_space: true },
    model: {
      type: "BPE",
      dropout: null,
      unk_token: unk === undefined ? null : tokens[unk],
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: false,
      byte_fallback: false,
      ignore_merges: false,
      vocab: Object.fromEntries(tokens.map((t, i) => [t, i])),
      merges,
    },
  };
  const chatTemplate = r.string("tokenizer.chat_template");
  const tokenizerConfig = {
    add_bos_token: addBos,
    add_eos_token: false,
    ...(bosToken === undefined ? {} : { bos_token: bosToken }),
    ...(eos === undefined ? {} : { eos_token: tokens[eos] }),
    ...(unk === undefined ? {} : { unk_token: tokens[unk] }),
    clean_up_tokenization_spaces: false,
    tokenizer_class: "PreTrainedTokenizerFast",
    ...(chatTemplate === undefined ? {} : { chat_template: chatTemplate }),
  };
  return { tokenizer, tokenizerConfig };
}
