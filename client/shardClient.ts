import type { Duplex } from "node:stream";
import type { SigningKey } from "ethers";
import type { WebSocket } from "ws";
import { ownerProof, sessionStepTarget, signAuth } from "../protocol/fetchAuth.js";
import { Link, LinkError, LinkFailure, dialServer, validateTiming, type LinkTiming } from "../protocol/link.js";
import { DEFAULT_LIMITS, MAX_BATCH_PAGE, MessageType, type BatchReceipts, type ChannelBound, type Paid, type Message, type ServerInfo, type SessionClosed, type Step, type StepReceipt, type StepResult, type StoredStep, type BindTickets, type PayTicket, type TicketPaid, type TicketsBound } from "../protocol/wire.js";

/**
 * A request to a shard server failed (protocol/link.ts LinkError): the server's error code and
 * message (code SERVER_<wire code>), a timeout, a silent (dead or hung) server, or a lost
 * connection. `hop` says where along the request's route it failed: 0 is the server the request
 * was sent to, 1 the next server of a forwarded step, and so on.
 */
export { LinkError as ShardRequestError } from "../protocol/link.js";

export interface ConnectOptions {
  /** Milliseconds to wait for the connection and the server's info frame (default 5000: an unreachable server fails the route fast). */
  connectTimeoutMs?: number;
  /** Milliseconds to wait for each reply (default 60000; a dead or hung server is found sooner by the heartbeat). */
  requestTimeoutMs?: number;
  /** Milliseconds between pings to the server (default 1000). */
  heartbeatIntervalMs?: number;
  /**
   * Milliseconds without any frame or pong after which the server is dead and every request in
   * flight fails with code SILENT (default 3500). A hung (SIGSTOPped) server is found within this
   * plus one interval: ≤ 4.5 s with the defaults; a killed one at once, when its socket closes.
   */
  heartbeatTimeoutMs?: number;
  /** Largest frame accepted from the server (default 64 MiB). */
  maxFrameBytes?: number;
  /** PEM certificate(s) to trust for a wss:// server besides the system's (e.g. its self-signed certificate). */
  ca?: string;
  /** Called once when the connection fails or closes, with the error its pending requests got. */
  onClose?: (err: LinkError) => void;
  /** Called once per relayed step (`step`) whose result and receipt both came: where its time went (benchmarks). */
  onStepTiming?: (t: StepTiming) => void;
}

/** The timing of one relayed step on one connection, as this client saw it (performance.now() differences). */
export interface StepTiming {
  sessionId: string;
  step: bigint;
  /** Step sent → its StepResult parsed: the server's round trip, the layers included. */
  sendToResultMs: number;
  /**
   * StepResult parsed → its StepReceipt parsed (before the receipt is checked); 0 when
   * both came in one read (the receipt is then handled first, and counts in `sendToResultMs`).
   */
  resultToReceiptMs: number;
}

export const DEFAULT_CONNECT = {
  connectTimeoutMs: 5_000,
  requestTimeoutMs: 60_000,
  heartbeatIntervalMs: 1_000,
  heartbeatTimeoutMs: 3_500,
  maxFrameBytes: DEFAULT_LIMITS.maxFrameBytes,
} as const;

/** Steps awaiting their receipt that `onStepTiming` keeps at most. */
const MAX_TIMED_STEPS = 1024;

interface ResultWaiter {
  resolve: (m: StepResult) => void;
  reject: (e: Error) => void;
  timer: NodeJS.Timeout;
}

/** One WebSocket connection to a shard server, with typed request/reply, timeouts and a heartbeat. */
export class ShardConnection {
  readonly url: string;
  readonly info: ServerInfo;
  private readonly link: Link;
  private readonly requestTimeoutMs: number;
  /** Per session: who receives the receipts that follow its step results. */
  private readonly receiptListeners = new Map<string, (m: StepReceipt) => void>();
  /** Outputs of forwarded steps this server ends, awaited by "session:step". */
  private readonly resultWaiters = new Map<string, ResultWaiter>();
  private readonly onStepTiming: ((t: StepTiming) => void) | undefined;
  /** With `onStepTiming`: relayed steps sent whose result or receipt has not come, by "session:step". */
  private readonly timed = new Map<string, { sentAt: number; resultAt?: number; receiptCame?: boolean }>();

