import { hexlify, randomBytes } from "ethers";
import { activationHash, decodeActivations, encodeActivations, type ActivationEncoding, type EncodedActivations } from "../protocol/activations.js";
import { receiptDomain } from "../protocol/eip712.js";
import { buildRoute } from "../protocol/forwarding.js";
import type { SessionClosed, StepResult } from "../protocol/wire.js";
import { Deadline, unlessFirst, withDeadline } from "./deadline.js";
import type { LayerPipeline, LayerSequence } from "./generate.js";
import { ReceiptChecker, type KnownHashes, type VerifiedReceipt } from "./receiptChecker.js";
import { ReceiptError, RouteError, StepTimeoutError, routePlace } from "./routeError.js";
import { routeTiming, stepDeadlineMs, type RouteTimingOptions } from "./routeOptions.js";
import type { PaymentQuery, RoutePayment } from "./payment/routePayment.js";
import { ShardConnection, ShardRequestError, type ConnectOptions } from "./shardClient.js";

export { ReceiptError, RouteError, StepTimeoutError, type VerifiedReceipt };

export interface RemotePipelineOptions extends ConnectOptions, Partial<RouteTimingOptions> {
  /** Encoding of hidden states on the wire (default fp32: exact). */
  encoding?: ActivationEncoding;
  /**
   * Tokens per session the servers are asked to hold when `openSequence` is not told (default: the
   * least any server of the route announces).
   */
  maxLength?: number;
  /**
   * Forwarding (default on; it only applies to routes of more than one server): each step goes to the first
   * server with the rest of the route, each server sends its output straight to the next, and the
   * last one sends the output back, so a step costs one trip through the chain instead of a round
   * trip per server. Off: the client relays every hop's output to the next server itself.
   */
  forward?: boolean;
  /** Called with every verified receipt (the wallet keeps them as evidence). */
  onReceipt?: (r: VerifiedReceipt) => void;
  /** Pays the route's priced servers per step (client/payment/payer.ts). Absent: nothing is paid. */
  payment?: RoutePayment;
}

/** A sequence on a route: one session per server. */
export interface RemoteSequence extends LayerSequence {
  /** The session ids on the route's servers, in route order (receipts and vouchers name them). */
  readonly sessionIds: readonly string[];
}

/** One sequence's sessions along the route. */
interface RouteSessions {
  ids: string[];
  forwardKeys: string[];
  checker: ReceiptChecker;
  step: bigint;
  position: number;
  /** The first failure: every later call fails with it. */
  failure?: Error;
  /** Called when a receipt of step `step` arrives (a forwarded step's deadline restarts on it). */
  progress?: ((step: bigint) => void) | undefined;
  /** The last step's payment, until its servers have acknowledged it (awaited before the next step, and at close). */
  paying?: Promise<void> | undefined;
}

/**
 * The layers run by shard servers along a route, in order, either forwarded server to server or
 * relayed by the client. Every server's receipt comes to the client directly and is checked as it
 * arrives (see ReceiptChecker). Nothing waits without a deadline (see RouteTimingOptions): a server
 * that is unreachable, dead or hung fails the call with an error naming its URL and its position on
 * the route.
 */
export class RemotePipeline implements LayerPipeline {
  readonly forwarding: boolean;
  private readonly timing: RouteTimingOptions;
  /** A step failed: a server may hang, so `close` drops the connections instead of saying goodbye. */
  private broken = false;

  private constructor(
    readonly connections: readonly ShardConnection[],
    private readonly options: RemotePipelineOptions,
  ) {
    // with one server there is nothing to forward to: its step is a plain round trip either way
    this.forwarding = (options.forward ?? true) && connections.length > 1;
    this.timing = routeTiming(options);
  }

