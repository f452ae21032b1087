import { isIP } from "node:net";
import type { Duplex } from "node:stream";
import { WebSocket, type ClientOptions } from "ws";
import { EFedError, InvalidArgumentError } from "./errors.js";
import { holdForTurn } from "./turnWrites.js";
import {
  MessageType,
  PROTOCOL_VERSION,
  announcedVersion,
  decodeMessage,
  encodeMessage,
  type ErrorCodeValue,
  type Message,
  type MessageTypeCode,
  type ServerInfo,
  type WireLimits,
} from "./wire.js";

/**
 * One request/response link over a WebSocket, for whichever side holds it (a client's connection
 * to a shard server, a server's link to its next hop): requests matched to replies by request id,
 * each with its own deadline; unsolicited frames handed to a callback; heartbeats that declare a
 * silent peer dead; and one failure that ends every request in flight at once.
 */

/** The link's own failures; a peer's Error frame becomes `SERVER_<wire code>`. */
export const LinkFailure = {
  /** Could not open the connection (refused, unreachable, TLS or upgrade failure). */
  ConnectFailed: "CONNECT_FAILED",
  /** No reply (or no handshake) within the deadline. */
  Timeout: "TIMEOUT",
  /** The connection closed, by either side. */
  Closed: "CLOSED",
  /** No frame and no pong within the heartbeat timeout: the peer is dead or hung. */
  Silent: "SILENT",
  /** The peer sent a frame that does not parse. */
  BadFrame: "BAD_FRAME",
  /** The peer's first frame is not a hello this side accepts. */
  BadHandshake: "BAD_HANDSHAKE",
  /** The peer answered a request with a message of another type. */
  BadReply: "BAD_REPLY",
  /** A request would exceed the frame size the peer announced (it would drop the link). */
  TooLarge: "TOO_LARGE",
} as const;
export type LinkErrorCode = (typeof LinkFailure)[keyof typeof LinkFailure] | `SERVER_${ErrorCodeValue}`;

/**
 * A request over a link failed: the peer's Error (code `SERVER_<wire code>`, `wireCode` set) or one
 * of the link's own failures. `details.url` names the peer; `hop` says where along the request's
 * route it failed (0: the peer itself, 1: the peer's next hop of a forwarded step, and so on).
 */
export class LinkError extends EFedError {
  declare readonly code: LinkErrorCode;
  readonly hop: number;
  constructor(code: LinkErrorCode, message: string, details: Record<string, unknown> = {}, hop = 0) {
    super(code, message, { details });
    this.hop = hop;
  }

  /** The wire error code when the peer answered with an Error frame. */
  get wireCode(): ErrorCodeValue | undefined {
    return this.code.startsWith("SERVER_") ? (Number(this.code.slice(7)) as ErrorCodeValue) : undefined;
  }
}

export interface LinkTiming {
  /** Milliseconds to wait for each reply, unless a request says otherwise. */
  requestTimeoutMs: number;
  /** Milliseconds between pings. */
  heartbeatIntervalMs: number;
  /** Milliseconds without any frame or pong after which the peer is dead. Detection takes at most this plus one interval. */
  heartbeatTimeoutMs: number;
}

export interface LinkOptions extends LinkTiming {
  /** Bounds for parsing the peer's frames. */
  limits: WireLimits;
  /** Largest frame the peer accepts (it drops a link that sends more); default: no check. */
  maxSendBytes?: number;
  /** Frames that answer no pending request: request id 0, StepReceipts, late replies. */
  onUnsolicited?: (m: Message) => void;
  /** Called once when the link fails or closes, with the error every pending request got. */
  onClose?: (err: LinkError) => void;
  /** The connection's socket (dialServer's): frames sent in one turn of the event loop leave in one write (turnWrites.ts). */
  socket?: Duplex;
}

/** The message of type T. */
export type MessageOf<T extends MessageTypeCode> = Extract<Message, { type: T }>;
/** A message before the link gives it a request id. */
export type Request = Message extends infer M ? (M extends Message ? Omit<M, "requestId"> : never) : never;

interface Pending {
  resolve: (m: Message) => void;
  reject: (e: LinkError) => void;
  timer: NodeJS.Timeout;
}

export class Link {
  private readonly pending = new Map<number, Pending>();
  private nextRequestId = 1;
  private failure: LinkError | undefined;
  private lastHeardMs = Date.now();
  private readonly heartbeat: NodeJS.Timeout;
  /** Applied to every outgoing frame once set (an authenticated server link's MAC trailer), adding `sealBytes`. */
  private seal: ((frame: Uint8Array) => Uint8Array) | undefined;
  private sealBytes = 0;

  constructor(
    readonly url: string,
    private readonly ws: WebSocket,
    private readonly o: LinkOptions,
  ) {
    validateTiming(o);
    ws.on("message", (data) => this.onFrame(toBytes(data)));
    ws.on("pong", () => (this.lastHeardMs = Date.now()));
    ws.on("error", () => undefined); // every failure also surfaces as 'close'
    ws.on("close", (code, reason) => this.fail(new LinkError(LinkFailure.Closed, `connection to ${url} closed (${code} ${reason.toString()})`, { url })));
    this.heartbeat = setInterval(() => this.beat(), o.heartbeatIntervalMs).unref();
    if (ws.isPaused) ws.resume();
  }

