import { createServer as createHttpServer, type IncomingMessage, type Server as HttpServer } from "node:http";
import { createServer as createHttpsServer } from "node:https";
import { ZeroAddress, type SigningKey } from "ethers";
import { pino, type Logger } from "pino";
import { WebSocketServer, type WebSocket } from "ws";
import type { Shard } from "../../engine/runtime/shard.js";
import { decodeActivations, encodeActivations, type EncodedActivations } from "../../protocol/activations.js";
import { receiptDomain } from "../../protocol/eip712.js";
import { ownerProofMatches, recoverAuth, sessionStepTarget } from "../../protocol/fetchAuth.js";
import { tagMatches } from "../../protocol/forwarding.js";
import { receiptLeaf } from "../../protocol/receipt.js";
import {
  ErrorCode,
  MessageType,
  PROTOCOL_VERSION,
  WireError,
  decodeMessage,
  maxFrameBytesFor,
  type Authenticate,
  type FetchBatch,
  type FetchSessionStep,
  type FetchStep,
  type Message,
  type ServerInfo,
  type ServerReceipt,
  type Step,
  type WireLimits,
} from "../../protocol/wire.js";
import { afterTurnWrites, turnEnded } from "../../protocol/turnWrites.js";
import type { ActivationStore } from "../store/activationStore.js";
import { Attestor } from "./attestation.js";
import { DEFAULT_BATCH_POLICY, EngineScheduler, type BatchPolicy } from "./engineScheduler.js";
import { DEFAULT_FORWARDING, Forwarder, type ForwardingOptions } from "./forwarder.js";
import { validateLimits, type ServerLimits } from "./limits.js";
import { ClientLoads } from "./clientLoad.js";
import type { PaymentGate } from "./paymentGate.js";
import type { TicketGate } from "./ticketGate.js";
import { Peer, remoteAddressOf } from "./peer.js";
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
  /** Serve wss:// with this certificate and key (PEM) instead of ws://. */
  tls?: { certPem: string; keyPem: string };
  limits: ServerLimits;
  /** Where forwarded steps may go next, and how long they may take (default DEFAULT_FORWARDING). */
  forwarding?: Partial<ForwardingOptions>;
  store: ActivationStore;
  /** How concurrent sessions' decode steps share engine runs (default DEFAULT_BATCH_POLICY). */
  batching?: Partial<BatchPolicy>;
  /**
   * Whether an address is a registered, staked verifier (read from chain). Absent (standalone): no
   * verifier can authenticate, and only a session's owner may fetch its steps.
   */
  isVerifier?: (address: string) => Promise<boolean>;
  /** Charges every step to a payment channel (node/server/paymentGate.ts). Absent: the server works for free. */
  payments?: PaymentGate;
  /**
   * Charges steps of sessions bound to a TicketBroker deposit (node/server/ticketGate.ts). A session
   * bound to tickets is charged there; any other to `payments` when given, else here (PaymentRequired).
   */
  tickets?: TicketGate;
  /** A session's receipt chain is signed after every this many steps, and at close (default DEFAULT_SIGN_EVERY). */
  signEvery?: number;
  logger?: Logger;
}

/** How often connections are pinged; one that missed the previous ping is dropped. */
const HEARTBEAT_MS = 15_000;
/** How often limits that need a clock are enforced (idle connections, stalled sends). */
const HOUSEKEEPING_MS = 1_000;

/**
 * Serves one layer range over WebSockets to peers it does not trust: sessions with server-side KV
 * caches, a receipt per step signed a run at a time (a session's receipt chain), the activations
 * behind each receipt stored before a signature over it leaves. Every frame is parsed at the edge against limits derived from the served model; a bad one
 * gets an Error reply and the server keeps serving everyone else. Everything a peer controls is
 * bounded (node/server/limits.ts): connections in all and per address, sessions per connection and
 * per address, requests in flight and bytes queued per connection (past them the connection is not
 * read), idle connections, fetches per second; the engine serves clients in turn (engineScheduler.ts).
 *
 * A step goes through named stages: admit (who may drive the session, is it its turn, does it fit),
 * run (the engine), deliver (the output to the owner, or forwarded to the next server), attest
 * (the receipt extends the session's chain; at the end of a run, the run is stored and the chain
 * signed: node/server/attestation.ts) and acknowledge (StepForwarded once the
 * rest of the route is done). A session runs one step at a time.
 */
