import type { SigningKey } from "ethers";
import { WebSocket } from "ws";
import { EFedError } from "../protocol/errors.js";
import { ownerProof, sessionStepTarget, signAuth } from "../protocol/fetchAuth.js";
import {
  DEFAULT_LIMITS,
  MessageType,
  PROTOCOL_VERSION,
  decodeMessage,
  encodeMessage,
  type Message,
  type ServerInfo,
  type SessionOpened,
  type Step,
  type StoredStep,
  type StepReceipt,
  type StepResult,
  type WireLimits,
} from "../protocol/wire.js";

/**
 * A request to a shard server failed: the server's error code and message (code SERVER_<wire code>),
 * a timeout, or a lost connection. `hop` says where along the request's route it failed: 0 is the
 * server the request was sent to, 1 the next server of a forwarded step, and so on.
 */
export class ShardRequestError extends EFedError {
  readonly hop: number;
  constructor(code: string, message: string, details?: Record<string, unknown>, hop = 0) {
    super(code, message, details === undefined ? {} : { details });
    this.hop = hop;
  }
}

export interface ConnectOptions {
  /** Milliseconds to wait for the connection and the server's info frame (default 10 s). */
  connectTimeoutMs?: number;
  /** Milliseconds to wait for each reply (default 60 s). */
  requestTimeoutMs?: number;
  /** Largest frame accepted from the server (default 64 MiB). */
  maxFrameBytes?: number;
}

type Pending = { resolve: (m: Message) => void; reject: (e: Error) => void; timer: NodeJS.Timeout };

/** One WebSocket connection to a shard server, with typed request/reply and timeouts. */
export class ShardConnection {
  readonly url: string;
  readonly info: ServerInfo;
  private readonly ws: WebSocket;
  private readonly pending = new Map<number, Pending>();
  private readonly requestTimeoutMs: number;
  private readonly limits: WireLimits;
  private nextRequestId = 1;
  private closedReason: string | undefined;
  /** Per session: who receives the signed receipts that follow its step results. */
  private readonly receiptListeners = new Map<string, (m: StepReceipt) => void>();
  /** Outputs of forwarded steps this server ends, awaited by "session:step". */
  private readonly resultWaiters = new Map<string, { resolve: (m: StepResult) => void; reject: (e: Error) => void; timer: NodeJS.Timeout }>();

  private constructor(url: string, ws: WebSocket, info: ServerInfo, requestTimeoutMs: number, limits: WireLimits) {
    this.url = url;
    this.ws = ws;
    this.info = info;
    this.requestTimeoutMs = requestTimeoutMs;
    this.limits = limits;
    ws.on("message", (data) => this.onFrame(data as Buffer));
    ws.on("close", (code, reason) => this.failAll(`connection to ${url} closed (${code} ${reason.toString()})`));
  }

  static async connect(url: string, options: ConnectOptions = {}): Promise<ShardConnection> {
    const maxFrameBytes = options.maxFrameBytes ?? DEFAULT_LIMITS.maxFrameBytes;
    const ws = new WebSocket(url, { maxPayload: maxFrameBytes, perMessageDeflate: false });
    const timeoutMs = options.connectTimeoutMs ?? 10_000;
    const info = await new Promise<ServerInfo>((resolve, reject) => {
      const timer = setTimeout(() => {
        ws.terminate();
        reject(new ShardRequestError("TIMEOUT", `no server info from ${url} within ${timeoutMs} ms`, { url }));
      }, timeoutMs);
      ws.once("error", (err) => {
        clearTimeout(timer);
        reject(new ShardRequestError("CONNECT_FAILED", `cannot connect to ${url}: ${err.message}`, { url }));
      });
      ws.once("message", (data) => {
        clearTimeout(timer);
        try {
          const m = decodeMessage(data as Buffer, { ...DEFAULT_LIMITS, maxFrameBytes });
          if (m.type !== MessageType.ServerInfo) throw new Error(`expected server info, got message type ${m.type}`);
          if (m.protocolVersion !== PROTOCOL_VERSION) {
            throw new Error(`server speaks protocol ${m.protocolVersion}, this client ${PROTOCOL_VERSION}`);
          }
          resolve(m);
        } catch (err) {
          ws.terminate();
          reject(new ShardRequestError("BAD_HANDSHAKE", `${url}: ${(err as Error).message}`, { url }));
        }
      });
    });
    ws.on("error", () => {}); // after the handshake, errors surface as 'close'
    const limits: WireLimits = { maxFrameBytes, maxStepTokens: info.maxStepTokens, hiddenSize: info.hiddenSize, maxRouteHops: 16 };
    return new ShardConnection(url, ws, info, options.requestTimeoutMs ?? 60_000, limits);
  }

