import { EFedError } from "../protocol/errors.js";
import { concatFloat32 } from "../protocol/floats.js";
import { BanList } from "./failoverBans.js";
import { failedServerUrl } from "./failoverErrors.js";
import type { LayerPipeline, LayerSequence } from "./generate.js";
import { PaymentQuery } from "./payment/routePayment.js";
import { RemotePipeline, type RemotePipelineOptions, type RemoteSequence } from "./remotePipeline.js";
import { ReceiptError } from "./routeError.js";

/**
 * Finds a route (server URLs in layer order) that avoids the `banned` servers, given the route that
 * just failed: one or several servers replacing the failed one's span, or a wholly new route.
 * Throws (a RouteError naming the uncovered layers) when none is left.
 */
export type Replanner = (banned: ReadonlySet<string>, failedRoute: readonly string[]) => Promise<string[]>;

/** One failover, as reported to `onFailover`. */
export interface FailoverEvent {
  /** The server blamed, and what it did. */
  failedUrl: string;
  error: Error;
  /** How long it is banned, milliseconds. */
  banMs: number;
  /** The route the sequence continues on. */
  route: readonly string[];
  /** Tokens replayed to rebuild the new sessions' caches (the whole history, in one prefill). */
  replayedTokens: number;
  /** Milliseconds from the failed call to the replayed step's output, detection included. */
  stallMs: number;
}

export interface FailoverOptions extends RemotePipelineOptions {
  /** Failovers one step may take before it fails with the last error (default 3). */
  maxFailoversPerStep?: number;
  /** Servers kept off the route after they fail (default: a BanList of its own). */
  bans?: BanList;
  onFailover?: (e: FailoverEvent) => void;
}

/** A RemotePipeline and the sequences on it: it closes once replaced and no sequence is left. */
interface RouteInUse {
  pipeline: RemotePipeline;
  route: string[];
  sequences: number;
}

/**
 * A route that survives its servers. Each sequence keeps every hidden state it sent into the route
 * (the inputs of the first span; the servers after it compute theirs from those). When a step fails
 * because of one server (closed, silent, hung past the step deadline, wrong layers, a receipt that
 * does not check out for the step being computed), the server is banned, the replanner finds a route
 * around it, new sessions are opened along it and the whole history plus the failed step is sent as
 * one prefill; its last rows are the failed step's output, and generation continues. The sampler
 * lives in `generate`, so its RNG state is untouched: greedy output equals an uninterrupted run up to
 * the float differences between a prefill and step-by-step decoding (test/engine/exactness.test.ts).
 *
 * Every server of the new route gets new sessions, healthy ones included: a forwarding client never
 * sees the activations between servers, so the history it holds is the first span's input, and
 * replaying it through the whole route keeps every session on one step count.
 *
 * A bad receipt for a step whose output was already used cannot be repaired here (the tokens
 * sampled from it are gone): it fails the generation as before, naming that step.
 */
export class FailoverPipeline implements LayerPipeline {
  private readonly bans: BanList;
  private readonly maxFailoversPerStep: number;
  private current: RouteInUse;
  /** Every route still open: the current one, and replaced ones that sequences still use. */
  private readonly open = new Set<RouteInUse>();

  private constructor(
    first: RouteInUse,
    private readonly numLayers: number,
    private readonly replan: Replanner,
    private readonly options: FailoverOptions,
  ) {
    this.current = first;
    this.open.add(first);
    this.bans = options.bans ?? new BanList();
    this.maxFailoversPerStep = options.maxFailoversPerStep ?? 3;
  }

  /** Connects to `route`; when a server of it cannot be reached, bans it and connects to a replanned route. */
  static async connect(route: readonly string[], numLayers: number, replan: Replanner, options: FailoverOptions = {}): Promise<FailoverPipeline> {
    const maxFailovers = options.maxFailoversPerStep ?? 3;
    const bans = options.bans ?? new BanList();
    const first = await connectAvoiding([...route], numLayers, replan, bans, { ...options, maxFailoversPerStep: maxFailovers });
    return new FailoverPipeline({ ...first, sequences: 0 }, numLayers, replan, { ...options, bans });
  }