export class ShardServer {
  private readonly wss: WebSocketServer;
  private readonly http: HttpServer;
  private readonly sessions: SessionTable<Peer>;
  private readonly peers = new Set<Peer>();
  private readonly clientLoads: ClientLoads;
  private readonly perAddress = new Map<string, number>();
  private readonly forwarder: Forwarder;
  private readonly attestor: Attestor;
  /** Requests being handled: stop() waits for them. */
  private readonly inFlight = new Set<Promise<void>>();
  private readonly wireLimits: WireLimits;
  /** The limits as announced: session and step lengths clamped to what the shard can hold. */
  private readonly limits: ServerLimits;
  private readonly logger: Logger;
  private readonly timers: NodeJS.Timeout[] = [];
  private readonly engine: EngineScheduler;
  private stopping = false;

  private constructor(
    private readonly o: ShardServerOptions,
    http: HttpServer,
    wss: WebSocketServer,
    limits: ServerLimits,
    maxFrameBytes: number,
  ) {
    this.http = http;
    this.wss = wss;
    this.limits = limits;
    this.sessions = new SessionTable<Peer>(limits, o.shard.kvBytesPerToken);
    this.clientLoads = new ClientLoads(limits);
    this.engine = new EngineScheduler(o.shard, { ...DEFAULT_BATCH_POLICY, ...o.batching });
    this.sessions.onRemove = (id, cache) => {
      o.payments?.unbind(id);
      o.tickets?.unbind(id);
      this.engine.release(cache);
      this.attestor.forget(id);
    };
    this.logger = o.logger ?? pino({ level: "silent" });
    const identity = { signingKey: o.signingKey, address: o.address };
    this.forwarder = new Forwarder({ ...DEFAULT_FORWARDING, ...o.forwarding }, { variantId: o.variantId, firstLayer: o.shard.last }, identity, this.logger);
    this.attestor = new Attestor({
      signingKey: o.signingKey,
      address: o.address,
      domain: receiptDomain(o.chainId, o.commitments ?? ZeroAddress),
      variantId: o.variantId,
      firstLayer: o.shard.first,
      lastLayer: o.shard.last,
      store: o.store,
      ...(o.signEvery === undefined ? {} : { signEvery: o.signEvery }),
      onFailure: (reason) => this.storeFailed(reason),
    });
    this.wireLimits = { maxFrameBytes, maxStepTokens: limits.maxStepTokens, hiddenSize: o.shard.config.hiddenSize, maxRouteHops: 16 };
  }

  static async start(o: ShardServerOptions): Promise<ShardServer> {
    validateLimits(o.limits);
    // Announce and accept only what the shard can hold: a session longer than its context fails at open, not mid-generation.
    const maxSessionTokens = Math.min(o.limits.maxSessionTokens, o.shard.maxLength);
    const limits = { ...o.limits, maxSessionTokens, maxStepTokens: Math.min(o.limits.maxStepTokens, maxSessionTokens) };
    // No valid message is larger than a full step: that is the frame limit, whatever else is configured.
    const maxFrameBytes = maxFrameBytesFor(o.shard.config.hiddenSize, limits.maxStepTokens);
    const http = o.tls === undefined ? createHttpServer() : createHttpsServer({ cert: o.tls.certPem, key: o.tls.keyPem });
    // Sockets that never finish a WebSocket upgrade are dropped fast and counted against the same cap.
    http.headersTimeout = 5_000;
    http.requestTimeout = 5_000;
    http.maxConnections = limits.maxConnections + 16; // a few over, so the refusal can still be said in a frame
    const wss = new WebSocketServer({ server: http, maxPayload: maxFrameBytes, perMessageDeflate: false });
    await new Promise<void>((resolve, reject) => {
      http.once("error", reject);
      http.listen(o.port ?? 0, o.host ?? "127.0.0.1", () => {
        http.off("error", reject);
        resolve();
      });
    });
    const server = new ShardServer(o, http, wss, limits, maxFrameBytes);
    wss.on("connection", (ws, req) => server.accept(ws, req));
    server.timers.push(setInterval(() => server.housekeeping(), HOUSEKEEPING_MS).unref());
    server.timers.push(setInterval(() => server.evictIdleSessions(), Math.min(limits.idleTimeoutMs, 10_000)).unref());
    server.timers.push(setInterval(() => server.heartbeat(), HEARTBEAT_MS).unref());
    server.logger.info({ port: server.port, first: o.shard.first, last: o.shard.last, maxSessionTokens, maxFrameBytes }, "shard server listening");
    return server;
  }