  private constructor(
    url: string,
    ws: WebSocket,
    info: ServerInfo,
    o: LinkTiming & { maxFrameBytes: number; socket: Duplex; onClose?: ((err: LinkError) => void) | undefined; onStepTiming?: ((t: StepTiming) => void) | undefined },
  ) {
    this.url = url;
    this.info = info;
    this.requestTimeoutMs = o.requestTimeoutMs;
    this.onStepTiming = o.onStepTiming;
    this.link = new Link(url, ws, {
      requestTimeoutMs: o.requestTimeoutMs,
      heartbeatIntervalMs: o.heartbeatIntervalMs,
      heartbeatTimeoutMs: o.heartbeatTimeoutMs,
      limits: { maxFrameBytes: o.maxFrameBytes, maxStepTokens: info.maxStepTokens, hiddenSize: info.hiddenSize, maxRouteHops: DEFAULT_LIMITS.maxRouteHops },
      maxSendBytes: info.maxFrameBytes,
      socket: o.socket,
      onUnsolicited: (m) => this.onUnsolicited(m),
      onClose: (err) => {
        this.timed.clear();
        this.failWaiters(err);
        o.onClose?.(err);
      },
    });
  }

  static async connect(url: string, options: ConnectOptions = {}): Promise<ShardConnection> {
    const o = { ...DEFAULT_CONNECT, ...options };
    const timing: LinkTiming = { requestTimeoutMs: o.requestTimeoutMs, heartbeatIntervalMs: o.heartbeatIntervalMs, heartbeatTimeoutMs: o.heartbeatTimeoutMs };
    validateTiming(timing);
    const { ws, info, socket } = await dialServer(url, { connectTimeoutMs: o.connectTimeoutMs, maxFrameBytes: o.maxFrameBytes, ca: options.ca });
    return new ShardConnection(url, ws, info, { ...timing, maxFrameBytes: o.maxFrameBytes, socket, onClose: options.onClose, onStepTiming: options.onStepTiming });
  }

  /** Opens a session; resolves with its forwarding key (only this client learns it). */
  async openSession(sessionId: string, maxLength: number): Promise<string> {
    return (await this.link.request({ type: MessageType.OpenSession, sessionId, maxLength }, MessageType.SessionOpened)).forwardKey;
  }

  /** Closes a session; resolves with the server's signature over the rest of its receipt chain, if steps ran since its last one. */
  async closeSession(sessionId: string): Promise<SessionClosed["chain"]> {
    const closed = await this.link.request({ type: MessageType.CloseSession, sessionId }, MessageType.SessionClosed);
    return closed.chain;
  }

  /**
   * The step behind a receipt this server signed, by the receipt's leaf: receipt, signature,
   * activations and, once committed on chain, the batch id and Merkle proof. The session's owner
   * passes the session's forwarding key (it proves ownership); a verifier authenticates first.
   * Rejects with a ShardRequestError (code SERVER_19, NotFound) when the server no longer holds it,
   * SERVER_18 (Forbidden) when this side may not see it.
   */
  fetchStep(leaf: string, forwardKey?: string): Promise<StoredStep> {
    const proof = forwardKey === undefined ? {} : { ownerProof: ownerProof(forwardKey, this.info.challenge, leaf) };
    return this.link.request({ type: MessageType.FetchStep, leaf, ...proof }, MessageType.StoredStep);
  }

  /** Step `step` of session `sessionId` at this server (as fetchStep; how a verifier collects a session's prefix). */
  fetchSessionStep(sessionId: string, step: bigint, forwardKey?: string): Promise<StoredStep> {
    const proof = forwardKey === undefined ? {} : { ownerProof: ownerProof(forwardKey, this.info.challenge, sessionStepTarget(sessionId, step)) };
    return this.link.request({ type: MessageType.FetchSessionStep, sessionId, step, ...proof }, MessageType.StoredStep);
  }

  /** A page of the receipts this server committed in batch `batchId` (an authenticated verifier only). */
  async fetchBatch(batchId: bigint, offset: number, limit = MAX_BATCH_PAGE): Promise<BatchReceipts> {
    return this.link.request({ type: MessageType.FetchBatch, batchId, offset, limit }, MessageType.BatchReceipts);
  }

  /** Proves on this connection that this side holds `key` (a registered verifier's); fetches then need no owner proof. */
  async authenticate(key: SigningKey, address: string): Promise<void> {
    const signature = signAuth(key, this.info.chainId, this.info.server, this.info.challenge);
    await this.link.request({ type: MessageType.Authenticate, address, signature }, MessageType.Authenticated);
  }

  /** Ties a session to the payment channel that pays for it (`signature`: protocol/payment.ts signBinding over this connection's challenge). */
  bindChannel(sessionId: string, channelId: string, signature: string): Promise<ChannelBound> {
    return this.link.request({ type: MessageType.BindChannel, sessionId, channelId, signature }, MessageType.ChannelBound);
  }

