import { hexlify, randomBytes, type TypedDataDomain } from "ethers";
import { activationHash, decodeActivations, encodeActivations, type ActivationEncoding } from "../protocol/activations.js";
import { receiptDomain } from "../protocol/eip712.js";
import { EFedError } from "../protocol/errors.js";
import { recoverReceiptSigner, type Receipt } from "../protocol/receipt.js";
import type { LayerPipeline, LayerSequence } from "./generate.js";
import { ShardConnection, type ConnectOptions } from "./shardClient.js";

/** A receipt the client checked: signed by the hop's server over exactly what was sent and received. */
export interface VerifiedReceipt {
  receipt: Receipt;
  signature: string;
}

export class RouteError extends EFedError {
  constructor(message: string, details?: Record<string, unknown>) {
    super("BAD_ROUTE", message, details === undefined ? {} : { details });
  }
}

export interface RemotePipelineOptions extends ConnectOptions {
  /** Encoding of hidden states on the wire (default fp32: exact). */
  encoding?: ActivationEncoding;
  /** Tokens per session the servers are asked to hold (default 2048). */
  maxLength?: number;
  /** Called with every verified receipt (the wallet keeps them as evidence). */
  onReceipt?: (r: VerifiedReceipt) => void;
}

/**
 * The layers run by shard servers along a route, in order: the client sends hidden states to the
 * first, its output to the second, and so on, and checks every receipt before going on.
 */
export class RemotePipeline implements LayerPipeline {
  private constructor(
    readonly connections: readonly ShardConnection[],
    private readonly options: RemotePipelineOptions,
  ) {}

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

  async openSequence(): Promise<LayerSequence> {
    const maxLength = this.options.maxLength ?? 2048;
    const encoding = this.options.encoding ?? "fp32";
    const sessions = this.connections.map(() => hexlify(randomBytes(32)));
    await Promise.all(this.connections.map((c, i) => c.openSession(sessions[i]!, maxLength)));
    const domains: TypedDataDomain[] = this.connections.map((c) => receiptDomain(c.info.chainId, c.info.commitments));
    let step = 0n;
    let position = 0;
    // Receipts arrive after each step's output and are checked off the critical path (signature
    // recovery costs ~1.5 ms): the client moves on to the next server meanwhile. A missing or bad
    // receipt fails the next step and the close, so at most one step goes unchecked.
    let failure: Error | undefined;
    let checks: Promise<void> = Promise.resolve();
    const awaited = new Map<string, { receipt: Receipt; resolve: () => void }>();
    const arrived = new Map<string, string>(); // key → signature, when it came before we looked
    const keyOf = (i: number, s: bigint): string => `${i}:${s}`;
    const verify = (i: number, receipt: Receipt, signature: string): void => {
      checks = checks
        .then(() => new Promise<void>((resolve) => setImmediate(resolve)))
        .then(() => {
          const c = this.connections[i]!;
          const signer = recoverReceiptSigner(domains[i]!, receipt, signature);
          if (signer !== c.info.server) {
            throw new RouteError(`${c.url}: receipt for step ${receipt.step} is signed by ${signer}, not the server ${c.info.server}`);
          }
          this.options.onReceipt?.({ receipt, signature });
        })
        .catch((err: unknown) => {
          failure ??= err as Error;
        });
    };
    this.connections.forEach((c, i) => {
      c.listenForReceipts(sessions[i]!, (m) => {
        const key = keyOf(i, m.step);
        const waiting = awaited.get(key);
        if (waiting === undefined) {
          arrived.set(key, m.hop.signature);
          return;
        }
        awaited.delete(key);
        verify(i, waiting.receipt, m.hop.signature);
        waiting.resolve();
      });
    });
    const receiptsDone: Promise<void>[] = [];
    const expectReceipt = (i: number, receipt: Receipt): void => {
      const key = keyOf(i, receipt.step);
      const early = arrived.get(key);
      if (early !== undefined) {
        arrived.delete(key);
        verify(i, receipt, early);
        return;
      }
      receiptsDone.push(new Promise<void>((resolve) => awaited.set(key, { receipt, resolve })));
    };
    return {
      forward: async (hidden) => {
        if (failure !== undefined) throw failure;
        const cols = this.connections[0]!.info.hiddenSize;
        const rows = hidden.length / cols;
        let input = encodeActivations(hidden, rows, cols, encoding);
        for (let i = 0; i < this.connections.length; i++) {
          const c = this.connections[i]!;
          const result = await c.step({ sessionId: sessions[i]!, step, position, outputEncoding: encoding, input, route: [] });
          if (result.output.rows !== rows || result.output.cols !== cols) {
            throw new RouteError(`${c.url} returned ${result.output.rows}×${result.output.cols} activations for ${rows}×${cols}`);
          }
          expectReceipt(i, {
            sessionId: sessions[i]!,
            step,
            firstLayer: c.info.firstLayer,
            lastLayer: c.info.lastLayer,
            variantId: c.info.variantId,
            inputHash: activationHash(input),
            outputHash: activationHash(result.output),
            tokens: rows,
            server: c.info.server,
          });
          input = result.output;
        }
        step++;
        position += rows;
        return decodeActivations(input);
      },
      close: async () => {
        const timeoutMs = this.options.requestTimeoutMs ?? 60_000;
        let timer: NodeJS.Timeout | undefined;
        const timedOut = new Promise<"timeout">((resolve) => (timer = setTimeout(() => resolve("timeout"), timeoutMs)));
        const outcome = await Promise.race([Promise.all(receiptsDone), timedOut]);
        clearTimeout(timer);
        if (outcome === "timeout") {
          const missing = [...awaited.keys()].map((k) => this.connections[Number(k.split(":")[0])]!.url);
          failure ??= new RouteError(`no receipt within ${timeoutMs} ms from ${[...new Set(missing)].join(", ")}`);
        }
        await Promise.all(this.connections.map((c, i) => c.closeSession(sessions[i]!).catch(() => undefined)));
        await checks;
        this.connections.forEach((c, i) => c.listenForReceipts(sessions[i]!, undefined));
        if (failure !== undefined) throw failure;
      },
    };
  }

  close(): void {
    for (const c of this.connections) c.close();
  }
}
