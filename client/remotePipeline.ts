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
    // Receipts are checked off the critical path: signature recovery costs ~1.5 ms per hop, so it
    // runs while the client waits for the next server. A bad receipt fails the next step and the
    // close, so nothing is paid for (and no output is trusted beyond) one unchecked step.
    let checks: Promise<void> = Promise.resolve();
    let failure: Error | undefined;
    const check = (i: number, receipt: Receipt, signature: string): void => {
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
    return {
      forward: async (hidden) => {
        if (failure !== undefined) throw failure;
        const cols = this.connections[0]!.info.hiddenSize;
        const rows = hidden.length / cols;
        let input = encodeActivations(hidden, rows, cols, encoding);
        for (let i = 0; i < this.connections.length; i++) {
          const c = this.connections[i]!;
          const result = await c.step({ sessionId: sessions[i]!, step, position, outputEncoding: encoding, input, route: [] });
          const hop = result.hops[0];
          if (hop === undefined || result.hops.length !== 1) throw new RouteError(`${c.url} returned ${result.hops.length} receipts for one hop`);
          if (result.output.rows !== rows || result.output.cols !== cols) {
            throw new RouteError(`${c.url} returned ${result.output.rows}×${result.output.cols} activations for ${rows}×${cols}`);
          }
          const receipt: Receipt = {
            sessionId: sessions[i]!,
            step,
            firstLayer: c.info.firstLayer,
            lastLayer: c.info.lastLayer,
            variantId: c.info.variantId,
            inputHash: activationHash(input),
            outputHash: activationHash(result.output),
            tokens: rows,
            server: c.info.server,
          };
          check(i, receipt, hop.signature);
          input = result.output;
        }
        step++;
        position += rows;
        return decodeActivations(input);
      },
      close: async () => {
        await Promise.all(this.connections.map((c, i) => c.closeSession(sessions[i]!).catch(() => undefined)));
        await checks;
        if (failure !== undefined) throw failure;
      },
    };
  }

  close(): void {
    for (const c of this.connections) c.close();
  }
}
