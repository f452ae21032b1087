import { badRequest, type ApiError } from "./errors.js";

/** Bounds on what a request body may hold (the HTTP body itself is capped by `bodyLimitBytes`). */
export const LIMITS = {
  modelIdChars: 256,
  messages: 256,
  messageChars: 200_000,
  contentParts: 64,
  promptChars: 200_000,
  promptTokens: 65_536,
  stopStrings: 4,
  stopChars: 256,
  /** Choices per request (OpenAI allows 128; each is a sequence on the route). */
  n: 16,
  maxTokens: 1_000_000,
  topLogprobsChat: 20,
  logprobsCompletion: 5,
} as const;

const nullable = (schema: Record<string, unknown>): Record<string, unknown> => ({ anyOf: [schema, { type: "null" }] });

const sampling = {
  model: { type: "string", minLength: 1, maxLength: LIMITS.modelIdChars },
  max_tokens: nullable({ type: "integer", minimum: 1, maximum: LIMITS.maxTokens }),
  temperature: nullable({ type: "number", minimum: 0, maximum: 2 }),
  top_p: nullable({ type: "number", exclusiveMinimum: 0, maximum: 1 }),
  // the sampler's stream takes a 32-bit seed
  seed: nullable({ type: "integer", minimum: -(2 ** 31), maximum: 2 ** 31 - 1 }),
  stop: nullable({
    anyOf: [
      { type: "string", minLength: 1, maxLength: LIMITS.stopChars },
      { type: "array", maxItems: LIMITS.stopStrings, items: { type: "string", minLength: 1, maxLength: LIMITS.stopChars } },
    ],
  }),
  n: nullable({ type: "integer", minimum: 1, maximum: LIMITS.n }),
  stream: nullable({ type: "boolean" }),
  stream_options: nullable({ type: "object", properties: { include_usage: { type: "boolean" } } }),
  user: { type: "string", maxLength: 256 },
} as const;

const textPart = {
  type: "object",
  required: ["type", "text"],
  properties: { type: { const: "text" }, text: { type: "string", maxLength: LIMITS.messageChars } },
};

/** JSON schema of POST /v1/chat/completions (fastify validates it before the handler runs). */
export const chatCompletionSchema = {
  type: "object",
  required: ["model", "messages"],
  properties: {
    ...sampling,
    max_completion_tokens: nullable({ type: "integer", minimum: 1, maximum: LIMITS.maxTokens }),
    logprobs: nullable({ type: "boolean" }),
    top_logprobs: nullable({ type: "integer", minimum: 0, maximum: LIMITS.topLogprobsChat }),
    messages: {
      type: "array",
      minItems: 1,
      maxItems: LIMITS.messages,
      items: {
        type: "object",
        required: ["role", "content"],
        properties: {
          role: { enum: ["system", "developer", "user", "assistant"] },
          content: { anyOf: [{ type: "string", maxLength: LIMITS.messageChars }, { type: "array", maxItems: LIMITS.contentParts, items: textPart }] },
          name: { type: "string", maxLength: 256 },
        },
      },
    },
  },
} as const;

/** JSON schema of POST /v1/completions: one prompt, as text or token ids. */
export const completionSchema = {
  type: "object",
  required: ["model", "prompt"],
  properties: {
    ...sampling,
    logprobs: nullable({ type: "integer", minimum: 0, maximum: LIMITS.logprobsCompletion }),
    prompt: {
      anyOf: [
        { type: "string", maxLength: LIMITS.promptChars },
        { type: "array", minItems: 1, maxItems: LIMITS.promptTokens, items: { type: "integer", minimum: 0 } },
        { type: "array", minItems: 1, maxItems: 1, items: { type: "string", maxLength: LIMITS.promptChars } },
      ],
    },
  },
} as const;

interface SamplingBody {
  model: string;
  max_tokens?: number | null;
  temperature?: number | null;
  top_p?: number | null;
  seed?: number | null;
  stop?: string | string[] | null;
  n?: number | null;
  stream?: boolean | null;
  stream_options?: { include_usage?: boolean } | null;
  [unknownField: string]: unknown;
}

export interface ChatCompletionBody extends SamplingBody {
  messages: { role: "system" | "developer" | "user" | "assistant"; content: string | { type: "text"; text: string }[]; name?: string }[];
  max_completion_tokens?: number | null;
  logprobs?: boolean | null;
  top_logprobs?: number | null;
}

export interface CompletionBody extends SamplingBody {
  prompt: string | number[] | [string];
  logprobs?: number | null;
}

/**
 * Fields that OpenAI defines and this gateway does not implement: a request that sets one (to
 * other than its neutral value) is refused with a 400 naming it, rather than silently ignored.
 */
const UNSUPPORTED: Record<string, (v: unknown) => boolean> = {
  tools: (v) => v !== null && !(Array.isArray(v) && v.length === 0),
  tool_choice: (v) => v !== null && v !== "none",
  functions: (v) => v !== null,
  function_call: (v) => v !== null && v !== "none",
  response_format: (v) => v !== null && (v as { type?: unknown })?.type !== "text",
  logit_bias: (v) => v !== null && Object.keys(v as object).length > 0,
  frequency_penalty: (v) => v !== null && v !== 0,
  presence_penalty: (v) => v !== null && v !== 0,
  echo: (v) => v !== null && v !== false,
  suffix: (v) => v !== null && v !== "",
  best_of: (v) => v !== null && v !== 1,
  audio: (v) => v !== null,
  prediction: (v) => v !== null,
};

/** A 400 for the first field of `body` that asks for something not implemented, or undefined. */
export function unsupportedField(body: Record<string, unknown>): ApiError | undefined {
  for (const [field, used] of Object.entries(UNSUPPORTED)) {
    if (body[field] !== undefined && used(body[field])) return badRequest(field, `${field} is not supported by this gateway`, "unsupported_parameter");
  }
  return undefined;
}

/** An Ajv error path (`/messages/0/role`) as OpenAI names a param (`messages[0].role`). */
export function paramName(instancePath: string, missingProperty?: string): string {
  const parts = instancePath.split("/").filter((p) => p !== "");
  if (missingProperty !== undefined) parts.push(missingProperty);
  return parts.reduce((name, p) => (/^\d+$/.test(p) ? `${name}[${p}]` : name === "" ? p : `${name}.${p}`), "");
}