  get port(): number {
    const address = this.http.address();
    return typeof address === "object" && address !== null ? address.port : 0;
  }

  get url(): string {
    return `${this.o.tls === undefined ? "ws" : "wss"}://${this.o.host ?? "127.0.0.1"}:${this.port}`;
  }

  get sessionCount(): number {
    return this.sessions.size;
  }

  get connectionCount(): number {
    return this.peers.size;
  }

  /** Sessions per engine run in recent runs (1 when nothing was batched). */
  get recentBatchSizes(): readonly number[] {
    return this.engine.recentBatchSizes;
  }

  /** Requests being handled now (steps running, or waiting for their next hop). */
  get inFlightCount(): number {
    return this.inFlight.size;
  }

  /** Why the server takes no steps, when its receipt store failed. */
  get storeFailure(): string | undefined {
    return this.attestor.failed;
  }

  /**
   * Stops taking work (new requests get ShuttingDown) and lets the requests in flight finish and
   * reply, forwarded ones included, for at most `limits.shutdownDeadlineMs`; then closes every
   * connection (what is still running then is abandoned: its client sees the connection close).
   */
  async stop(): Promise<void> {
    this.stopping = true;
    for (const t of this.timers) clearInterval(t);
    const deadline = new Promise<void>((resolve) => setTimeout(resolve, this.limits.shutdownDeadlineMs).unref());
    const drained = (async () => {
      while (this.inFlight.size > 0) await Promise.all(this.inFlight);
      await this.engine.idle();
    })();
    await Promise.race([drained, deadline]);
    await turnEnded(); // the last steps' receipts are attested at the end of their turn
    try {
      this.attestor.flush();
    } catch {
      // logged when it failed (onFailure)
    }
    this.forwarder.close();
    for (const ws of this.wss.clients) ws.close(1001, "server shutting down");
    const closed = new Promise<void>((resolve) => this.wss.close(() => resolve()));
    // a peer that does not answer the close handshake is cut after a short grace
    setTimeout(() => {
      for (const ws of this.wss.clients) ws.terminate();
    }, 1_000).unref();
    await closed;
    await new Promise<void>((resolve) => {
      this.http.close(() => resolve());
      this.http.closeAllConnections();
    });
  }

  // ---------------------------------------------------------------- connections

  private accept(ws: WebSocket, req: IncomingMessage): void {
    const address = remoteAddressOf(req.socket.remoteAddress);
    ws.on("error", (err) => this.logger.warn({ err: err.message, address }, "connection error"));
    const refusal =
      this.stopping
        ? "server is shutting down"
        : (this.perAddress.get(address) ?? 0) >= this.limits.maxConnectionsPerAddress
          ? `address ${address} holds its maximum of ${this.limits.maxConnectionsPerAddress} connections`
          : this.peers.size >= this.limits.maxConnections && !this.closeIdlest()
            ? `server holds its maximum of ${this.limits.maxConnections} connections, all of them busy`
            : undefined;
    const peer = new Peer(ws, req.socket, address, this.limits, { signingKey: this.o.signingKey, address: this.o.address }, Date.now());
    if (refusal !== undefined) {
      peer.send({ type: MessageType.Error, requestId: 0, code: ErrorCode.TooManyConnections, hop: 0, message: refusal });
      ws.close(1013, "try again later");
      return;
    }
    this.peers.add(peer);
    this.perAddress.set(address, (this.perAddress.get(address) ?? 0) + 1);
    ws.on("pong", () => (peer.alive = true));
    ws.on("close", () => this.release(peer));
    ws.on("message", (data, isBinary) => this.receive(peer, data, isBinary));
    peer.send(this.infoFor(peer));
  }

  /**
   * At the connection cap, the connection idle longest (no session, nothing in flight) makes room
   * for a new one: idle connections cannot lock others out. Returns whether one was closed.
   */
  private closeIdlest(): boolean {
    let idlest: Peer | undefined;
    for (const p of this.peers) {
      if (p.inFlight === 0 && this.sessions.countOf(p) === 0 && (idlest === undefined || p.lastActivityMs < idlest.lastActivityMs)) idlest = p;
    }
    if (idlest === undefined) return false;
    this.release(idlest); // counted out now: its close event comes later
    idlest.ws.close(1013, "server full: idle connection closed to make room");
    return true;
  }