  /**
   * Connects to every server of `urls` and checks they cover layers 0..numLayers of one variant
   * contiguously. Fails at the first server that cannot be reached (within `connectTimeoutMs`), and
   * then closes the connections to the others as they open.
   */
  static async connect(urls: readonly string[], numLayers: number, options: RemotePipelineOptions = {}): Promise<RemotePipeline> {
    if (urls.length === 0) throw new RouteError("the route has no servers");
    const { connectTimeoutMs } = routeTiming(options);
    const connecting = urls.map((u, i) =>
      ShardConnection.connect(u, { ...options, connectTimeoutMs }).catch((err: unknown) => {
        throw atServer(err, i, urls, "cannot be reached");
      }),
    );
    let connections: ShardConnection[];
    try {
      connections = await Promise.all(connecting);
    } catch (err) {
      // the first failure is the route's; the others' connects fail or are dropped once open
      for (const c of connecting) c.then((open) => open.terminate(), () => undefined);
      throw err;
    }
    try {
      let expected = 0;
      const variant = connections[0]!.info.variantId;
      for (const c of connections) {
        if (c.info.variantId !== variant) {
          throw new RouteError(`${c.url} serves variant ${c.info.variantId}, the route's first server ${variant}`, { url: c.url });
        }
        if (c.info.firstLayer !== expected) {
          throw new RouteError(`${c.url} serves layers ${c.info.firstLayer}:${c.info.lastLayer}, expected the next to start at ${expected}`, { url: c.url });
        }
        expected = c.info.lastLayer;
      }
      if (expected !== numLayers) throw new RouteError(`the route ends at layer ${expected}, the model has ${numLayers}`);
    } catch (err) {
      for (const c of connections) c.close();
      throw err;
    }
    return new RemotePipeline(connections, options);
  }

  /**
   * Opens a session on every server of the route, each to hold `maxLength` tokens (default: the
   * `maxLength` option, else the least any server announces); a server that cannot hold them refuses.
   * Its payment counts to `query` (failover passes one query through a generation's routes).
   */
  async openSequence(maxLength?: number, query?: PaymentQuery): Promise<RemoteSequence> {
    const length = maxLength ?? this.options.maxLength ?? Math.min(...this.connections.map((c) => c.info.maxSessionTokens));
    const ids = this.connections.map(() => hexlify(randomBytes(32)));
    const forwardKeys = await this.openSessions(ids, length);
    let payment;
    try {
      payment = await this.options.payment?.openSequence(this.connections, ids, length, query);
    } catch (err) {
      await this.closeSessions(ids);
      throw err;
    }
    const checker = new ReceiptChecker(
      this.connections.map((c, i) => ({
        url: c.url,
        server: c.info.server,
        domain: receiptDomain(c.info.chainId, c.info.commitments),
        firstLayer: c.info.firstLayer,
        lastLayer: c.info.lastLayer,
        variantId: c.info.variantId,
        sessionId: ids[i]!,
        signEvery: c.info.signEvery,
      })),
      this.options.onReceipt,
    );
    const s: RouteSessions = { ids, forwardKeys, checker, step: 0n, position: 0 };
    this.connections.forEach((c, i) =>
      c.listenForReceipts(ids[i]!, (m) => {
        checker.arrive(i, m);
        s.progress?.(m.step);
      }),
    );
    return {
      sessionIds: ids,
      compute: async (hidden) => {
        if (s.failure !== undefined) throw s.failure;
        try {
          // a priced server takes a session's step only once the one before it is paid
          await s.paying;
          const cols = this.connections[0]!.info.hiddenSize;
          const rows = hidden.length / cols;
          const input = encodeActivations(hidden, rows, cols, this.options.encoding ?? "fp32");
          // bounded lag: see RouteTimingOptions.maxUnverifiedSteps
          await checker.beforeStep(s.step, this.timing.maxUnverifiedSteps, this.timing.stepTimeoutMs);
          payment?.beforeStep(rows);
          const output = this.forwarding ? await this.forwarded(s, input) : await this.relayed(s, input);
          checker.throwIfFailed();
          // paid while the caller works on this output (LM head, sampling): its vouchers or tickets
          // leave now, their acknowledgements are awaited before the next step or at close
          s.paying = payment?.afterStep(rows);
          s.paying?.catch(() => undefined);
          s.step++;
          s.position += rows;
          return decodeActivations(output);
        } catch (err) {
          payment?.stepFailed?.();
          throw this.failed(s, err);
        }
      },
      close: async () => {
        try {
          if (s.failure === undefined) {
            await s.paying;
            // what the servers' credit left unpaid is paid before their sessions close
            await payment?.settle();
            await checker.settle(this.timing.stepTimeoutMs);
          }
        } catch (err) {
          throw this.failed(s, err);
        } finally {
          this.connections.forEach((c, i) => c.listenForReceipts(ids[i]!, undefined));
        }
        // a failed sequence's sessions end with the connection, or the server's idle timeout
        if (s.failure !== undefined) return;
        // each server signs the receipts it has not signed yet as its session closes
        const chains = await this.closeSessions(ids);
        try {
          await checker.seal(chains, this.timing.stepTimeoutMs);
        } catch (err) {
          throw this.failed(s, err);
        }
      },
    };
  }

