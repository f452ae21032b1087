import Fastify, { type FastifyError, type FastifyInstance, type FastifyReply } from "fastify";
import { EFedError } from "../../protocol/errors.js";
import { GenerationError } from "../generate.js";
import { prepareChat, prepareText, requestId, runRequest, type Endpoint, type PreparedRequest, type RequestRun } from "./completions.js";
import { ApiError, badRequest, tooManyRequests, unknownModel } from "./errors.js";
import type { GatewayModel, LayersLease } from "./models.js";
import { chatCompletionSchema, completionSchema, paramName, unsupportedField, type ChatCompletionBody, type CompletionBody } from "./schema.js";
import { ChunkWriter, completionBody, type AnswerHead } from "./shapes.js";

/**
 * Where payments plug in (the gateway command's is its wallet's, client/commands/gateway.ts; without
 * one requests are free and no cost header is sent). `admit` runs before a request takes a route and
 * may refuse it, e.g. with `tooManyRequests(..., "spending_limit", retryAfterS)`; a limit reached
 * while the request runs is answered by `spendingLimit`;
 * `costHeaders` names what a finished request cost, from the sessions it opened (receipts and
 * vouchers name them), e.g. `{"x-efed-cost-wei": "…"}`. Streamed answers send their headers before
 * the cost is known: they get only the `x-efed-sessions` header to match against the bill.
 */
export interface GatewayAccounting {
  admit(model: string, request: { promptTokens: number; maxTokens: number; n: number }): void | Promise<void>;
  costHeaders(sessionIds: readonly string[]): Record<string, string>;
}

export interface GatewayOptions {
  models: readonly GatewayModel[];
  /** Bytes of a request body at most (default 1 MiB); larger bodies get a 413. */
  bodyLimitBytes?: number;
  /** Sequences (choices of all requests) running at once at most; a request over it gets a 429 (default 64). */
  maxActiveSequences?: number;
  accounting?: GatewayAccounting;
}

/** Response headers that say who served a request. */
const SERVERS_HEADER = "x-efed-servers";
const SESSIONS_HEADER = "x-efed-sessions";

/**
 * The OpenAI-compatible HTTP API over eFed models: GET /v1/models, GET /v1/models/:id,
 * POST /v1/chat/completions and POST /v1/completions (streamed as server-sent events or not).
 * Bodies are validated against JSON schemas with bounded sizes before a handler runs; every error
 * is answered in OpenAI's shape (see ApiError). The caller listens (`app.listen`) and closes it.
 */
