import { WebSocket } from "ws";
import {
  DEFAULT_LIMITS,
  ErrorCode,
  MessageType,
  PROTOCOL_VERSION,
  WireError,
  decodeMessage,
  encodeMessage,
  type Message,
  type ServerInfo,
  type Step,
} from "../../protocol/wire.js";

/** What this server expects of the server it forwards to. */
export interface PeerExpectation {
  variantId: string;
  /** The next server's first layer: this server's last (exclusive) layer. */
  firstLayer: number;
}

/** Replies on a link are StepForwarded or Error frames: small. */
const MAX_REPLY_BYTES = 64 * 1024;

type Pending = { resolve: () => void; reject: (e: WireError) => void; timer: NodeJS.Timeout; what: string };

/**
 * One server→server connection, used to forward steps to the next server of routes. Many clients'
 * steps share it; each forwarded step is a request answered by StepForwarded or an Error, and every
 * failure (timeout, closed connection, bad frame, the peer's Error) becomes a `WireError` whose hop
 * counts from this server (1 = the peer), so it can be relayed back toward the client as it is.
 */
export class PeerLink {
  private readonly pending = new Map<number, Pending>();
  private nextRequestId = 1;
  private closedReason: string | undefined;
  /** Answered ping since the last heartbeat. */
  private alive = true;
  lastUsedMs = Date.now();

  private constructor(
    readonly url: string,
    private readonly ws: WebSocket,
    readonly info: ServerInfo,
    private readonly onClosed: (link: PeerLink) => void,
  ) {
    ws.on("message", (data) => this.onFrame(data as Buffer));
    ws.on("pong", () => (this.alive = true));
    ws.on("close", (code, reason) => this.fail(`connection to next hop ${url} closed (${code} ${reason.toString()})`));
  }

  /** Connects and reads the peer's server info; refuses a peer that does not continue this server's layers. */
  static async connect(url: string, expect: PeerExpectation, connectTimeoutMs: number, onClosed: (link: PeerLink) => void): Promise<PeerLink> {
    const ws = new WebSocket(url, { maxPayload: MAX_REPLY_BYTES, perMessageDeflate: false, handshakeTimeout: connectTimeoutMs });
    const info = await new Promise<ServerInfo>((resolve, reject) => {
      // One message for every way of failing: a client names these URLs, so the reply must not tell
      // it more about what answered at that address than that no eFed server did.
      const unreachable = (): WireError => new WireError(ErrorCode.Upstream, `next hop ${url} is unreachable, or is not an eFed server`, 1);
      const timer = setTimeout(() => {
        ws.terminate();
        reject(new WireError(ErrorCode.Upstream, `next hop ${url} did not say hello within ${connectTimeoutMs} ms`, 1));
      }, connectTimeoutMs);
      ws.once("error", () => {
        clearTimeout(timer);
        reject(unreachable());
      });
      ws.once("close", () => {
        clearTimeout(timer);
        reject(unreachable());
      });
      ws.once("message", (data) => {
        clearTimeout(timer);
        let m: Message;
        try {
          m = decodeMessage(data as Buffer, { ...DEFAULT_LIMITS, maxFrameBytes: MAX_REPLY_BYTES });
        } catch {
          ws.terminate();
          return reject(unreachable());
        }
        if (m.type !== MessageType.ServerInfo || m.protocolVersion !== PROTOCOL_VERSION) {
          ws.terminate();
          return reject(unreachable());
        }
        if (m.variantId !== expect.variantId || m.firstLayer !== expect.firstLayer) {
          ws.terminate();
          return reject(
            new WireError(
              ErrorCode.BadRoute,
              `next hop ${url} serves layers ${m.firstLayer}:${m.lastLayer} of variant ${m.variantId}; ` +
                `this server's output goes to layer ${expect.firstLayer} of variant ${expect.variantId}`,
            ),
          );
        }
        resolve(m);
      });
    });
    ws.removeAllListeners("error");
    ws.removeAllListeners("close");
    ws.on("error", () => {}); // after the handshake, failures surface as 'close'
    return new PeerLink(url, ws, info, onClosed);
  }

  /** Forwarded steps waiting for their answer. */
  get busy(): number {
    return this.pending.size;
  }

  /**
   * Sends `step` and resolves when the peer answers StepForwarded: the peer and every hop after it
   * are done. Rejects with a `WireError` counted from this server (the peer's own errors come back
   * as hop 1, errors it relays from further down one more).
   */
  forward(step: Omit<Step, "type" | "requestId">, timeoutMs: number): Promise<void> {
    const what = `step ${step.step} of session ${step.sessionId}`;
    if (this.closedReason !== undefined) return Promise.reject(new WireError(ErrorCode.Upstream, this.closedReason, 1));
    const requestId = this.nextRequestId++;
    const frame = encodeMessage({ type: MessageType.Step, requestId, ...step });
    // A frame over the peer's limit would make it close the link, failing other clients' steps too.
    if (frame.byteLength > this.info.maxFrameBytes) {
      const why = `forwarded ${what} is a ${frame.byteLength}-byte frame, over ${this.url}'s limit of ${this.info.maxFrameBytes}`;
      return Promise.reject(new WireError(ErrorCode.TooLarge, why, 1));
    }
    this.lastUsedMs = Date.now();
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(requestId);
        reject(new WireError(ErrorCode.Upstream, `next hop ${this.url} did not finish ${what} within ${timeoutMs} ms`, 1));
      }, timeoutMs);
      this.pending.set(requestId, { resolve, reject, timer, what });
      this.ws.send(frame);
    });
  }

  /** Pings; terminates the link if the previous ping went unanswered (a peer that vanished without closing). */
  heartbeat(): void {
    if (!this.alive) {
      this.ws.terminate();
      return;
    }
    this.alive = false;
    this.ws.ping();
  }

  close(): void {
    this.ws.close(1001, "server shutting down");
  }

  private onFrame(data: Buffer): void {
    let m: Message;
    try {
      m = decodeMessage(data, { ...DEFAULT_LIMITS, maxFrameBytes: MAX_REPLY_BYTES });
    } catch (err) {
      this.fail(`next hop ${this.url} sent a bad frame: ${(err as Error).message}`);
      this.ws.terminate();
      return;
    }
    if (m.type !== MessageType.StepForwarded && m.type !== MessageType.Error) return; // nothing else is a reply on a link
    const p = this.pending.get(m.requestId);
    if (p === undefined) return; // a late answer to a step that timed out
    this.pending.delete(m.requestId);
    clearTimeout(p.timer);
    if (m.type === MessageType.StepForwarded) p.resolve();
    else p.reject(new WireError(m.code, m.hop === 0 ? `${this.url}: ${m.message}` : m.message, m.hop + 1));
  }

  private fail(reason: string): void {
    this.closedReason ??= reason;
    for (const [id, p] of this.pending) {
      clearTimeout(p.timer);
      p.reject(new WireError(ErrorCode.Upstream, `${reason}; ${p.what} was in flight`, 1));
      this.pending.delete(id);
    }
    this.onClosed(this);
  }
}