  /** Records the sequence's failure: a server that did not answer may hang, so `close` will not wait for it. */
  private failed(s: RouteSessions, err: unknown): Error {
    s.failure = err as Error;
    if (!(err instanceof ReceiptError)) this.broken = true;
    return s.failure;
  }

  /** Closes the connections; after a failed step, at once (a hung server would hold a polite close for 30 s). */
  close(): void {
    for (const c of this.connections) {
      if (this.broken) c.terminate();
      else c.close();
    }
  }

  /** Opens session `ids[i]` on server i, each within the step deadline; resolves with the forwarding keys. */
  private async openSessions(ids: readonly string[], maxLength: number): Promise<string[]> {
    const ms = this.timing.stepTimeoutMs;
    const opening = this.connections.map((c, i) =>
      withDeadline(c.openSession(ids[i]!, maxLength), ms, () => new StepTimeoutError(c.url, i, ids.length, "an answer to open a session", ms)).catch(
        (err: unknown) => {
          throw atServer(err, i, this.urls, `refused a session of ${maxLength} tokens`);
        },
      ),
    );
    const opened = await Promise.allSettled(opening);
    const failed = opened.find((o) => o.status === "rejected");
    if (failed === undefined) return opened.map((o) => (o as PromiseFulfilledResult<string>).value);
    this.broken = true;
    await this.closeSessions(ids, (i) => opened[i]!.status === "fulfilled");
    throw failed.reason;
  }

  /**
   * Closes session `ids[i]` on server i (those `which` selects), each within the step deadline;
   * resolves with each server's signature over the rest of its receipt chain (undefined: none given).
   * A session that does not close is the server's to drop (idle timeout, connection closed); what it
   * leaves unsigned is the receipt checker's to judge.
   */
  private async closeSessions(ids: readonly string[], which: (i: number) => boolean = () => true): Promise<(SessionClosed["chain"] | undefined)[]> {
    const ms = this.timing.stepTimeoutMs;
    const closing = this.connections.map((c, i) =>
      which(i) ? withDeadline(c.closeSession(ids[i]!), ms, () => new StepTimeoutError(c.url, i, ids.length, "an answer to close a session", ms)) : undefined,
    );
    const closed = await Promise.allSettled(closing);
    return closed.map((c) => (c.status === "fulfilled" ? c.value : undefined));
  }

  private get urls(): string[] {
    return this.connections.map((c) => c.url);
  }

  /** The client sends each server's output to the next itself: a round trip per server, each within its deadline. */
  private async relayed(s: RouteSessions, first: EncodedActivations): Promise<EncodedActivations> {
    const known: KnownHashes[] = [];
    const k = this.connections.length;
    const ms = stepDeadlineMs(this.timing, first.rows);
    let input = first;
    for (let i = 0; i < k; i++) {
      const c = this.connections[i]!;
      const stepping = c.step({ sessionId: s.ids[i]!, step: s.step, position: s.position, outputEncoding: input.encoding, input, route: [] });
      let result: StepResult;
      try {
        result = await withDeadline(stepping, ms, () => new StepTimeoutError(c.url, i, k, `the output of step ${s.step}`, ms));
      } catch (err) {
        throw atServer(err, i, this.urls, `failed step ${s.step}`);
      }
      this.checkShape(c, result.output, input);
      known.push({ inputHash: activationHash(input), outputHash: activationHash(result.output) });
      s.checker.know(s.step, i, known[i]!);
      input = result.output;
    }
    s.checker.expect(s.step, first.rows, known);
    return input;
  }