  private release(peer: Peer): void {
    if (!this.peers.delete(peer)) return;
    const left = (this.perAddress.get(peer.address) ?? 1) - 1;
    if (left === 0) this.perAddress.delete(peer.address);
    else this.perAddress.set(peer.address, left);
    const dropped = this.sessions.dropOwner(peer);
    if (dropped > 0) this.logger.debug({ dropped }, "connection closed, sessions dropped");
  }

  /** The credit announced in ServerInfo: the smaller of the gates' (they share --credit-steps); 0 when free. */
  private get creditSteps(): number {
    const { payments, tickets } = this.o;
    const credits = [payments?.creditSteps, tickets?.creditSteps].filter((c) => c !== undefined);
    return credits.length === 0 ? 0 : Math.min(...credits);
  }

  private infoFor(peer: Peer): ServerInfo {
    const { o, limits } = this;
    return {
      type: MessageType.ServerInfo,
      requestId: 0,
      protocolVersion: PROTOCOL_VERSION,
      chainId: o.chainId,
      server: o.address,
      variantId: o.variantId,
      firstLayer: o.shard.first,
      lastLayer: o.shard.last,
      hiddenSize: o.shard.config.hiddenSize,
      maxSessions: limits.maxSessions,
      maxSessionTokens: limits.maxSessionTokens,
      maxStepTokens: limits.maxStepTokens,
      maxFrameBytes: this.wireLimits.maxFrameBytes,
      pricePerToken: o.pricePerToken ?? 0n,
      commitments: o.commitments ?? ZeroAddress,
      challenge: peer.challenge,
      creditSteps: this.creditSteps,
      signEvery: this.attestor.signEvery,
    };
  }

  private receive(peer: Peer, data: unknown, isBinary: boolean): void {
    if (!isBinary) {
      peer.send({ type: MessageType.Error, requestId: 0, code: ErrorCode.BadFrame, hop: 0, message: "text frames are not accepted: send binary" });
      return;
    }
    let frame = toBytes(data);
    try {
      frame = peer.serverLink.open(frame);
    } catch (err) {
      // an altered frame on a server link: nothing later on it can be trusted
      this.reject(peer, requestIdOf(frame), err);
      peer.ws.close(1008, "link MAC mismatch");
      return;
    }
    let message: Message;
    try {
      message = decodeMessage(frame, this.wireLimits);
    } catch (err) {
      this.reject(peer, requestIdOf(frame), err);
      return;
    }
    peer.beginRequest(Date.now());
    const handled = this.handle(peer, message).catch((err: unknown) => this.reject(peer, message.requestId, err));
    this.inFlight.add(handled);
    void handled.finally(() => {
      this.inFlight.delete(handled);
      peer.endRequest(Date.now());
    });
  }

  private async handle(peer: Peer, m: Message): Promise<void> {
    if (this.stopping) throw new WireError(ErrorCode.ShuttingDown, "server is shutting down");
    switch (m.type) {
      case MessageType.OpenSession:
        this.openSession(peer, m.sessionId, m.maxLength, m.requestId);
        return;
      case MessageType.CloseSession: {
        this.sessions.get(m.sessionId, peer); // only its owner closes it
        // the steps since the last signed run are signed now: the owner leaves with evidence of all of them
        const chain = this.attestor.seal(m.sessionId);
        this.sessions.close(m.sessionId, peer);
        peer.send({ type: MessageType.SessionClosed, requestId: m.requestId, sessionId: m.sessionId, ...(chain === undefined ? {} : { chain }) });
        return;
      }
      case MessageType.Step:
        await this.step(peer, m);
        return;
      case MessageType.FetchStep:
      case MessageType.FetchSessionStep:
        this.fetchStep(peer, m);
        return;
      case MessageType.FetchBatch:
        this.fetchBatch(peer, m);
        return;
      case MessageType.Authenticate:
        await this.closeOnFailure(peer, m.requestId, () => this.authenticate(peer, m));
        return;
      case MessageType.PeerHello:
        await this.closeOnFailure(peer, m.requestId, async () => peer.send(peer.serverLink.welcome(m)));
        return;
      case MessageType.BindChannel: {
        this.admitBinding(peer, m.sessionId);
        peer.send(await this.payments().bind(m, peer.challenge));
        this.o.tickets?.unbind(m.sessionId); // a session pays one way at a time: the latest binding
        return;
      }
      case MessageType.Pay:
        peer.send(await this.payments().pay(m, Date.now()));
        return;
      case MessageType.BindTickets: {
        this.admitBinding(peer, m.sessionId);
        peer.send(await this.tickets().bind(m, peer.challenge));
        this.o.payments?.unbind(m.sessionId);
        return;
      }
      case MessageType.PayTicket:
        peer.send(await this.tickets().pay(m));
        return;
      default:
        throw new WireError(ErrorCode.UnknownType, `message type ${m.type} is not a request a server accepts`);
    }
  }

