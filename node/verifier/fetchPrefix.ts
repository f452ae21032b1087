import { EFedError, InvalidArgumentError } from "../../protocol/errors.js";
import type { SessionPrefix, StepEvidence } from "./audit.js";

/**
 * What the fetcher needs of a connection to the audited server, authenticated as a registered
 * verifier (client/shardClient.ts ShardConnection has this shape; node/ does not import client/, so
 * the caller brings the connection). Each fetch is bounded by the connection's own request timeout.
 */
export interface StepSource {
  fetchSessionStep(sessionId: string, step: bigint): Promise<StepEvidence>;
}

export interface FetchLimits {
  /** Steps fetched at most for one audit (default 4096): an audit of a later step is refused before fetching. */
  maxSteps: number;
  /** Activation bytes (inputs and outputs) fetched at most for one audit (default 256 MiB). */
  maxBytes: number;
}

export const DEFAULT_FETCH_LIMITS: FetchLimits = { maxSteps: 4096, maxBytes: 256 * 1024 * 1024 };

/**
 * Error codes of a fetch that mean the server did not produce a committed step: it says it has no
 * such step (NotFound, wire code 19), it did not answer within the request timeout, or it closed
 * the connection. Anything else (the verifier not authenticated, a bad frame) is the verifier's
 * problem and is thrown.
 */
const WITHHOLDING_CODES = new Set(["SERVER_19", "TIMEOUT", "CLOSED"]);

/** The audit of a session would fetch more than the limits allow. */
export class AuditTooLargeError extends EFedError {
  constructor(message: string, details: Record<string, unknown>) {
    super("AUDIT_TOO_LARGE", message, { details });
  }
}

/**
 * Fetches steps 0..lastStep of `sessionId` from the server, in order, one request at a time. The
 * first step the server does not produce ends the prefix as `withheld` (with the server's reason);
 * the steps before it are still returned, to be audited.
 */
export async function fetchSessionPrefix(
  source: StepSource,
  sessionId: string,
  lastStep: bigint,
  limits: FetchLimits = DEFAULT_FETCH_LIMITS,
): Promise<SessionPrefix> {
  if (lastStep < 0n) throw new InvalidArgumentError(`last step must be >= 0, got ${lastStep}`);
  if (lastStep >= BigInt(limits.maxSteps)) {
    throw new AuditTooLargeError(`auditing step ${lastStep} of session ${sessionId} needs ${lastStep + 1n} steps, over the limit of ${limits.maxSteps}`, {
      sessionId,
      lastStep,
      maxSteps: limits.maxSteps,
    });
  }
  const steps: StepEvidence[] = [];
  let bytes = 0;
  for (let step = 0n; step <= lastStep; step++) {
    let evidence: StepEvidence;
    try {
      evidence = await source.fetchSessionStep(sessionId, step);
    } catch (err) {
      const code = err instanceof EFedError ? err.code : undefined;
      if (code === undefined || !WITHHOLDING_CODES.has(code)) throw err;
      return { sessionId, steps, withheld: { step, reason: `${code}: ${(err as Error).message}` } };
    }
    bytes += evidence.input.payload.byteLength + evidence.output.payload.byteLength;
    if (bytes > limits.maxBytes) {
      throw new AuditTooLargeError(`session ${sessionId} holds more than ${limits.maxBytes} activation bytes by step ${step}`, {
        sessionId,
        step,
        maxBytes: limits.maxBytes,
      });
    }
    steps.push(evidence);
  }
  return { sessionId, steps };
}
