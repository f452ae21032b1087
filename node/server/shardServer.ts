import { createServer as createHttpsServer, type Server as HttpsServer } from "node:https";
import { ZeroAddress, ZeroHash, type SigningKey } from "ethers";
import { pino, type Logger } from "pino";
import { WebSocketServer, type WebSocket } from "ws";
import type { Shard } from "../../engine/runtime/shard.js";
import { activationHash, decodeActivations, encodeActivations, type EncodedActivations } from "../../protocol/activations.js";
import { receiptDomain } from "../../protocol/eip712.js";
import { tagMatches } from "../../protocol/forwarding.js";
import { signReceiptWithKey, type Receipt } from "../../protocol/receipt.js";
import {
  ErrorCode,
  MessageType,
  PROTOCOL_VERSION,
  WireError,
  decodeMessage,
  encodeMessage,
  type Message,
  type ServerInfo,
  type FetchStep,
  type Step,
  type WireLimits,
} from "../../protocol/wire.js";
import type { ActivationStore } from "../store/activationStore.js";
import { DEFAULT_BATCH_POLICY, EngineScheduler, type BatchPolicy } from "./engineScheduler.js";
import { DEFAULT_FORWARDING, Forwarder, type ForwardingOptions } from "./forwarder.js";
import { InboundPeer } from "./inboundPeer.js";
import { validateLimits, type ServerLimits } from "./limits.js";
import { SessionTable, type Session } from "./sessions.js";

export interface ShardServerOptions {
  shard: Shard;
  /** Manifest hash of the model variant served. */
  variantId: string;
  /** The staked key that signs receipts. */
  signingKey: SigningKey;
  /** Its address. */
  address: string;
  chainId: bigint;
  /** Commitments contract (the receipts' EIP-712 verifying contract); zero address when standalone. */
  commitments?: string;
  pricePerToken?: bigint;
  host?: string;
  /** 0 picks a free port. */
  port?: number;
  limits: ServerLimits;
  /** Where forwarded steps may go next, and how long they may take (default DEFAULT_FORWARDING). */
  forwarding?: Partial<ForwardingOptions>;
  store: ActivationStore;
  /** How concurrent sessions' decode steps share engine runs (default DEFAULT_BATCH_POLICY). */
  batching?: Partial<BatchPolicy>;
  logger?: Logger;
  /** Serve wss:// with this PEM certificate (chain) and private key instead of plain ws://. */
  tls?: { certPem: string; keyPem: string };
}

const HEARTBEAT_MS = 30_000;

/**
 * Serves one layer range over WebSockets: sessions with server-side KV caches, one signed receipt
 * per step, the activations behind each receipt stored before the receipt leaves. Every frame is
 * parsed at the edge; a bad one gets an Error reply and the server keeps serving everyone else.
 *
 * A step may carry the rest of its route (protocol/forwarding.ts): the server then sends its output
 * to the next server instead of back, and answers the step with StepForwarded once the next hop
 * has answered it. Whatever the route, a session's output (when this server is last) and receipts
 * go to the connection that opened it.
 */
export class ShardServer {
  private readonly wss: WebSocketServer;
  /** The TLS listener under `wss` when serving wss://. */
  private readonly https: HttpsServer | undefined;
  /** Per connection: its challenge and, once it authenticates as a server, its link (node/server/inboundPeer.ts). */
  private readonly peers = new WeakMap<WebSocket, InboundPeer>();
  private readonly sessions: SessionTable<WebSocket>;
  private readonly forwarder: Forwarder;
  /** Requests being handled: stop() waits for them. */
  private readonly inFlight = new Set<Promise<void>>();
  private readonly info: ServerInfo;
  private readonly wireLimits: WireLimits;
  private readonly domain;
  private readonly logger: Logger;
  private readonly timers: NodeJS.Timeout[] = [];
  /** Engine runs are serialized: one ORT session, steps in arrival order. */
  private readonly engine: EngineScheduler;
  private stopping = false;

