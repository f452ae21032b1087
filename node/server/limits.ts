import { InvalidArgumentError } from "../../protocol/errors.js";

/** What an operator allows its server to take on. Every limit is enforced per request. */
export interface ServerLimits {
  /** Open sessions across all connections. */
  maxSessions: number;
  /** Tokens one session may hold (its KV cache length). */
  maxSessionTokens: number;
  /** Tokens in one step (prefill chunk). */
  maxStepTokens: number;
  /** Largest WebSocket message accepted, bytes. */
  maxFrameBytes: number;
  /** A session untouched this long is closed, milliseconds. */
  idleTimeoutMs: number;
  /** KV cache bytes all sessions together may hold. */
  memoryBudgetBytes: number;
}

export const DEFAULT_SERVER_LIMITS: ServerLimits = {
  maxSessions: 64,
  maxSessionTokens: 2048,
  maxStepTokens: 512,
  maxFrameBytes: 32 * 1024 * 1024,
  idleTimeoutMs: 5 * 60_000,
  memoryBudgetBytes: 2 * 1024 ** 3,
};

export function validateLimits(l: ServerLimits): ServerLimits {
  for (const [name, value] of Object.entries(l)) {
    if (!Number.isSafeInteger(value) || value < 1) throw new InvalidArgumentError(`limit ${name} must be a positive integer, got ${value}`);
  }
  return l;
}