  private payments(): PaymentGate {
    if (this.o.payments === undefined) {
      const why = this.o.tickets === undefined ? "this server charges nothing: it takes no channels or vouchers" : "this server takes tickets (BindTickets), not channels or vouchers";
      throw new WireError(ErrorCode.UnknownType, why);
    }
    return this.o.payments;
  }

  private tickets(): TicketGate {
    if (this.o.tickets === undefined) {
      const why = this.o.payments === undefined ? "this server charges nothing: it takes no tickets" : "this server takes payment channels (BindChannel), not tickets";
      throw new WireError(ErrorCode.UnknownType, why);
    }
    return this.o.tickets;
  }

  /** Only a session's owner binds it (to a channel or a ticket deposit), at a bounded rate per connection. */
  private admitBinding(peer: Peer, sessionId: string): void {
    this.sessions.get(sessionId, peer);
    if (!peer.binds.take(Date.now())) {
      throw new WireError(ErrorCode.RateLimited, `at most ${this.limits.bindsPerSecond} channel bindings per second per connection (burst ${this.limits.bindBurst})`);
    }
  }

  /** Charges a step to the gate its session is bound to: its ticket deposit, else its channel; the undo of the charge. */
  private charge(sessionId: string, step: bigint, tokens: number): () => void {
    const { tickets, payments } = this.o;
    if (tickets !== undefined && (payments === undefined || tickets.commitment(sessionId) !== undefined)) return tickets.charge(sessionId, step, tokens);
    if (payments !== undefined) return payments.charge(sessionId, step, tokens);
    return () => undefined;
  }

  /**
   * Runs an authentication; a failed one is answered and the connection closed, so each costs an
   * attacker a new connection (a signature recovery, and a chain read for verifiers, per attempt).
   */
  private async closeOnFailure(peer: Peer, requestId: number, authenticate: () => Promise<void>): Promise<void> {
    try {
      await authenticate();
    } catch (err) {
      this.reject(peer, requestId, err);
      peer.ws.close(1008, "authentication failed");
    }
  }

  private openSession(peer: Peer, sessionId: string, maxLength: number, requestId: number): void {
    this.attestor.check(1, this.o.shard.config.hiddenSize);
    const session = this.sessions.open(sessionId, peer, maxLength, this.o.shard.newCache(), Date.now());
    // A session id names one session forever, so the key that proves ownership of its steps is never reissued.
    let fresh: boolean;
    try {
      fresh = this.o.store.putSessionKey(sessionId, session.forwardKey, Date.now());
    } catch (err) {
      this.sessions.close(sessionId, peer);
      throw new WireError(ErrorCode.StoreFailed, `receipt store cannot record session ${sessionId}: ${(err as Error).message}`);
    }
    if (!fresh) {
      this.sessions.close(sessionId, peer);
      throw new WireError(ErrorCode.SessionExists, `session id ${sessionId} was used before on this server: open sessions with fresh random ids`);
    }
    peer.send({ type: MessageType.SessionOpened, requestId, sessionId, forwardKey: session.forwardKey });
  }

  // ---------------------------------------------------------------- a step, stage by stage

  private async step(peer: Peer, m: Step): Promise<void> {
    const { session, nextKey, release, refund } = this.admit(peer, m);
    try {
      let delivered: Promise<void>;
      try {
        const output = await this.run(session, m).catch((err: unknown) => {
          if (session.nextStep === m.step) refund(); // not run: the client may retry it, and pays once
          throw err;
        });
        const encoded = encodeActivations(output, m.input.rows, m.input.cols, m.outputEncoding);
        delivered = this.deliver(session, m, nextKey, encoded);
        delivered.catch(() => undefined); // awaited below
        // the receipt follows once this turn's outputs are written: a batch's outputs leave together, not one per receipt
        afterTurnWrites(() => this.attest(session, m, encoded));
      } finally {
        // this server's part is done: the session may take its next step (the client may already hold this one's output)
        this.sessions.finish(session, Date.now());
      }
      if (nextKey !== undefined) await this.park(session, delivered);
      this.acknowledge(peer, m);
    } finally {
      release();
    }
  }