  private constructor(
    private readonly o: ShardServerOptions,
    wss: WebSocketServer,
    https: HttpsServer | undefined,
  ) {
    this.wss = wss;
    this.https = https;
    const c = o.shard.config;
    this.sessions = new SessionTable<WebSocket>(o.limits, o.shard.kvBytesPerToken);
    this.engine = new EngineScheduler(o.shard, { ...DEFAULT_BATCH_POLICY, ...o.batching });
    this.logger = o.logger ?? pino({ level: "silent" });
    const identity = { signingKey: o.signingKey, address: o.address };
    this.forwarder = new Forwarder({ ...DEFAULT_FORWARDING, ...o.forwarding }, { variantId: o.variantId, firstLayer: o.shard.last }, identity, this.logger);
    const commitments = o.commitments ?? ZeroAddress;
    this.domain = receiptDomain(o.chainId, commitments);
    this.info = {
      type: MessageType.ServerInfo,
      requestId: 0,
      protocolVersion: PROTOCOL_VERSION,
      chainId: o.chainId,
      server: o.address,
      variantId: o.variantId,
      firstLayer: o.shard.first,
      lastLayer: o.shard.last,
      hiddenSize: c.hiddenSize,
      maxSessions: o.limits.maxSessions,
      maxSessionTokens: o.limits.maxSessionTokens,
      maxStepTokens: o.limits.maxStepTokens,
      maxFrameBytes: o.limits.maxFrameBytes,
      pricePerToken: o.pricePerToken ?? 0n,
      commitments,
      challenge: ZeroHash, // each connection gets its own (accept)
    };
    this.wireLimits = {
      maxFrameBytes: o.limits.maxFrameBytes,
      maxStepTokens: o.limits.maxStepTokens,
      hiddenSize: c.hiddenSize,
      maxRouteHops: 16,
    };
  }

  static async start(o: ShardServerOptions): Promise<ShardServer> {
    validateLimits(o.limits);
    const host = o.host ?? "127.0.0.1";
    const port = o.port ?? 0;
    const wsOptions = { maxPayload: o.limits.maxFrameBytes, perMessageDeflate: false };
    let https: HttpsServer | undefined;
    let wss: WebSocketServer;
    if (o.tls === undefined) {
      wss = new WebSocketServer({ ...wsOptions, host, port });
      await new Promise<void>((resolve, reject) => {
        wss.once("listening", resolve);
        wss.once("error", reject);
      });
    } else {
      const tlsServer = createHttpsServer({ cert: o.tls.certPem, key: o.tls.keyPem });
      await new Promise<void>((resolve, reject) => {
        tlsServer.once("error", reject);
        tlsServer.listen(port, host, resolve);
      });
      https = tlsServer;
      wss = new WebSocketServer({ ...wsOptions, server: tlsServer });
    }
    const server = new ShardServer(o, wss, https);
    wss.on("connection", (ws) => server.accept(ws));
    server.timers.push(setInterval(() => server.evictIdle(), Math.min(o.limits.idleTimeoutMs, 10_000)).unref());
    server.timers.push(setInterval(() => server.heartbeat(), HEARTBEAT_MS).unref());
    server.logger.info({ port: server.port, first: o.shard.first, last: o.shard.last }, "shard server listening");
    return server;
  }

  get port(): number {
    const address = this.wss.address();
    return typeof address === "object" && address !== null ? address.port : 0;
  }

  get url(): string {
    return `${this.https === undefined ? "ws" : "wss"}://${this.o.host ?? "127.0.0.1"}:${this.port}`;
  }

  get sessionCount(): number {
    return this.sessions.size;
  }

  /** Sessions per engine run in recent runs (1 when nothing was batched). */
  get recentBatchSizes(): readonly number[] {
    return this.engine.recentBatchSizes;
  }

  /** Requests being handled now (steps running, or waiting for their next hop). */
  get inFlightCount(): number {
    return this.inFlight.size;
  }

  /**
   * Stops taking work (new requests get ShuttingDown), lets every request in flight finish and
   * reply, forwarded ones included (bounded by the hop timeouts), then closes every connection.
   */
  async stop(): Promise<void> {
    this.stopping = true;
    for (const t of this.timers) clearInterval(t);
    while (this.inFlight.size > 0) await Promise.all(this.inFlight);
    await this.engine.idle();
    this.forwarder.close();
    for (const ws of this.wss.clients) ws.close(1001, "server shutting down");
    await new Promise<void>((resolve) => this.wss.close(() => resolve()));
    if (this.https !== undefined) await new Promise<void>((resolve) => this.https!.close(() => resolve()));
  }