  /** The route new sequences open on. */
  get route(): readonly string[] {
    return this.current.route;
  }

  async openSequence(maxLength?: number): Promise<RemoteSequence> {
    // what this sequence pays on every route it runs on is one query (a per-query spending limit counts it all)
    const query = new PaymentQuery();
    let { use, inner } = await this.opened(this.acquire(), maxLength, query);
    /** The sequence failed for good and gave its route back: `close` has nothing to release. */
    let released = false;
    /** Every hidden state sent into the route so far, in order: what a new route replays. */
    const history: Float32Array[] = [];
    let historyRows = 0;
    let steps = 0; // steps of this sequence (what generate counts)
    let stepOf = (innerStep: bigint): bigint => innerStep; // this sequence's step of a step of `inner`
    const hiddenSize = (): number => use.pipeline.connections[0]!.info.hiddenSize;
    /** Sessions of the routes this sequence ran on, earlier routes first (what cost accounting names). */
    const earlierSessions: string[] = [];
    const sessionsOf = (sequence: LayerSequence): readonly string[] => (sequence as Partial<RemoteSequence>).sessionIds ?? [];
    return {
      get sessionIds(): readonly string[] {
        return [...earlierSessions, ...sessionsOf(inner)];
      },
      compute: async (hidden) => {
        const started = performance.now();
        let pending: Omit<FailoverEvent, "stallMs"> | undefined;
        for (let failovers = 0; ; failovers++) {
          try {
            let output: Float32Array;
            if (pending === undefined) {
              output = await inner.compute(hidden);
            } else {
              const replayed = await replay(inner, [...history, hidden], hiddenSize(), maxStepRows(use.pipeline));
              output = replayed.slice(replayed.length - hidden.length);
            }
            history.push(hidden.slice());
            historyRows += hidden.length / hiddenSize();
            steps++;
            if (pending !== undefined) this.options.onFailover?.({ ...pending, stallMs: performance.now() - started });
            return output;
          } catch (raw) {
            const err = renumbered(raw, stepOf);
            const url = failedServerUrl(err);
            const earlier = err instanceof ReceiptError && Number(err.step) < steps;
            if (url === undefined || earlier || failovers >= this.maxFailoversPerStep) throw err;
            await inner.close().catch(() => undefined); // its failure is the one just caught
            earlierSessions.push(...sessionsOf(inner));
            const banMs = this.bans.ban(url);
            try {
              ({ use, inner } = await this.opened(await this.replaced(use, err), maxLength, query));
            } catch (repairErr) {
              released = true;
              throw repairErr;
            }
            const rows = historyRows + hidden.length / hiddenSize();
            // the replay's chunks are steps 0..c-1 of the new sessions, all of them this sequence's step `steps`
            const chunks = Math.ceil(rows / maxStepRows(use.pipeline));
            const first = BigInt(steps);
            stepOf = (s) => first + (s < BigInt(chunks) ? 0n : s - BigInt(chunks - 1));
            pending = { failedUrl: url, error: err, banMs, route: use.route, replayedTokens: rows };
          }
        }
      },
      close: async () => {
        try {
          await inner.close();
        } catch (err) {
          throw renumbered(err, stepOf);
        } finally {
          if (!released) this.releaseRoute(use);
          released = true;
        }
      },
    };
  }

  /** Closes every connection (sequences still open fail). */
  close(): void {
    for (const use of this.open) use.pipeline.close();
    this.open.clear();
  }

  private acquire(): RouteInUse {
    this.current.sequences++;
    return this.current;
  }

  private releaseRoute(use: RouteInUse): void {
    use.sequences--;
    if (use.sequences === 0 && use !== this.current) this.retire(use);
  }