  /** Waits for a forwarded step's route to answer, counted against the session and its owner. */
  private async park(session: Session<Peer>, delivered: Promise<void>): Promise<void> {
    session.parked++;
    session.owner.parked++;
    try {
      await delivered;
    } finally {
      session.parked--;
      session.owner.parked--;
    }
  }

  /**
   * Who may drive the session (its owner on its own connection, or a forwarded step with the
   * owner's tag), whether this is the session's next step at its position, whether receipts can be
   * recorded, whether the next hop is allowed, and whether the tokens fit; then the step counts as
   * in flight. Nothing has changed when this throws, so the step may be retried.
   */
  private admit(peer: Peer, m: Step): { session: Session<Peer>; nextKey: string | undefined; release: () => void; refund: () => void } {
    const session = m.tag === undefined ? this.sessions.get(m.sessionId, peer) : this.forwardedSession(m, m.tag, peer);
    if (m.step !== session.nextStep) {
      throw new WireError(ErrorCode.BadPosition, `session ${m.sessionId} expects step ${session.nextStep}, got ${m.step}`);
    }
    if (m.position !== session.cache.length) {
      throw new WireError(ErrorCode.BadPosition, `session ${m.sessionId} is at position ${session.cache.length}, step says ${m.position}`);
    }
    this.attestor.check(m.input.rows, this.o.shard.config.hiddenSize);
    if (session.parked >= this.limits.maxParkedForwardsPerSession || session.owner.parked >= this.limits.maxParkedForwardsPerClient) {
      throw new WireError(ErrorCode.Busy, `session ${m.sessionId} (or its client) has too many forwarded steps waiting for their routes to answer`);
    }
    const next = m.route[0];
    const nextKey = next === undefined ? undefined : this.forwarder.check(next.url);
    if (nextKey !== undefined && !this.forwarder.has(nextKey) && !session.owner.newPeers.take(Date.now())) {
      throw new WireError(
        ErrorCode.RateLimited,
        `this client's steps may make the server open at most ${this.limits.newPeersPerClientPerSecond} new next-hop connections per second`,
      );
    }
    const release = this.clientLoads.take(session.owner.address, nextKey);
    let refund = (): void => undefined;
    try {
      // charged to the session's channel or ticket deposit (a step refused for any reason is not)
      refund = this.charge(session.id, m.step, m.input.rows);
      this.sessions.admit(session, m.input.rows);
    } catch (err) {
      release();
      refund();
      throw err;
    }
    session.nextStep++;
    // The connection to the next hop opens while the layers run (it is pooled: only the first step waits).
    if (nextKey !== undefined) this.forwarder.link(nextKey).catch(() => undefined);
    return { session, nextKey, release, refund };
  }

  /** The session's layers over the step's input; the engine serves the session's owner in turn with other clients. */
  private async run(session: Session<Peer>, m: Step): Promise<Float32Array> {
    try {
      return await this.engine.compute(decodeActivations(m.input), session.cache, session.owner.address);
    } catch (err) {
      if (session.cache.length === m.position) {
        session.nextStep = m.step; // the cache is unchanged: the step may be retried
        throw err;
      }
      // a long prefill failed part-way: its first chunks are in the cache, so the session cannot go on
      this.sessions.close(session.id, session.owner);
      throw new WireError(ErrorCode.Internal, `step ${m.step} failed part-way (${(err as Error).message}); session ${session.id} is closed`);
    }
  }

  /**
   * The output leaves first, to the next hop or to the session's owner; the receipt follows. A
   * forwarded step's messages to the owner carry request id 0: the owner did not send it on this
   * connection, and matches them by session and step.
   */
  private deliver(session: Session<Peer>, m: Step, nextKey: string | undefined, output: EncodedActivations): Promise<void> {
    const next = m.route[0];
    if (next === undefined || nextKey === undefined) {
      const requestId = m.tag === undefined ? m.requestId : 0;
      session.owner.send({ type: MessageType.StepResult, requestId, sessionId: m.sessionId, step: m.step, output });
      return Promise.resolve();
    }
    const forwarded = { sessionId: next.sessionId, tag: next.tag, step: m.step, position: m.position, outputEncoding: m.outputEncoding };
    return this.forwarder.forward(nextKey, { ...forwarded, input: output, route: m.route.slice(1) });
  }