  /** Opens a session; resolves with its forwarding key (only this client learns it). */
  async openSession(sessionId: string, maxLength: number): Promise<string> {
    const opened = await this.request({ type: MessageType.OpenSession, requestId: 0, sessionId, maxLength }, MessageType.SessionOpened);
    return (opened as SessionOpened).forwardKey;
  }

  async closeSession(sessionId: string): Promise<void> {
    await this.request({ type: MessageType.CloseSession, requestId: 0, sessionId }, MessageType.SessionClosed);
  }

  /**
   * The step behind a receipt this server signed, by the receipt's leaf: receipt, signature,
   * activations and, once committed on chain, the batch id and Merkle proof. The session's owner
   * passes the session's forwarding key (it proves ownership); a verifier authenticates first.
   * Rejects with a ShardRequestError (code SERVER_19, NotFound) when the server no longer holds it,
   * SERVER_18 (Forbidden) when this side may not see it.
   */
  async fetchStep(leaf: string, forwardKey?: string): Promise<StoredStep> {
    const proof = forwardKey === undefined ? {} : { ownerProof: ownerProof(forwardKey, this.info.challenge, leaf) };
    return (await this.request({ type: MessageType.FetchStep, requestId: 0, leaf, ...proof }, MessageType.StoredStep)) as StoredStep;
  }

  /** Step `step` of session `sessionId` at this server (as fetchStep; how a verifier collects a session's prefix). */
  async fetchSessionStep(sessionId: string, step: bigint, forwardKey?: string): Promise<StoredStep> {
    const proof = forwardKey === undefined ? {} : { ownerProof: ownerProof(forwardKey, this.info.challenge, sessionStepTarget(sessionId, step)) };
    return (await this.request({ type: MessageType.FetchSessionStep, requestId: 0, sessionId, step, ...proof }, MessageType.StoredStep)) as StoredStep;
  }

  /** Proves on this connection that this side holds `key` (a registered verifier's); fetches then need no owner proof. */
  async authenticate(key: SigningKey, address: string): Promise<void> {
    const signature = signAuth(key, this.info.chainId, this.info.server, this.info.challenge);
    await this.request({ type: MessageType.Authenticate, requestId: 0, address, signature }, MessageType.Authenticated);
  }

  async step(step: Omit<Step, "type" | "requestId">): Promise<StepResult> {
    return (await this.request({ type: MessageType.Step, requestId: 0, ...step }, MessageType.StepResult)) as StepResult;
  }

  /**
   * Sends a step with a non-empty route: resolves when the whole route has run it (StepForwarded);
   * the output comes from the route's last server (see `awaitResult`). A failure anywhere along the
   * route rejects with a ShardRequestError whose `hop` counts from this server.
   */
  async stepRouted(step: Omit<Step, "type" | "requestId">): Promise<void> {
    await this.request({ type: MessageType.Step, requestId: 0, ...step }, MessageType.StepForwarded);
  }