  private accept(ws: WebSocket): void {
    const alive = ws as WebSocket & { isAlive?: boolean };
    alive.isAlive = true;
    ws.on("pong", () => (alive.isAlive = true));
    ws.on("error", (err) => this.logger.warn({ err: err.message }, "connection error"));
    ws.on("close", () => {
      const dropped = this.sessions.dropOwner(ws);
      if (dropped > 0) this.logger.debug({ dropped }, "connection closed, sessions dropped");
    });
    const peer = new InboundPeer({ signingKey: this.o.signingKey, address: this.o.address });
    this.peers.set(ws, peer);
    ws.on("message", (data, isBinary) => {
      if (!isBinary) {
        this.send(ws, { type: MessageType.Error, requestId: 0, code: ErrorCode.BadFrame, hop: 0, message: "text frames are not accepted: send binary" });
        return;
      }
      let frame = toBytes(data);
      let message: Message;
      try {
        frame = peer.open(frame);
      } catch (err) {
        // an altered frame on a server link: nothing later on it can be trusted
        this.reject(ws, requestIdOf(frame), err);
        ws.close(1008, "link MAC mismatch");
        return;
      }
      try {
        message = decodeMessage(frame, this.wireLimits);
      } catch (err) {
        this.reject(ws, requestIdOf(frame), err);
        return;
      }
      const handled = this.handle(ws, message).catch((err: unknown) => this.reject(ws, message.requestId, err));
      this.inFlight.add(handled);
      void handled.finally(() => this.inFlight.delete(handled));
    });
    this.send(ws, { ...this.info, challenge: peer.challenge });
  }

  private async handle(ws: WebSocket, m: Message): Promise<void> {
    if (this.stopping) throw new WireError(ErrorCode.ShuttingDown, "server is shutting down");
    switch (m.type) {
      case MessageType.OpenSession: {
        const session = this.sessions.open(m.sessionId, ws, m.maxLength, this.o.shard.newCache(), Date.now());
        this.send(ws, { type: MessageType.SessionOpened, requestId: m.requestId, sessionId: m.sessionId, forwardKey: session.forwardKey });
        return;
      }
      case MessageType.CloseSession:
        this.sessions.close(m.sessionId, ws);
        this.send(ws, { type: MessageType.SessionClosed, requestId: m.requestId, sessionId: m.sessionId });
        return;
      case MessageType.Step:
        await this.step(ws, m);
        return;
      case MessageType.FetchStep:
        this.fetchStep(ws, m);
        return;
      case MessageType.PeerHello:
        this.send(ws, this.peers.get(ws)!.welcome(m));
        return;
      default:
        throw new WireError(ErrorCode.UnknownType, `message type ${m.type} is not a request a server accepts`);
    }
  }

  private async step(ws: WebSocket, m: Step): Promise<void> {
    const session = m.tag === undefined ? this.sessions.get(m.sessionId, ws) : this.forwardedSession(m, m.tag, ws);
    if (m.step !== session.nextStep) {
      throw new WireError(ErrorCode.BadPosition, `session ${m.sessionId} expects step ${session.nextStep}, got ${m.step}`);
    }
    if (m.position !== session.cache.length) {
      throw new WireError(ErrorCode.BadPosition, `session ${m.sessionId} is at position ${session.cache.length}, step says ${m.position}`);
    }
    // A bad next hop is refused before the engine runs, so the session is unchanged and the step retryable.
    const next = m.route[0];
    const nextKey = next === undefined ? undefined : this.forwarder.check(next.url);
    this.sessions.admit(session, m.input.rows);
    session.nextStep++; // claimed now so a concurrent duplicate is refused
    // The connection to the next hop opens while the layers run (it is pooled: only the first step waits).
    if (nextKey !== undefined) this.forwarder.link(nextKey).catch(() => undefined);
    const hidden = decodeActivations(m.input);
    let output: Float32Array;
    try {
      output = await this.engine.forward(hidden, session.cache);
    } catch (err) {
      session.nextStep = m.step; // the cache is unchanged when a run fails: the step may be retried
      throw err;
    }
    session.lastUsedMs = Date.now();
    const encoded = encodeActivations(output, m.input.rows, m.input.cols, m.outputEncoding);
    // The output leaves first, to the next hop or to the session's owner; the receipt follows once
    // hashed, signed and stored (the store write comes before the receipt is sent, so a restart
    // never loses a receipt a client holds). A forwarded step's messages to the owner carry request
    // id 0: the owner did not send it on this connection, and matches them by session and step.
    const ownerRequestId = m.tag === undefined ? m.requestId : 0;
    let forwarded: Promise<void> | undefined;
    if (next === undefined) {
      this.send(session.owner, { type: MessageType.StepResult, requestId: ownerRequestId, sessionId: m.sessionId, step: m.step, output: encoded });
    } else {
      const forwardedStep = { sessionId: next.sessionId, tag: next.tag, step: m.step, position: m.position, outputEncoding: m.outputEncoding };
      forwarded = this.forwarder.forward(nextKey!, { ...forwardedStep, input: encoded, route: m.route.slice(1) });
      forwarded.catch(() => undefined); // awaited below, after the receipt
    }
    const receipt = this.receiptFor(m, m.input, encoded);
    const signature = signReceiptWithKey(this.o.signingKey, this.domain, receipt);
    this.o.store.put({ receipt, signature, input: m.input, output: encoded, createdAtMs: Date.now() });
    const hop = {
      server: this.o.address,
      firstLayer: this.o.shard.first,
      lastLayer: this.o.shard.last,
      inputHash: receipt.inputHash,
      outputHash: receipt.outputHash,
      signature,
    };
    this.send(session.owner, { type: MessageType.StepReceipt, requestId: ownerRequestId, sessionId: m.sessionId, step: m.step, hop });
    // A routed or forwarded step is answered once everything after this server is done; a failure
    // further on comes back as an Error naming its hop (relayed by reject()).
    if (forwarded !== undefined) await forwarded;
    if (next !== undefined || m.tag !== undefined) {
      this.send(ws, { type: MessageType.StepForwarded, requestId: m.requestId, sessionId: m.sessionId, step: m.step });
    }
  }