  /** Binds `sessionId` to the client's TicketBroker deposit (client/payment/ticketPayer.ts builds `m`). */
  bindTickets(m: Omit<BindTickets, "requestId">): Promise<TicketsBound> {
    return this.link.request(m, MessageType.TicketsBound);
  }

  /** Sends one ticket for a step; resolves with what the server is owed, what tickets cover, and its next commitment. */
  payTicket(m: Omit<PayTicket, "requestId">): Promise<TicketPaid> {
    return this.link.request(m, MessageType.TicketPaid);
  }

  /**
   * Sends a cumulative voucher, for a step of `sessionId` when given; resolves with what the server is
   * owed and what its vouchers cover now.
   */
  pay(channelId: string, cumulativeAmount: bigint, signature: string, sessionId?: string): Promise<Paid> {
    const paying = sessionId === undefined ? {} : { sessionId };
    return this.link.request({ type: MessageType.Pay, channelId, cumulativeAmount, signature, ...paying }, MessageType.Paid);
  }

  step(step: Omit<Step, "type" | "requestId">): Promise<StepResult> {
    if (this.onStepTiming === undefined) return this.link.request({ type: MessageType.Step, ...step }, MessageType.StepResult);
    const key = `${step.sessionId}:${step.step}`;
    if (this.timed.size >= MAX_TIMED_STEPS) this.timed.clear(); // receipts that never came
    const t: { sentAt: number; resultAt?: number; receiptCame?: boolean } = { sentAt: performance.now() };
    this.timed.set(key, t);
    // the receipt follows the result (node/server/shardServer.ts deliver, then attest), in a later read or the same one
    return this.link.request({ type: MessageType.Step, ...step }, MessageType.StepResult).then(
      (result) => {
        t.resultAt = performance.now();
        if (t.receiptCame === true) this.reportTiming(key, t, t.resultAt);
        return result;
      },
      (err: unknown) => {
        this.timed.delete(key);
        throw err;
      },
    );
  }

  /**
   * Sends a step with a non-empty route: resolves when the whole route has run it (StepForwarded);
   * the output comes from the route's last server (see `awaitResult`). A failure anywhere along the
   * route rejects with a ShardRequestError whose `hop` counts from this server.
   */
  async stepRouted(step: Omit<Step, "type" | "requestId">): Promise<void> {
    await this.link.request({ type: MessageType.Step, ...step }, MessageType.StepForwarded);
  }

  /**
   * The output of step `step` of `sessionId` when this server is the last of a forwarded route (it
   * arrives unsolicited). Call before sending the step; `cancel` drops the wait (the step failed).
   */
  awaitResult(sessionId: string, step: bigint): { result: Promise<StepResult>; cancel: () => void } {
    const key = `${sessionId}:${step}`;
    let cancel = (): void => undefined;
    const result = new Promise<StepResult>((resolve, reject) => {
      const closed = this.link.closedBy;
      if (closed !== undefined) return reject(closed);
      const timer = setTimeout(() => {
        this.resultWaiters.delete(key);
        const why = `${this.url} sent no output for step ${step} of session ${sessionId} within ${this.requestTimeoutMs} ms`;
        reject(new LinkError(LinkFailure.Timeout, why, { url: this.url }));
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
    this.link.close(1000, "client done");
  }

  /** Drops the connection at once, without the closing handshake (a server that stopped answering would hold it 30 s). */
  terminate(): void {
    this.link.terminate();
  }

  private receiptCame(m: StepReceipt): void {
    const key = `${m.sessionId}:${m.step}`;
    const t = this.timed.get(key);
    if (t === undefined) return; // a forwarded step's receipt
    if (t.resultAt === undefined) t.receiptCame = true; // with its result, which is handled after it
    else this.reportTiming(key, t, performance.now());
  }

  private reportTiming(key: string, t: { sentAt: number; resultAt?: number }, receiptAt: number): void {
    this.timed.delete(key);
    const [sessionId, step] = key.split(":") as [string, string];
    const resultAt = t.resultAt ?? receiptAt;
    this.onStepTiming!({ sessionId, step: BigInt(step), sendToResultMs: resultAt - t.sentAt, resultToReceiptMs: receiptAt - resultAt });
  }

  private onUnsolicited(m: Message): void {
    if (m.type === MessageType.StepReceipt) {
      if (this.onStepTiming !== undefined) this.receiptCame(m);
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
    }
    // anything else unsolicited is a late reply to a request that timed out
  }

  private failWaiters(err: LinkError): void {
    for (const w of this.resultWaiters.values()) {
      clearTimeout(w.timer);
      w.reject(err);
    }
    this.resultWaiters.clear();
  }
}