  /**
   * The step's receipt extends its session's chain and goes to the owner (signed at the end of a
   * run, once the run is stored). If the store cannot write, every client learns at once (their
   * connections close with the reason: `storeFailed`), and the server takes no more steps.
   */
  private attest(session: Session<Peer>, m: Step, output: EncodedActivations): void {
    let signed: ServerReceipt;
    try {
      signed = this.attestor.attest(m, m.input, output);
    } catch {
      return; // the store failed: the attestor's onFailure closed every connection with the reason
    }
    const requestId = m.tag === undefined ? m.requestId : 0;
    session.owner.send({ type: MessageType.StepReceipt, requestId, sessionId: m.sessionId, step: m.step, signed });
  }

  /** A routed or forwarded step is answered once everything after this server is done. */
  private acknowledge(peer: Peer, m: Step): void {
    if (m.route.length > 0 || m.tag !== undefined) {
      peer.send({ type: MessageType.StepForwarded, requestId: m.requestId, sessionId: m.sessionId, step: m.step });
    }
  }

  /**
   * The session a forwarded step names, if it came on a link authenticated as a server and its tag
   * was made with that session's forwarding key for delivery by that server.
   */
  private forwardedSession(m: Step, tag: string, peer: Peer): Session<Peer> {
    const previous = peer.serverLink.previousHop();
    const session = this.sessions.lookup(m.sessionId);
    const tagged = { sessionId: m.sessionId, step: m.step, position: m.position, rows: m.input.rows, outputEncoding: m.outputEncoding, previous, route: m.route };
    if (!tagMatches(session.forwardKey, tagged, tag)) {
      throw new WireError(ErrorCode.Forbidden, `forwarded step ${m.step} for session ${m.sessionId} carries a tag its owner did not make for delivery by ${previous}`);
    }
    return session;
  }

  // ---------------------------------------------------------------- evidence for owners and verifiers

  /**
   * The step behind a receipt (by leaf, or by session and step), for the session's owner (proved
   * per request with the session's key) or an authenticated verifier. Strangers are refused before
   * the store is read; owners are rate-limited per connection (verifiers are staked, and audit whole
   * session prefixes: only backpressure bounds them).
   */
  private fetchStep(peer: Peer, m: FetchStep | FetchSessionStep): void {
    this.refuseWhileUnread(peer);
    if (peer.verifier === undefined && !peer.fetches.take(Date.now())) {
      throw new WireError(ErrorCode.RateLimited, `at most ${this.limits.fetchesPerSecond} fetches per second per connection (burst ${this.limits.fetchBurst})`);
    }
    if (peer.verifier === undefined && m.ownerProof === undefined) {
      throw new WireError(
        ErrorCode.Forbidden,
        "fetching a step needs the session owner's proof, or a connection authenticated as a registered verifier",
      );
    }
    const byLeaf = m.type === MessageType.FetchStep;
    const what = byLeaf ? `receipt leaf ${m.leaf}` : `step ${m.step} of session ${m.sessionId}`;
    // A missing step and a wrong owner proof get the same answer: a stranger with a made-up proof
    // learns nothing, not even whether this server holds the step.
    const notFound = new WireError(
      ErrorCode.NotFound,
      `no stored step has ${what} that this connection may fetch (not signed here, past retention, or the owner proof is not made with its session's key over this connection's challenge)`,
    );
    this.attestor.flush(); // steps computed in the last few ms are in the store too
    const stored = byLeaf ? this.o.store.get(m.leaf) : this.o.store.getBySession(m.sessionId, m.step);
    if (stored === undefined) throw notFound;
    const leaf = receiptLeaf(stored.receipt);
    if (peer.verifier === undefined) {
      const key = this.o.store.sessionKey(stored.receipt.sessionId);
      const target = byLeaf ? m.leaf : sessionStepTarget(m.sessionId, m.step);
      if (key === undefined || !ownerProofMatches(key, peer.challenge, target, m.ownerProof!)) throw notFound;
    }
    const committed = this.o.store.proofOf(leaf);
    peer.send({
      type: MessageType.StoredStep,
      requestId: m.requestId,
      receipt: stored.receipt,
      input: stored.input,
      output: stored.output,
      ...(committed === undefined ? {} : { batch: { batchId: BigInt(committed.batchId), proof: committed.proof } }),
    });
  }