  /** The step behind a receipt, for anyone who holds its leaf (verifiers audit these). */
  private fetchStep(ws: WebSocket, m: FetchStep): void {
    const stored = this.o.store.get(m.leaf);
    if (stored === undefined) throw new WireError(ErrorCode.NotFound, `no stored step has receipt leaf ${m.leaf} (not signed here, or past retention)`);
    const committed = this.o.store.proofOf(m.leaf);
    this.send(ws, {
      type: MessageType.StoredStep,
      requestId: m.requestId,
      receipt: stored.receipt,
      signature: stored.signature,
      input: stored.input,
      output: stored.output,
      ...(committed === undefined ? {} : { batch: { batchId: BigInt(committed.batchId), proof: committed.proof } }),
    });
  }

  /**
   * The session a forwarded step names, if it came on a link authenticated as a server and its tag
   * was made with that session's forwarding key for delivery by that server.
   */
  private forwardedSession(m: Step, tag: string, ws: WebSocket): Session<WebSocket> {
    const previous = this.peers.get(ws)!.previousHop();
    const session = this.sessions.lookup(m.sessionId);
    const tagged = { sessionId: m.sessionId, step: m.step, position: m.position, rows: m.input.rows, outputEncoding: m.outputEncoding, previous, route: m.route };
    if (!tagMatches(session.forwardKey, tagged, tag)) {
      throw new WireError(ErrorCode.Forbidden, `forwarded step ${m.step} for session ${m.sessionId} carries a tag its owner did not make for delivery by ${previous}`);
    }
    return session;
  }

  private receiptFor(m: Step, input: EncodedActivations, output: EncodedActivations): Receipt {
    return {
      sessionId: m.sessionId,
      step: m.step,
      firstLayer: this.o.shard.first,
      lastLayer: this.o.shard.last,
      variantId: this.o.variantId,
      inputHash: activationHash(input),
      outputHash: activationHash(output),
      tokens: input.rows,
      server: this.o.address,
    };
  }

  private reject(ws: WebSocket, requestId: number, err: unknown): void {
    if (err instanceof WireError) {
      this.send(ws, { type: MessageType.Error, requestId, code: err.wireCode, hop: err.hop, message: err.message });
      return;
    }
    this.logger.error({ err }, "step failed");
    const message = err instanceof Error ? err.message : String(err);
    this.send(ws, { type: MessageType.Error, requestId, code: ErrorCode.Internal, hop: 0, message });
  }

  private send(ws: WebSocket, m: Message): void {
    if (ws.readyState === ws.OPEN) ws.send(encodeMessage(m));
  }

  private evictIdle(): void {
    const evicted = this.sessions.evictIdle(Date.now());
    if (evicted.length > 0) this.logger.info({ evicted: evicted.length }, "idle sessions closed");
  }

  private heartbeat(): void {
    for (const ws of this.wss.clients) {
      const alive = ws as WebSocket & { isAlive?: boolean };
      if (alive.isAlive === false) {
        ws.terminate();
        continue;
      }
      alive.isAlive = false;
      ws.ping();
    }
  }
}

function toBytes(data: unknown): Uint8Array {
  if (data instanceof Uint8Array) return data;
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  if (Array.isArray(data)) return Buffer.concat(data as Buffer[]);
  return new Uint8Array(0);
}

/** The request id of a frame if its header is readable, else 0. */
function requestIdOf(frame: Uint8Array): number {
  return frame.byteLength >= 5 ? new DataView(frame.buffer, frame.byteOffset, 5).getUint32(1, true) : 0;
}