export function buildGateway(options: GatewayOptions): FastifyInstance {
  const app = Fastify({
    bodyLimit: options.bodyLimitBytes ?? 1024 * 1024,
    // strict: no coercion of "0.5" into 0.5, no silent removal of fields
    ajv: { customOptions: { coerceTypes: false, removeAdditional: false, useDefaults: false, allErrors: false } },
  });
  const byId = new Map(options.models.map((m) => [m.id, m]));
  const limit = options.maxActiveSequences ?? 64;
  let active = 0;

  app.setErrorHandler((err: FastifyError, _request, reply) => {
    const api = toApiError(err);
    if (api.retryAfterS !== undefined) void reply.header("retry-after", String(api.retryAfterS));
    void reply.status(api.status).send(api.body());
  });
  app.setNotFoundHandler((request, reply) => {
    void reply.status(404).send(new ApiError(404, "not_found_error", `no route ${request.method} ${request.url}`, null, "unknown_url").body());
  });

  const modelObject = (m: GatewayModel): Record<string, unknown> => ({ id: m.id, object: "model", created: m.created, owned_by: "efed" });
  const known = (id: string): GatewayModel => {
    const model = byId.get(id);
    if (model === undefined) throw unknownModel(id);
    return model;
  };

  app.get("/v1/models", async () => {
    const covered = await Promise.all(options.models.map(async (m) => ((await m.covered()) ? m : undefined)));
    return { object: "list", data: covered.filter((m) => m !== undefined).map(modelObject) };
  });

  app.get<{ Params: { id: string } }>("/v1/models/:id", async (request) => {
    const model = known(request.params.id);
    (await model.acquire()).release(false); // a 503 with Retry-After when no route covers it
    return modelObject(model);
  });

  const complete = async (endpoint: Endpoint, body: ChatCompletionBody | CompletionBody, reply: FastifyReply): Promise<unknown> => {
    const unsupported = unsupportedField(body);
    if (unsupported !== undefined) throw unsupported;
    const model = known(body.model);
    const prepared = endpoint === "chat" ? prepareChat(model, body as ChatCompletionBody) : prepareText(model, body as CompletionBody);
    if (active + prepared.n > limit) {
      throw tooManyRequests(`${active} sequences are running, the gateway's limit is ${limit}: try again shortly`, "too_many_sequences", 1);
    }
    await options.accounting?.admit(model.id, { promptTokens: prepared.promptIds.length, maxTokens: prepared.choice.maxTokens, n: prepared.n });
    active += prepared.n;
    let lease: LayersLease;
    try {
      lease = await model.acquire();
    } catch (err) {
      active -= prepared.n;
      throw err;
    }
    const head: AnswerHead = { id: requestId(endpoint), created: Math.floor(Date.now() / 1000), model: model.id };
    const signal = { aborted: false };
    let failed = false;
    try {
      void reply.header(SERVERS_HEADER, lease.servers.join(", "));
      if (prepared.stream) {
        failed = !(await streamAnswer(prepared, lease, head, signal, reply));
        return reply;
      }
      const run = await runRequest(prepared, lease.pipeline, signal);
      void reply.header(SESSIONS_HEADER, run.sessionIds.join(", "));
      for (const [k, v] of Object.entries(options.accounting?.costHeaders(run.sessionIds) ?? {})) void reply.header(k, v);
      return completionBody(endpoint, head, run, prepared.choice.topLogprobs !== undefined);
    } catch (err) {
      signal.aborted = true; // the other choices of the request stop at their next token
      failed = true;
      throw routeFailure(model, err);
    } finally {
      active -= prepared.n;
      lease.release(failed);
    }
  };

  app.post<{ Body: ChatCompletionBody }>("/v1/chat/completions", { schema: { body: chatCompletionSchema } }, (request, reply) =>
    complete("chat", request.body, reply),
  );
  app.post<{ Body: CompletionBody }>("/v1/completions", { schema: { body: completionSchema } }, (request, reply) => complete("text", request.body, reply));
  return app;
}

/**
 * Streams an answer as server-sent events: a chunk per release of text, each choice's finish, the
 * usage chunk when asked, then `data: [DONE]`. A failure after the first byte can only be told in
 * the stream: an `{"error": …}` event, and no [DONE]. Resolves with whether the run succeeded.
 */
async function streamAnswer(prepared: PreparedRequest, lease: LayersLease, head: AnswerHead, signal: { aborted: boolean }, reply: FastifyReply): Promise<boolean> {
  const writer = new ChunkWriter(prepared.endpoint, head, prepared.includeUsage, prepared.choice.topLogprobs !== undefined);
  reply.hijack();
  const raw = reply.raw;
  raw.writeHead(200, { ...(reply.getHeaders() as Record<string, string>), "content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache" });
  const send = (data: unknown): void => void raw.write(`data: ${typeof data === "string" ? data : JSON.stringify(data)}\n\n`);
  // the client left before the end: its choices stop at their next token
  raw.once("close", () => (signal.aborted ||= !raw.writableEnded));
  for (let i = 0; i < prepared.n; i++) {
    const opening = writer.open(i);
    if (opening !== undefined) send(opening);
  }
  let run: RequestRun;
  try {
    run = await runRequest(prepared, lease.pipeline, signal, (i, text, lp) => send(writer.text(i, text, lp)));
  } catch (err) {
    signal.aborted = true;
    send(routeFailure(prepared.model, err).body());
    raw.end();
    return false;
  }
  run.choices.forEach((c, i) => send(writer.finish(i, c.finish)));
  if (prepared.includeUsage) send(writer.usage(run.usage));
  send("[DONE]");
  raw.end();
  return true;
}

