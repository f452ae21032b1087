import { InvalidArgumentError } from "../../protocol/errors.js";

/**
 * Everything a shard server lets its peers take, in one validated object. Every limit is enforced
 * per request at the edge; every value is a positive integer in the unit its name says. The frame
 * size is not here: it is derived from the served model (see `maxFrameBytesFor`), so no operator
 * setting can let a peer send more than the largest valid message.
 */
export interface ServerLimits {
  /** Open sessions across all connections. Default 64. */
  maxSessions: number;
  /** Tokens one session may hold (its KV cache length); clamped to what the shard can hold. Default 2048. */
  maxSessionTokens: number;
  /** Tokens in one step (a prefill chunk). Default 512. */
  maxStepTokens: number;
  /** A session untouched this long is closed, milliseconds. Default 120 000. */
  idleTimeoutMs: number;
  /** KV cache bytes all sessions together may hold, in flight included. Default 2 GiB. */
  memoryBudgetBytes: number;

  /** WebSocket connections open at once (keep well under the process's file-descriptor limit). Default 256. */
  maxConnections: number;
  /** Connections open at once from one remote IP address. Default 16. */
  maxConnectionsPerAddress: number;
  /** Sessions one connection may hold. Default 32. */
  maxSessionsPerConnection: number;
  /** Sessions all connections from one remote IP address may hold together. Default 32. */
  maxSessionsPerAddress: number;
  /** Requests one connection may have in flight; past it the server stops reading that connection. Default 64 (a server-to-server link carries many sessions). */
  maxRequestsInFlightPerConnection: number;
  /** Bytes queued for sending on one connection; past it the server stops reading that connection until they drain. Default 8 MiB. */
  maxBufferedBytesPerConnection: number;
  /** A connection whose queued bytes have not drained for this long is closed, milliseconds. Default 30 000. */
  maxSendStallMs: number;
  /** A connection with no open session and no request for this long is closed, milliseconds. Default 30 000. */
  connectionIdleMs: number;
  /** FetchStep requests one connection may make per second, sustained. Default 50. */
  fetchesPerSecond: number;
  /** FetchStep requests one connection may make at once after a pause (token bucket size). Default 100. */
  fetchBurst: number;
  /** BindChannel requests (a signature check and a chain read each) one connection may make per second, sustained. Default 10. */
  bindsPerSecond: number;
  /** BindChannel requests one connection may make at once after a pause (token bucket size; a gateway binds one session per request). Default 32. */
  bindBurst: number;
  /**
   * Forwarded steps of one session whose local work is done but whose route has not answered yet
   * (the client may already have the output and send the next step). Default 4.
   */
  maxParkedForwardsPerSession: number;
  /** The same, for all the sessions of one connection together. Default 64. */
  maxParkedForwardsPerClient: number;
  /** Steps in flight from one remote address, across its connections and sessions. Default 16. */
  maxStepsInFlightPerAddress: number;
  /** Distinct next hops one address's forwarded steps may occupy at once (pooled server links). Default 4. */
  maxNextHopsPerAddress: number;
  /** New next-hop connections one client's forwarded steps may make the server open per second. Default 2. */
  newPeersPerClientPerSecond: number;
  /** On shutdown, in-flight work gets this long to finish before connections are closed, milliseconds. Default 10 000. */
  shutdownDeadlineMs: number;
}

export const DEFAULT_SERVER_LIMITS: ServerLimits = {
  maxSessions: 64,
  maxSessionTokens: 2048,
  maxStepTokens: 512,
  idleTimeoutMs: 120_000,
  memoryBudgetBytes: 2 * 1024 ** 3,
  maxConnections: 256,
  maxConnectionsPerAddress: 16,
  maxSessionsPerConnection: 32,
  maxSessionsPerAddress: 32,
  maxRequestsInFlightPerConnection: 64,
  maxBufferedBytesPerConnection: 8 * 1024 * 1024,
  maxSendStallMs: 30_000,
  connectionIdleMs: 30_000,
  fetchesPerSecond: 50,
  fetchBurst: 100,
  bindsPerSecond: 10,
  bindBurst: 32,
  maxParkedForwardsPerSession: 4,
  maxParkedForwardsPerClient: 64,
  maxStepsInFlightPerAddress: 16,
  maxNextHopsPerAddress: 4,
  newPeersPerClientPerSecond: 2,
  shutdownDeadlineMs: 10_000,
};

/** Checks every limit is a positive safe integer; returns the limits. (A per-connection limit above the total just never binds.) */
export function validateLimits(l: ServerLimits): ServerLimits {
  for (const name of Object.keys(DEFAULT_SERVER_LIMITS) as (keyof ServerLimits)[]) {
    const value = l[name];
    if (!Number.isSafeInteger(value) || value < 1) throw new InvalidArgumentError(`limit ${name} must be a positive integer, got ${value}`);
  }
  return l;
}

/** The defaults with `overrides` applied, validated. */
export function serverLimits(overrides: Partial<ServerLimits> = {}): ServerLimits {
  return validateLimits({ ...DEFAULT_SERVER_LIMITS, ...overrides });
}