  /** Requests waiting for their reply. */
  get busy(): number {
    return this.pending.size;
  }

  /** Why the link is no longer usable, once it is not. */
  get closedBy(): LinkError | undefined {
    return this.failure;
  }

  /** From now on every frame sent goes through `seal`, which makes it `extraBytes` longer (and may count frames). */
  sealWith(seal: (frame: Uint8Array) => Uint8Array, extraBytes: number): void {
    this.seal = seal;
    this.sealBytes = extraBytes;
  }

  /**
   * Sends `m` with a fresh request id and resolves with the reply of type `expect`. Rejects with a
   * LinkError: the peer's Error frame, a reply of another type, the deadline, or the link failing.
   */
  request<T extends MessageTypeCode>(m: Request, expect: T, timeoutMs = this.o.requestTimeoutMs): Promise<MessageOf<T>> {
    if (this.failure !== undefined) return Promise.reject(this.failure);
    const requestId = this.nextRequestId++;
    let frame = encodeMessage({ ...m, requestId } as Message);
    // checked before sealing: a frame that is never sent must not use up a sealed frame number
    const bytes = frame.byteLength + this.sealBytes;
    if (this.o.maxSendBytes !== undefined && bytes > this.o.maxSendBytes) {
      const why = `a ${bytes}-byte frame is over ${this.url}'s limit of ${this.o.maxSendBytes}`;
      return Promise.reject(new LinkError(LinkFailure.TooLarge, why, { url: this.url }));
    }
    if (this.seal !== undefined) frame = this.seal(frame);
    return new Promise<MessageOf<T>>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(requestId);
        reject(new LinkError(LinkFailure.Timeout, `${this.url} did not answer request ${requestId} within ${timeoutMs} ms`, { url: this.url }));
      }, timeoutMs).unref(); // the socket keeps the process alive while it is open; a timer alone must not
      this.pending.set(requestId, {
        timer,
        reject,
        resolve: (reply) => {
          if (reply.type === MessageType.Error) reject(this.serverError(reply));
          else if (reply.type !== expect) {
            reject(new LinkError(LinkFailure.BadReply, `${this.url} answered with message type ${reply.type}, expected ${expect}`, { url: this.url }));
          } else resolve(reply as MessageOf<T>);
        },
      });
      if (this.o.socket !== undefined) holdForTurn(this.o.socket);
      this.ws.send(frame);
    });
  }

  /** Closes the link; requests in flight fail with CLOSED at once. */
  close(code = 1000, reason = "done"): void {
    this.fail(new LinkError(LinkFailure.Closed, `connection to ${this.url} closed by this side (${reason})`, { url: this.url }));
    this.ws.close(code, reason);
  }

  /** Drops the connection at once, without the closing handshake (a peer that stopped answering would hold it for 30 s). */
  terminate(reason = "dropped"): void {
    this.fail(new LinkError(LinkFailure.Closed, `connection to ${this.url} dropped by this side (${reason})`, { url: this.url }));
    this.ws.terminate();
  }

  private serverError(reply: Extract<Message, { type: typeof MessageType.Error }>): LinkError {
    const where = reply.hop === 0 ? this.url : `${this.url} (${reply.hop} hop${reply.hop > 1 ? "s" : ""} down its route)`;
    const details = { url: this.url, code: reply.code, hop: reply.hop, message: reply.message, ...(reply.payment === undefined ? {} : { payment: reply.payment }) };
    return new LinkError(`SERVER_${reply.code}`, `${where}: ${reply.message}`, details, reply.hop);
  }

  private onFrame(data: Uint8Array): void {
    this.lastHeardMs = Date.now();
    let m: Message;
    try {
      m = decodeMessage(data, this.o.limits);
    } catch (err) {
      this.fail(new LinkError(LinkFailure.BadFrame, `${this.url} sent a bad frame: ${(err as Error).message}`, { url: this.url }));
      this.ws.terminate();
      return;
    }
    // a StepReceipt follows the reply to its step under the same request id; it is never the reply itself
    const p = m.requestId === 0 || m.type === MessageType.StepReceipt ? undefined : this.pending.get(m.requestId);
    if (p === undefined) {
      this.o.onUnsolicited?.(m);
      return;
    }
    this.pending.delete(m.requestId);
    clearTimeout(p.timer);
    p.resolve(m);
  }

  private beat(): void {
    const silentMs = Date.now() - this.lastHeardMs;
    if (silentMs > this.o.heartbeatTimeoutMs) {
      const why = `${this.url} sent no frame and answered no ping for ${silentMs} ms (limit ${this.o.heartbeatTimeoutMs} ms): presumed dead or hung`;
      this.fail(new LinkError(LinkFailure.Silent, why, { url: this.url }));
      this.ws.terminate();
      return;
    }
    if (this.ws.readyState === WebSocket.OPEN) this.ws.ping();
  }

  private fail(err: LinkError): void {
    if (this.failure !== undefined) return;
    this.failure = err;
    clearInterval(this.heartbeat);
    for (const p of this.pending.values()) {
      clearTimeout(p.timer);
      p.reject(err);
    }
    this.pending.clear();
    this.o.onClose?.(err);
  }
}