  /**
   * The output of step `step` of `sessionId` when this server is the last of a forwarded route (it
   * arrives unsolicited). Call before sending the step; `cancel` drops the wait (the step failed).
   */
  awaitResult(sessionId: string, step: bigint): { result: Promise<StepResult>; cancel: () => void } {
    const key = `${sessionId}:${step}`;
    let cancel = (): void => undefined;
    const result = new Promise<StepResult>((resolve, reject) => {
      if (this.closedReason !== undefined) return reject(new ShardRequestError("CLOSED", this.closedReason, { url: this.url }));
      const timer = setTimeout(() => {
        this.resultWaiters.delete(key);
        reject(new ShardRequestError("TIMEOUT", `${this.url} sent no output for step ${step} of session ${sessionId} within ${this.requestTimeoutMs} ms`));
      }, this.requestTimeoutMs);
      this.resultWaiters.set(key, { resolve, reject, timer });
      cancel = () => {
        clearTimeout(timer);
        this.resultWaiters.delete(key);
      };
    });
    return { result, cancel };
  }

  /** Routes the receipts of `sessionId` to `listener` (undefined: stop). */
  listenForReceipts(sessionId: string, listener: ((m: StepReceipt) => void) | undefined): void {
    if (listener === undefined) this.receiptListeners.delete(sessionId);
    else this.receiptListeners.set(sessionId, listener);
  }

  close(): void {
    this.ws.close(1000, "client done");
  }

  /** Drops the connection at once, without the closing handshake (a server that stopped answering would hold it 30 s). */
  terminate(): void {
    this.ws.terminate();
  }

  private request(m: Message, expect: Message["type"]): Promise<Message> {
    if (this.closedReason !== undefined) return Promise.reject(new ShardRequestError("CLOSED", this.closedReason, { url: this.url }));
    const requestId = this.nextRequestId++;
    const frame = encodeMessage({ ...m, requestId } as Message);
    return new Promise<Message>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(requestId);
        reject(new ShardRequestError("TIMEOUT", `${this.url} did not answer request ${requestId} within ${this.requestTimeoutMs} ms`));
      }, this.requestTimeoutMs);
      this.pending.set(requestId, {
        timer,
        reject,
        resolve: (reply) => {
          if (reply.type === MessageType.Error) {
            const where = reply.hop === 0 ? this.url : `${this.url} (${reply.hop} hop${reply.hop > 1 ? "s" : ""} down its route)`;
            const details = { url: this.url, code: reply.code, hop: reply.hop, message: reply.message };
            reject(new ShardRequestError(`SERVER_${reply.code}`, `${where}: ${reply.message}`, details, reply.hop));
          } else if (reply.type !== expect) {
            reject(new ShardRequestError("BAD_REPLY", `${this.url} answered with message type ${reply.type}, expected ${expect}`));
          } else resolve(reply);
        },
      });
      this.ws.send(frame);
    });
  }

  private onFrame(data: Buffer): void {
    let m: Message;
    try {
      m = decodeMessage(data, this.limits);
    } catch (err) {
      this.failAll(`${this.url} sent a bad frame: ${(err as Error).message}`);
      this.ws.terminate();
      return;
    }
    if (m.type === MessageType.StepReceipt) {
      this.receiptListeners.get(m.sessionId)?.(m);
      return;
    }
    if (m.type === MessageType.StepResult && m.requestId === 0) {
      const key = `${m.sessionId}:${m.step}`;
      const waiter = this.resultWaiters.get(key);
      if (waiter === undefined) return; // a step given up on
      this.resultWaiters.delete(key);
      clearTimeout(waiter.timer);
      waiter.resolve(m);
      return;
    }
    const p = this.pending.get(m.requestId);
    if (p === undefined) return; // a late reply to a timed-out request
    this.pending.delete(m.requestId);
    clearTimeout(p.timer);
    p.resolve(m);
  }

  private failAll(reason: string): void {
    this.closedReason ??= reason;
    for (const [id, p] of this.pending) {
      clearTimeout(p.timer);
      p.reject(new ShardRequestError("CLOSED", reason, { url: this.url }));
      this.pending.delete(id);
    }
    for (const [key, w] of this.resultWaiters) {
      clearTimeout(w.timer);
      w.reject(new ShardRequestError("CLOSED", reason, { url: this.url }));
      this.resultWaiters.delete(key);
    }
  }
}
