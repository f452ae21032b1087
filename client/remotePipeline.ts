import { hexlify, randomBytes } from "ethers";
import { activationHash, decodeActivations, encodeActivations, type ActivationEncoding, type EncodedActivations } from "../protocol/activations.js";
import { receiptDomain } from "../protocol/eip712.js";
import { buildRoute } from "../protocol/forwarding.js";
import type { LayerPipeline, LayerSequence } from "./generate.js";
import { ReceiptChecker, type KnownHashes, type VerifiedReceipt } from "./receiptChecker.js";
import { RouteError } from "./routeError.js";
import { ShardConnection, ShardRequestError, type ConnectOptions } from "./shardClient.js";

export { RouteError, type VerifiedReceipt };

export interface RemotePipelineOptions extends ConnectOptions {
  /** Encoding of hidden states on the wire (default fp32: exact). */
  encoding?: ActivationEncoding;
  /** Tokens per session the servers are asked to hold (default 2048). */
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
}

/**
 * The layers run by shard servers along a route, in order, either forwarded server to server or
 * relayed by the client. Every server's receipt comes to the client directly and is checked off
 * the critical path (see ReceiptChecker).
 */
export class RemotePipeline implements LayerPipeline {
  readonly forwarding: boolean;

  private constructor(
    readonly connections: readonly ShardConnection[],
    private readonly options: RemotePipelineOptions,
  ) {
    // with one server there is nothing to forward to: its step is a plain round trip either way
    this.forwarding = (options.forward ?? true) && connections.length > 1;
  }

  /** Connects to every server of `urls` and checks they cover layers 0..numLayers of `variantId` contiguously. */
  static async connect(urls: readonly string[], numLayers: number, options: RemotePipelineOptions = {}): Promise<RemotePipeline> {
    if (urls.length === 0) throw new RouteError("the route has no servers");
    const connections = await Promise.all(urls.map((u) => ShardConnection.connect(u, options)));
    try {
      let expected = 0;
      const variant = connections[0]!.info.variantId;
      for (const c of connections) {
        if (c.info.variantId !== variant) {
          throw new RouteError(`${c.url} serves variant ${c.info.variantId}, the route's first server ${variant}`);
        }
        if (c.info.firstLayer !== expected) {
          throw new RouteError(`${c.url} serves layers ${c.info.firstLayer}:${c.info.lastLayer}, expected the next to start at ${expected}`);
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

  async openSequence(): Promise<RemoteSequence> {
    const maxLength = this.options.maxLength ?? Math.min(...this.connections.map((c) => c.info.maxSessionTokens));
    const ids = this.connections.map(() => hexlify(randomBytes(32)));
    const forwardKeys = await Promise.all(this.connections.map((c, i) => c.openSession(ids[i]!, maxLength)));
    const checker = new ReceiptChecker(
      this.connections.map((c, i) => ({
        url: c.url,
        server: c.info.server,
        domain: receiptDomain(c.info.chainId, c.info.commitments),
        firstLayer: c.info.firstLayer,
        lastLayer: c.info.lastLayer,
        variantId: c.info.variantId,
        sessionId: ids[i]!,
      })),
      this.options.onReceipt,
    );
    this.connections.forEach((c, i) => c.listenForReceipts(ids[i]!, (m) => checker.arrive(i, m)));
    const s: RouteSessions = { ids, forwardKeys, checker, step: 0n, position: 0 };
    return {
      sessionIds: ids,
      forward: async (hidden) => {
        checker.throwIfFailed();
        const cols = this.connections[0]!.info.hiddenSize;
        const rows = hidden.length / cols;
        const input = encodeActivations(hidden, rows, cols, this.options.encoding ?? "fp32");
        const output = this.forwarding ? await this.forwarded(s, input) : await this.relayed(s, input);
        s.step++;
        s.position += rows;
        return decodeActivations(output);
      },
      close: async () => {
        try {
          await checker.settle(this.options.requestTimeoutMs ?? 60_000);
        } finally {
          await Promise.all(this.connections.map((c, i) => c.closeSession(ids[i]!).catch(() => undefined)));
          this.connections.forEach((c, i) => c.listenForReceipts(ids[i]!, undefined));
        }
      },
    };
  }

  close(): void {
    for (const c of this.connections) c.close();
  }

  /** The client sends each server's output to the next itself: a round trip per server. */
  private async relayed(s: RouteSessions, first: EncodedActivations): Promise<EncodedActivations> {
    const known: KnownHashes[] = [];
    let input = first;
    for (let i = 0; i < this.connections.length; i++) {
      const c = this.connections[i]!;
      const result = await c.step({ sessionId: s.ids[i]!, step: s.step, position: s.position, outputEncoding: input.encoding, input, route: [] });
      this.checkShape(c, result.output, input);
      known.push({ inputHash: activationHash(input), outputHash: activationHash(result.output) });
      input = result.output;
    }
    s.checker.expect(s.step, first.rows, known);
    return input;
  }

  /** One trip through the chain: the first server gets the step and the route, the last one sends the output. */
  private async forwarded(s: RouteSessions, input: EncodedActivations): Promise<EncodedActivations> {
    const k = this.connections.length;
    const first = this.connections[0]!;
    const last = this.connections[k - 1]!;
    const tagged = { step: s.step, position: s.position, rows: input.rows, outputEncoding: input.encoding };
    const hops = this.connections.slice(1).map((c, i) => ({ url: c.url, sessionId: s.ids[i + 1]!, forwardKey: s.forwardKeys[i + 1]! }));
    const route = buildRoute(hops, tagged);
    const waiting = last.awaitResult(s.ids[k - 1]!, s.step);
    const done = first.stepRouted({ sessionId: s.ids[0]!, ...tagged, input, route });
    const step = s.step;
    let result;
    try {
      result = await new Promise<Awaited<typeof waiting.result>>((resolve, reject) => {
        waiting.result.then(resolve, reject);
        done.catch((err: unknown) => reject(this.hopError(err, step)));
      });
    } finally {
      waiting.cancel();
    }
    // The route's answer follows the output; a failure reported after it fails the next step.
    done.catch((err: unknown) => s.checker.fail(this.hopError(err, step)));
    this.checkShape(last, result.output, input);
    s.checker.expect(s.step, input.rows, [{ inputHash: activationHash(input) }, ...hops.slice(1).map(() => ({})), { outputHash: activationHash(result.output) }]);
    return result.output;
  }

  /** A forwarded step's failure, named by the server of the route where it happened. */
  private hopError(err: unknown, step: bigint): Error {
    if (!(err instanceof ShardRequestError) || err.hop === 0) return err instanceof Error ? err : new Error(String(err));
    const failed = this.connections[err.hop];
    const url = failed?.url ?? `hop ${err.hop} (beyond the route)`;
    const serverMessage = typeof err.details?.message === "string" ? err.details.message : err.message;
    return new ShardRequestError(
      err.code,
      `server ${err.hop + 1} of ${this.connections.length} on the route (${url}) failed step ${step}: ${serverMessage}`,
      { ...err.details, url },
      err.hop,
    );
  }

  private checkShape(c: ShardConnection, output: EncodedActivations, input: EncodedActivations): void {
    if (output.rows !== input.rows || output.cols !== input.cols) {
      throw new RouteError(`${c.url} returned ${output.rows}×${output.cols} activations for ${input.rows}×${input.cols}`);
    }
  }
}