  /**
   * Large replies are refused while the connection's earlier replies lie unread past the limit:
   * requests already read when reading stopped must not fill memory either.
   */
  private refuseWhileUnread(peer: Peer): void {
    if (peer.overBuffered) {
      throw new WireError(
        ErrorCode.Overloaded,
        `this connection has ${peer.ws.bufferedAmount} bytes of replies it has not read, over the limit of ${this.limits.maxBufferedBytesPerConnection}: read them first`,
      );
    }
  }

  /** A page of a posted batch's receipts, for an authenticated verifier choosing which to audit. */
  private fetchBatch(peer: Peer, m: FetchBatch): void {
    this.refuseWhileUnread(peer);
    if (peer.verifier === undefined) throw new WireError(ErrorCode.Forbidden, "a batch's receipts are listed only to a connection authenticated as a registered verifier");
    const page = this.o.store.batchReceipts(Number(m.batchId), m.offset, m.limit);
    if (page === undefined) throw new WireError(ErrorCode.NotFound, `no posted batch ${m.batchId} in this server's store (not posted by it, or past retention)`);
    peer.send({ type: MessageType.BatchReceipts, requestId: m.requestId, batchId: m.batchId, total: page.total, offset: m.offset, receipts: page.receipts });
  }

  /** A verifier proves its address over this connection's challenge; the chain says whether it is a registered verifier. */
  private async authenticate(peer: Peer, m: Authenticate): Promise<void> {
    if (this.o.isVerifier === undefined) {
      throw new WireError(ErrorCode.Forbidden, "this server runs without a chain: there are no registered verifiers, only session owners may fetch");
    }
    const signer = recoverAuth(this.o.chainId, this.o.address, peer.challenge, m.signature);
    if (signer !== m.address) throw new WireError(ErrorCode.Forbidden, `the signature is not ${m.address}'s over this connection's challenge`);
    if (!(await this.o.isVerifier(m.address))) throw new WireError(ErrorCode.Forbidden, `${m.address} is not a registered verifier`);
    peer.verifier = m.address;
    peer.send({ type: MessageType.Authenticated, requestId: m.requestId, address: m.address });
  }

  // ---------------------------------------------------------------- errors, timers

  /** The store could not write computed steps: the server takes no more steps, and every client learns it at once. */
  private storeFailed(reason: string): void {
    this.logger.error({ reason }, "receipt store failed: taking no more steps");
    for (const ws of this.wss.clients) ws.close(1011, "receipt store failed: server takes no steps");
  }

  private reject(peer: Peer, requestId: number, err: unknown): void {
    if (err instanceof WireError) {
      const payment = err.payment === undefined ? {} : { payment: err.payment };
      peer.send({ type: MessageType.Error, requestId, code: err.wireCode, hop: err.hop, message: err.message, ...payment });
      return;
    }
    this.logger.error({ err }, "request failed");
    const message = err instanceof Error ? err.message : String(err);
    peer.send({ type: MessageType.Error, requestId, code: ErrorCode.Internal, hop: 0, message });
  }

  /** Closes connections idle with no session, and connections whose replies do not drain. */
  private housekeeping(): void {
    const now = Date.now();
    for (const peer of this.peers) {
      if (peer.closeIfStalled(now)) {
        this.logger.info({ address: peer.address }, "closed a connection whose replies did not drain");
        continue;
      }
      const idle = peer.inFlight === 0 && this.sessions.countOf(peer) === 0 && now - peer.lastActivityMs > this.limits.connectionIdleMs;
      if (idle) peer.ws.close(1000, `idle for ${this.limits.connectionIdleMs} ms with no session`);
    }
  }

  private evictIdleSessions(): void {
    const evicted = this.sessions.evictIdle(Date.now());
    if (evicted.length > 0) this.logger.info({ evicted: evicted.length }, "idle sessions closed");
  }

  private heartbeat(): void {
    for (const peer of this.peers) {
      if (!peer.alive) {
        peer.ws.terminate();
        continue;
      }
      peer.alive = false;
      peer.ws.ping();
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