  /**
   * A sequence opened on `use` (acquired by the caller), or, when a server refuses or fails to open
   * it, on a route around that server, at most `maxFailoversPerStep` times. On failure the route
   * is released.
   */
  private async opened(use: RouteInUse, maxLength: number | undefined, query: PaymentQuery): Promise<{ use: RouteInUse; inner: LayerSequence }> {
    for (let attempt = 0; ; attempt++) {
      try {
        return { use, inner: await use.pipeline.openSequence(maxLength, query) };
      } catch (err) {
        const url = failedServerUrl(err);
        if (url === undefined || attempt >= this.maxFailoversPerStep) {
          this.releaseRoute(use);
          throw err;
        }
        this.bans.ban(url);
        use = await this.replaced(use, err as Error);
      }
    }
  }

  /**
   * Releases `failed` and returns a route in use without the servers banned now, acquired: the
   * current one when another sequence has already moved to one, else a replanned one (which
   * becomes current). When none can be found, throws (and `failed` stays released).
   */
  private async replaced(failed: RouteInUse, err: Error): Promise<RouteInUse> {
    this.releaseRoute(failed);
    const banned = this.bans.banned();
    if (this.current !== failed && !this.current.route.some((u) => banned.has(u))) return this.acquire();
    const next = await connectAvoiding(await this.replanOrFail(banned, failed.route, err), this.numLayers, this.replan, this.bans, this.options);
    const previous = this.current;
    this.current = { ...next, sequences: 0 };
    this.open.add(this.current);
    if (previous.sequences === 0) this.retire(previous);
    return this.acquire();
  }

  private retire(use: RouteInUse): void {
    use.pipeline.close();
    this.open.delete(use);
  }

  private async replanOrFail(banned: ReadonlySet<string>, route: readonly string[], err: Error): Promise<string[]> {
    try {
      return await this.replan(banned, route);
    } catch (planErr) {
      // the failure keeps its code (what went wrong); the message adds why nothing could replace the server
      const code = err instanceof EFedError ? err.code : "ROUTE_FAILED";
      throw new EFedError(code, `${err.message}; no route around it: ${(planErr as Error).message}`, { cause: planErr, details: { url: failedServerUrl(err) } });
    }
  }
}

/** Connects to `route`, banning and replanning around servers that cannot be reached, at most `maxFailoversPerStep` times. */
async function connectAvoiding(
  route: string[],
  numLayers: number,
  replan: Replanner,
  bans: BanList,
  options: FailoverOptions,
): Promise<{ pipeline: RemotePipeline; route: string[] }> {
  for (let attempt = 0; ; attempt++) {
    try {
      return { pipeline: await RemotePipeline.connect(route, numLayers, options), route };
    } catch (err) {
      const url = failedServerUrl(err);
      if (url === undefined || attempt >= (options.maxFailoversPerStep ?? 3)) throw err;
      bans.ban(url);
      route = await replan(bans.banned(), route);
    }
  }
}

/** `err` with its step counted from the start of the sequence instead of from the start of the route it failed on. */
function renumbered(err: unknown, stepOf: (innerStep: bigint) => bigint): Error {
  if (!(err instanceof ReceiptError)) return err instanceof Error ? err : new EFedError("FAILED", String(err));
  const step = stepOf(err.step);
  return step === err.step ? err : new ReceiptError(err.message, err.url, step);
}

/** The most tokens one step may carry on every server of `pipeline`. */
function maxStepRows(pipeline: RemotePipeline): number {
  return Math.min(...pipeline.connections.map((c) => c.info.maxStepTokens));
}

/**
 * Sends the whole history into a new sequence as one prefill (in chunks of at most `maxRows` when
 * the servers take fewer tokens per step) and returns the last chunk's output.
 */
async function replay(sequence: LayerSequence, parts: readonly Float32Array[], hiddenSize: number, maxRows: number): Promise<Float32Array> {
  const all = concatFloat32(parts);
  const rows = all.length / hiddenSize;
  // the last chunk is a full one, so that it holds the whole failed step
  const chunks = Math.ceil(rows / maxRows);
  let output: Float32Array = new Float32Array(0);
  for (let at = rows - (chunks - 1) * maxRows, from = 0; from < rows; from = at, at += maxRows) {
    output = await sequence.compute(all.subarray(from * hiddenSize, at * hiddenSize));
  }
  return output;
}