export function validateTiming(t: LinkTiming): void {
  for (const name of ["requestTimeoutMs", "heartbeatIntervalMs", "heartbeatTimeoutMs"] as const) {
    const v = t[name];
    if (!Number.isSafeInteger(v) || v < 1) throw new InvalidArgumentError(`link option ${name} must be a positive integer of milliseconds, got ${v}`);
  }
  if (t.heartbeatTimeoutMs <= t.heartbeatIntervalMs) {
    throw new InvalidArgumentError(`link option heartbeatTimeoutMs (${t.heartbeatTimeoutMs}) must exceed heartbeatIntervalMs (${t.heartbeatIntervalMs})`);
  }
}

export interface DialOptions {
  /** Milliseconds to connect (TCP, TLS, upgrade) and receive the server's info frame. */
  connectTimeoutMs: number;
  /** Largest frame accepted from the server. */
  maxFrameBytes: number;
  /** PEM certificate(s) to trust for wss:// besides the system's (a self-signed server). */
  ca?: string | undefined;
  /** Connect to this IP address instead of resolving the URL's host (the host still names the server for TLS and Host). */
  address?: string | undefined;
}

/**
 * Opens a WebSocket to a shard server and reads its ServerInfo, which must speak this protocol
 * version. Rejects with a LinkError naming `url`: CONNECT_FAILED, TIMEOUT or BAD_HANDSHAKE.
 */
export async function dialServer(url: string, o: DialOptions): Promise<{ ws: WebSocket; info: ServerInfo; socket: Duplex }> {
  const target = new URL(url);
  const options: ClientOptions & { servername?: string } = { maxPayload: o.maxFrameBytes, perMessageDeflate: false, handshakeTimeout: o.connectTimeoutMs };
  if (o.ca !== undefined) options.ca = o.ca;
  let dialled = url;
  if (o.address !== undefined) {
    // connect to the address already checked, never to whatever the name resolves to next
    const literal = o.address.includes(":") ? `[${o.address}]` : o.address;
    dialled = `${target.protocol}//${literal}:${target.port === "" ? (target.protocol === "wss:" ? 443 : 80) : target.port}/`;
    options.headers = { host: target.host };
    // TLS names the server by its host name (SNI, certificate check); an IP literal is checked against the certificate's IP entries
    options.servername = isIP(target.hostname) !== 0 || target.hostname.startsWith("[") ? "" : target.hostname;
  }
  const ws = new WebSocket(dialled, options);
  let socket: Duplex | undefined;
  ws.once("upgrade", (response) => (socket = response.socket));
  return new Promise((resolve, reject) => {
    const failWith = (err: LinkError): void => {
      clearTimeout(timer);
      ws.removeAllListeners();
      ws.on("error", () => undefined);
      ws.terminate();
      reject(err);
    };
    const timer = setTimeout(() => failWith(new LinkError(LinkFailure.Timeout, `no server info from ${url} within ${o.connectTimeoutMs} ms`, { url })), o.connectTimeoutMs).unref();
    ws.once("error", (err) => failWith(new LinkError(LinkFailure.ConnectFailed, `cannot connect to ${url}: ${err.message}`, { url })));
    ws.once("close", (code, reason) =>
      failWith(new LinkError(LinkFailure.ConnectFailed, `${url} closed the connection (${code} ${reason.toString()}) before its server info`, { url })),
    );
    ws.once("message", (data) => {
      const frame = toBytes(data);
      const version = announcedVersion(frame);
      if (version !== undefined && version !== PROTOCOL_VERSION) {
        return failWith(new LinkError(LinkFailure.BadHandshake, `${url}: server speaks protocol ${version}, this side ${PROTOCOL_VERSION}`, { url }));
      }
      let m: Message;
      try {
        m = decodeMessage(frame, { maxFrameBytes: o.maxFrameBytes, maxStepTokens: 1, maxRouteHops: 0 });
      } catch (err) {
        return failWith(new LinkError(LinkFailure.BadHandshake, `${url}: ${(err as Error).message}`, { url }));
      }
      if (m.type === MessageType.Error) return failWith(new LinkError(`SERVER_${m.code}`, `${url} refused the connection: ${m.message}`, { url, code: m.code, message: m.message }));
      if (m.type !== MessageType.ServerInfo) return failWith(new LinkError(LinkFailure.BadHandshake, `${url}: expected server info, got message type ${m.type}`, { url }));
      clearTimeout(timer);
      ws.removeAllListeners();
      ws.pause(); // frames after the hello wait for the Link's listener
      resolve({ ws, info: m, socket: socket! }); // the upgrade comes before any frame
    });
  });
}

function toBytes(data: unknown): Uint8Array {
  if (data instanceof Uint8Array) return data;
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  if (Array.isArray(data)) return Buffer.concat(data as Buffer[]);
  return new Uint8Array(0);
}