/** A failure while generating, as the 503 the client sees (the model's route is opened again for the next request). */
function routeFailure(model: GatewayModel, err: unknown): ApiError {
  if (err instanceof ApiError) return err;
  const cause = err instanceof GenerationError ? err.cause : err;
  if (cause instanceof EFedError && cause.code === "WALLET_SPENDING_LIMIT") return spendingLimit(cause, model);
  const message = err instanceof Error ? err.message : String(err);
  return new ApiError(503, "service_unavailable", `the route of '${model.id}' failed: ${message}`, null, err instanceof EFedError ? err.code : "route_failed", model.retryAfterS);
}

/**
 * The wallet's spending limit, as the client sees it: a request over the per-query limit would be
 * refused again as asked (400, fewer tokens may fit); the daily limit is a 429 until the next UTC day.
 */
function spendingLimit(err: EFedError, model: GatewayModel): ApiError {
  if (err.details?.limit === "query") return badRequest("max_tokens", `${err.message} (ask for fewer tokens)`, "query_spending_limit");
  if (err.details?.limit !== "day") return tooManyRequests(err.message, "spending_limit", model.retryAfterS);
  const now = new Date();
  const tomorrow = Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate() + 1);
  return tooManyRequests(err.message, "spending_limit", Math.max(1, Math.ceil((tomorrow - now.getTime()) / 1000)));
}

/** Any error thrown on the way to a handler, as the OpenAI error to answer with. */
function toApiError(err: FastifyError | ApiError): ApiError {
  if (err instanceof ApiError) return err;
  if (err.validation !== undefined && err.validation.length > 0) return invalidBody(err.validation);
  if (err.code === "FST_ERR_CTP_BODY_TOO_LARGE") return new ApiError(413, "invalid_request_error", err.message, null, "body_too_large");
  if (err.code === "FST_ERR_CTP_INVALID_MEDIA_TYPE") return new ApiError(415, "invalid_request_error", err.message, null, "unsupported_media_type");
  if (err.statusCode !== undefined && err.statusCode >= 400 && err.statusCode < 500) return badRequest(null, err.message, err.code ?? null);
  return new ApiError(500, "server_error", err.message, null, err instanceof EFedError ? err.code : null);
}

type SchemaError = NonNullable<FastifyError["validation"]>[number];

/**
 * The 400 for a body that fails its schema. A value that fails every branch of an `anyOf` yields an
 * error per branch: a constraint broken in a branch of the right type says most ("n must be <= 16");
 * when only types were wrong, the message lists the types the field may have.
 */
function invalidBody(errors: readonly SchemaError[]): ApiError {
  const branches = errors.filter((e) => e.keyword !== "anyOf");
  const first = branches.find((e) => e.keyword !== "type") ?? branches[0] ?? errors[0]!;
  const missing = (first.params as { missingProperty?: string }).missingProperty;
  const param = paramName(first.instancePath, missing);
  let what: string;
  if (missing !== undefined) what = "is required";
  else if (first.keyword === "type") {
    const types = branches.filter((e) => e.keyword === "type" && e.instancePath === first.instancePath).map((e) => String((e.params as { type: unknown }).type));
    what = `must be ${[...new Set(types)].join(" or ")}`;
  } else {
    const allowed = (first.params as { allowedValues?: unknown[] }).allowedValues;
    what = `${first.message ?? "is invalid"}${allowed === undefined ? "" : `: ${allowed.join(", ")}`}`;
  }
  return badRequest(param === "" ? null : param, `${param === "" ? "the body" : param} ${what}`);
}
