import { hexlify, randomBytes } from "ethers";
import { encodeActivations } from "../../protocol/activations.js";
import { EFedError } from "../../protocol/errors.js";
import { ErrorCode, type ServerInfo } from "../../protocol/wire.js";
import { withDeadline } from "../deadline.js";
import { ShardConnection, type ConnectOptions } from "../shardClient.js";

/** What a server must turn out to be when the client connects (from the chain); absent: anything. */
export interface Expectation {
  operator?: string;
  variantId?: string;
  firstLayer?: number;
  lastLayer?: number;
}

export interface MeasureTarget {
  url: string;
  expect?: Expectation;
}

export type Measurement =
  /** `note` says when `stepMs` is not a measured step (a priced server refuses an unpaid one: then it is the round trip). */
  | { url: string; ok: true; info: ServerInfo; rttMs: number; stepMs: number; note?: string }
  | { url: string; ok: false; reason: string };

export interface MeasureOptions extends ConnectOptions {
  /**
   * Milliseconds the whole measurement may take (default 3,000): servers measure in parallel, and one
   * that has not finished by then is dropped as too slow.
   */
  budgetMs?: number;
}

export const DEFAULT_MEASURE_BUDGET_MS = 3_000;

/**
 * Measures every target in parallel, itself (a server's self-reported speed is never used): connects,
 * checks the server is what the chain says (address, variant, layers), times a session opening (a
 * round trip) and one 1-token step through its layers, then closes. Each result is a measurement or
 * the reason the server was dropped; the whole run ends within `budgetMs`.
 */
export async function measureServers(targets: readonly MeasureTarget[], options: MeasureOptions = {}): Promise<Measurement[]> {
  const budgetMs = options.budgetMs ?? DEFAULT_MEASURE_BUDGET_MS;
  const connectTimeoutMs = Math.min(options.connectTimeoutMs ?? budgetMs, budgetMs);
  return Promise.all(
    targets.map(async (t): Promise<Measurement> => {
      let connection: ShardConnection | undefined;
      let timedOut = false;
      const measuring = (async () => {
        connection = await ShardConnection.connect(t.url, { ...options, connectTimeoutMs });
        if (timedOut) connection.terminate();
        return probe(connection, t);
      })();
      measuring.catch(() => undefined); // after the deadline its failure is no one's: the reason is the timeout
      try {
        return await withDeadline(measuring, budgetMs, () => new Error(`not measured within ${budgetMs} ms`));
      } catch (err) {
        timedOut = true;
        return { url: t.url, ok: false, reason: (err as Error).message };
      } finally {
        connection?.terminate();
      }
    }),
  );
}

async function probe(c: ShardConnection, t: MeasureTarget): Promise<Measurement> {
  const mismatch = expectationMismatch(c.info, t.expect ?? {});
  if (mismatch !== undefined) return { url: t.url, ok: false, reason: mismatch };
  const sessionId = hexlify(randomBytes(32));
  let started = performance.now();
  await c.openSession(sessionId, 1);
  const rttMs = performance.now() - started;
  const input = encodeActivations(new Float32Array(c.info.hiddenSize), 1, c.info.hiddenSize, "fp32");
  started = performance.now();
  try {
    await c.step({ sessionId, step: 0n, position: 0, outputEncoding: "fp32", input, route: [] });
  } catch (err) {
    // A priced server does no unpaid work, not even a probe: paying every candidate for one would
    // cost a channel each. Its round trip stands in for its step (its compute goes unmeasured).
    if (!(err instanceof EFedError && err.code === `SERVER_${ErrorCode.PaymentRequired}`)) throw err;
    await c.closeSession(sessionId);
    return { url: t.url, ok: true, info: c.info, rttMs, stepMs: rttMs, note: "priced: step not measured (no unpaid work), round trip only" };
  }
  const stepMs = performance.now() - started;
  await c.closeSession(sessionId);
  return { url: t.url, ok: true, info: c.info, rttMs, stepMs };
}

/** Why `info` is not the server expected, or undefined when it is. */
export function expectationMismatch(info: ServerInfo, e: Expectation): string | undefined {
  if (e.operator !== undefined && info.server.toLowerCase() !== e.operator.toLowerCase()) {
    return `announces address ${info.server}, the chain registers ${e.operator} at this endpoint`;
  }
  if (e.variantId !== undefined && info.variantId.toLowerCase() !== e.variantId.toLowerCase()) {
    return `serves variant ${info.variantId}, expected ${e.variantId}`;
  }
  if ((e.firstLayer !== undefined && info.firstLayer !== e.firstLayer) || (e.lastLayer !== undefined && info.lastLayer !== e.lastLayer)) {
    return `serves layers ${info.firstLayer}:${info.lastLayer}, the chain registers ${e.firstLayer}:${e.lastLayer}`;
  }
  return undefined;
}