  /**
   * One trip through the chain: the first server gets the step and the route, the last one sends the
   * output. The deadline restarts whenever a server's receipt for the step arrives; when it runs
   * out, the server blamed is the first one whose receipt has not come.
   */
  private async forwarded(s: RouteSessions, input: EncodedActivations): Promise<EncodedActivations> {
    const k = this.connections.length;
    const first = this.connections[0]!;
    const last = this.connections[k - 1]!;
    const tagged = { step: s.step, position: s.position, rows: input.rows, outputEncoding: input.encoding };
    const hops = this.connections.slice(1).map((c, i) => ({ url: c.url, sessionId: s.ids[i + 1]!, forwardKey: s.forwardKeys[i + 1]!, server: c.info.server }));
    const route = buildRoute(first.info.server, hops, tagged);
    const step = s.step;
    const ms = stepDeadlineMs(this.timing, input.rows);
    const deadline = new Deadline(ms, () => {
      const i = s.checker.firstMissingReceipt(step) ?? k - 1;
      return new StepTimeoutError(this.connections[i]!.url, i, k, `its part of step ${step}`, ms);
    });
    s.progress = (receiptStep) => receiptStep === step && deadline.restart();
    const waiting = last.awaitResult(s.ids[k - 1]!, s.step);
    const done = first.stepRouted({ sessionId: s.ids[0]!, ...tagged, input, route });
    // the route's acknowledgement may come before or after the output: only its failure counts here
    const routeFailed = done.then(
      () => new Promise<Error>(() => undefined),
      (err: unknown) => this.hopError(err, step),
    );
    let result: StepResult;
    try {
      const output = waiting.result.catch((err: unknown) => {
        throw atServer(err, k - 1, this.urls, `failed step ${step}`);
      });
      result = await unlessFirst(output, routeFailed, deadline.expired);
    } finally {
      waiting.cancel();
      deadline.clear();
      s.progress = undefined;
    }
    // The route's answer follows the output; a failure reported after it fails the next step.
    done.catch((err: unknown) => s.checker.fail(this.hopError(err, step)));
    this.checkShape(last, result.output, input);
    s.checker.expect(step, input.rows, [{ inputHash: activationHash(input) }, ...hops.slice(1).map(() => ({})), { outputHash: activationHash(result.output) }]);
    return result.output;
  }

  /** A forwarded step's failure, named by the server of the route where it happened (`hop` counts from the first). */
  private hopError(err: unknown, step: bigint): Error {
    const hop = err instanceof ShardRequestError ? err.hop : 0;
    return atServer(err, hop, this.urls, `failed step ${step}`);
  }

  private checkShape(c: ShardConnection, output: EncodedActivations, input: EncodedActivations): void {
    if (output.rows !== input.rows || output.cols !== input.cols) {
      throw new RouteError(`${c.url} returned ${output.rows}×${output.cols} activations for ${input.rows}×${input.cols}`, { url: c.url });
    }
  }
}

/**
 * `err` as a failure of server `index` of the route: "server 2 of 3 on the route (URL) failed step
 * 3: <the server's message>", code and details kept. Errors that already name their server pass.
 */
function atServer(err: unknown, index: number, urls: readonly string[], what: string): Error {
  if (!(err instanceof ShardRequestError)) return err instanceof Error ? err : new Error(String(err)); // timeouts and route errors name their server already
  const url = urls[index] ?? `hop ${index} (beyond the route)`;
  const details: Record<string, unknown> = { ...err.details };
  const serverMessage = typeof details.message === "string" ? details.message : err.message;
  return new ShardRequestError(err.code, `${routePlace(index, urls.length, url)} ${what}: ${serverMessage}`, { ...details, url }, err.hop);
}
