import { EFedError } from "../../protocol/errors.js";

/** The `type` of an OpenAI error body. */
export type ApiErrorType = "invalid_request_error" | "not_found_error" | "rate_limit_error" | "service_unavailable" | "server_error";

/**
 * An error the gateway answers with, in OpenAI's shape: `{"error": {message, type, param, code}}`
 * with the HTTP status, and `Retry-After` (seconds) when trying again later can succeed.
 */
export class ApiError extends EFedError {
  constructor(
    readonly status: number,
    readonly type: ApiErrorType,
    message: string,
    readonly param: string | null = null,
    readonly apiCode: string | null = null,
    readonly retryAfterS?: number,
  ) {
    super(`HTTP_${status}`, message, { details: { status, param, code: apiCode } });
  }

  body(): { error: { message: string; type: ApiErrorType; param: string | null; code: string | null } } {
    return { error: { message: this.message, type: this.type, param: this.param, code: this.apiCode } };
  }
}

/** 400 for a request field that is missing, malformed or out of range; `param` names it (`messages[0].role`). */
export function badRequest(param: string | null, message: string, code: string | null = "invalid_value"): ApiError {
  return new ApiError(400, "invalid_request_error", message, param, code);
}

export function unknownModel(id: string): ApiError {
  return new ApiError(404, "not_found_error", `The model '${id}' does not exist on this gateway (GET /v1/models lists those it serves)`, "model", "model_not_found");
}

/** 503: the model is known but no route covers its layers now. */
export function noRoute(id: string, reason: string, retryAfterS: number): ApiError {
  return new ApiError(503, "service_unavailable", `no route covers the layers of '${id}' now: ${reason}`, "model", "no_route", retryAfterS);
}

/**
 * 429: the gateway is at its limit of requests in flight, or (for the payments hook) the wallet's
 * spending limit is reached.
 */
export function tooManyRequests(message: string, code: string, retryAfterS: number): ApiError {
  return new ApiError(429, "rate_limit_error", message, null, code, retryAfterS);
}
