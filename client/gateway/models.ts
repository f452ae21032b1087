import type { TextTokenizer } from "../../engine/model/tokenizer.js";
import type { TokenHead } from "../batchingHead.js";
import type { ChatTemplate } from "../chat/template.js";
import type { LayerPipeline } from "../generate.js";
import { noRoute } from "./errors.js";
import { gateSteps } from "./stepGate.js";

/** The layers of a model as opened for the gateway, and how to let them go. */
export interface OpenedLayers {
  pipeline: LayerPipeline;
  /** The servers that run the layers, in route order (response header `x-efed-servers`). */
  servers: readonly string[];
  close(): Promise<void>;
}

/** The layers lent to one request: `release` once its sequences are closed, saying whether they failed. */
export interface LayersLease {
  pipeline: LayerPipeline;
  servers: readonly string[];
  release(failed: boolean): void;
}

export interface GatewayModelOptions {
  /** The name clients ask for (`model` in requests), exactly. */
  id: string;
  /** The LM head, shared by all requests (a BatchingHead batches their logits). */
  head: TokenHead;
  tokenizer: TextTokenizer;
  template: ChatTemplate;
  /** Tokens that end a generation (the model's EOS ids). */
  eosTokenIds: readonly number[];
  /** Opens the layers: connects a route and checks it covers every layer; rejects when none does. */
  openLayers: () => Promise<OpenedLayers>;
  /** Seconds between tries to open the layers after a failure, told to clients as Retry-After (default 5). */
  retryAfterS?: number;
  /** Unix seconds reported as `created` (default: when the gateway started). */
  created?: number;
  /** Steps of all requests running at once at most; more wait (default 8, see gateSteps). */
  maxStepsInFlight?: number;
}

/**
 * A model the gateway serves. All requests share one set of layers (one route: its connections
 * are shared and each request's sequences are sessions on them, which the servers batch); it is
 * opened on first use and opened again after a request fails on it (the old one closes once its
 * other requests are done). While no route covers the model, tries are spaced by `retryAfterS`
 * and requests get a 503 saying why.
 */
export class GatewayModel {
  readonly id: string;
  readonly created: number;
  readonly retryAfterS: number;
  private current: { layers: OpenedLayers; gated: LayerPipeline; active: number; stale: boolean } | undefined;
  private opening: Promise<void> | undefined;
  private lastFailure: { atMs: number; reason: string } | undefined;

  constructor(readonly options: GatewayModelOptions) {
    this.id = options.id;
    this.created = options.created ?? Math.floor(Date.now() / 1000);
    this.retryAfterS = options.retryAfterS ?? 5;
  }

  get head(): TokenHead {
    return this.options.head;
  }

  get tokenizer(): TextTokenizer {
    return this.options.tokenizer;
  }

  get context(): number {
    return this.options.head.config.maxPositionEmbeddings;
  }

  /** Whether a route covers every layer now (opening one when there is none and a try is due). */
  async covered(): Promise<boolean> {
    try {
      await this.ensureOpen();
      return true;
    } catch {
      return false; // the reason is kept in lastFailure for the requests that ask
    }
  }

  /** The layers for one request; throws a 503 ApiError with Retry-After when no route covers the model. */
  async acquire(): Promise<LayersLease> {
    await this.ensureOpen();
    const held = this.current!;
    held.active++;
    return {
      pipeline: held.gated,
      servers: held.layers.servers,
      release: (failed) => {
        held.active--;
        if (failed) held.stale = true;
        if (held.stale && held.active === 0) void this.retire(held);
      },
    };
  }

  async close(): Promise<void> {
    await this.opening?.catch(() => undefined);
    const held = this.current;
    this.current = undefined;
    if (held !== undefined) await held.layers.close();
  }

  private async ensureOpen(): Promise<void> {
    if (this.current !== undefined && !this.current.stale) return;
    if (this.opening === undefined) {
      const failure = this.lastFailure;
      const waitMs = failure === undefined ? 0 : failure.atMs + this.retryAfterS * 1000 - Date.now();
      if (failure !== undefined && waitMs > 0) throw noRoute(this.id, failure.reason, Math.ceil(waitMs / 1000));
      this.opening = this.open().finally(() => (this.opening = undefined));
    }
    await this.opening;
  }

  private async open(): Promise<void> {
    try {
      const layers = await this.options.openLayers();
      this.lastFailure = undefined;
      this.current = { layers, gated: gateSteps(layers.pipeline, this.options.maxStepsInFlight), active: 0, stale: false };
    } catch (err) {
      const reason = err instanceof Error ? err.message : String(err);
      this.lastFailure = { atMs: Date.now(), reason };
      throw noRoute(this.id, reason, this.retryAfterS);
    }
  }

  private async retire(held: { layers: OpenedLayers }): Promise<void> {
    if (this.current === held) this.current = undefined;
    await held.layers.close().catch(() => undefined); // a broken route's connections are dropped either way
  }
}
