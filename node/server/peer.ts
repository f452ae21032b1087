import type { Duplex } from "node:stream";
import { hexlify, randomBytes } from "ethers";
import type { WebSocket } from "ws";
import { holdForTurn } from "../../protocol/turnWrites.js";
import { encodeMessage, type Message } from "../../protocol/wire.js";
import { InboundPeer } from "./inboundPeer.js";
import type { ServerLimits } from "./limits.js";
import type { PeerIdentity } from "./peerLink.js";
import type { SessionOwner } from "./sessions.js";
import { TokenBucket } from "./tokenBucket.js";

/**
 * One accepted connection and what it is allowed: its remote address (limits and fairness count by
 * it), the challenge it was sent, the verifier it authenticated as, and backpressure. The server
 * stops reading a connection while it has too many requests in flight or too many bytes queued
 * for sending (a peer that sends requests but never reads their replies stops being read), and
 * closes it when those bytes do not drain in time.
 */
export class Peer implements SessionOwner {
  /** 32 random bytes sent in ServerInfo: proofs on this connection are made over it. */
  readonly challenge = hexlify(randomBytes(32));
  /** As a server-to-server link: the other server's proof of its address, and the frame MACs after it (inboundPeer.ts). */
  readonly serverLink: InboundPeer;
  /** The registered verifier this connection proved to be, once it has. */
  verifier: string | undefined;
  /** Requests being handled for this connection. */
  inFlight = 0;
  /** Forwarded steps of this connection's sessions waiting for their route to answer. */
  parked = 0;
  lastActivityMs: number;
  readonly fetches: TokenBucket;
  /** BindChannel requests (each costs the server a signature recovery and a chain read). */
  readonly binds: TokenBucket;
  /** New next-hop connections this connection's forwarded steps may cause. */
  readonly newPeers: TokenBucket;
  /** Answered the last ping. */
  alive = true;
  private stalledSinceMs: number | undefined;

  constructor(
    readonly ws: WebSocket,
    /** The connection's socket: frames sent in one turn of the event loop leave in one write (turnWrites.ts). */
    private readonly socket: Duplex,
    /** Remote IP address, IPv4-mapped IPv6 written as plain IPv4. */
    readonly address: string,
    private readonly limits: ServerLimits,
    /** This server's signing identity, which a connecting server's link is agreed with. */
    me: PeerIdentity,
    nowMs: number,
  ) {
    this.serverLink = new InboundPeer(me, this.challenge);
    this.lastActivityMs = nowMs;
    this.fetches = new TokenBucket(limits.fetchesPerSecond, limits.fetchBurst, nowMs);
    this.binds = new TokenBucket(limits.bindsPerSecond, limits.bindBurst, nowMs);
    this.newPeers = new TokenBucket(limits.newPeersPerClientPerSecond, limits.newPeersPerClientPerSecond, nowMs);
  }

  /** Bytes of replies queued on this connection, over the limit: the peer is not reading them. */
  get overBuffered(): boolean {
    return this.ws.bufferedAmount > this.limits.maxBufferedBytesPerConnection;
  }

  /** A request arrived: counts it, and stops reading at the in-flight limit. */
  beginRequest(nowMs: number): void {
    this.inFlight++;
    this.lastActivityMs = nowMs;
    this.throttle();
  }

  endRequest(nowMs: number): void {
    this.inFlight--;
    this.lastActivityMs = nowMs;
    this.throttle();
  }

  send(m: Message): void {
    if (this.ws.readyState !== this.ws.OPEN) return;
    holdForTurn(this.socket);
    this.ws.send(encodeMessage(m), () => this.throttle());
    this.throttle();
  }

  /**
   * Called on the server's housekeeping tick: closes the connection if its queued bytes have not
   * drained for `maxSendStallMs`. Returns whether it was closed.
   */
  closeIfStalled(nowMs: number): boolean {
    if (this.stalledSinceMs === undefined || nowMs - this.stalledSinceMs <= this.limits.maxSendStallMs) return false;
    this.ws.terminate();
    return true;
  }

  /** Pauses or resumes reading by what is in flight and queued. */
  private throttle(): void {
    const overBuffered = this.overBuffered;
    if (overBuffered) this.stalledSinceMs ??= Date.now();
    else this.stalledSinceMs = undefined;
    const stop = overBuffered || this.inFlight >= this.limits.maxRequestsInFlightPerConnection;
    if (stop && !this.ws.isPaused) this.ws.pause();
    else if (!stop && this.ws.isPaused) this.ws.resume();
  }
}

/** A socket's remote address as one string per host: "::ffff:1.2.3.4" becomes "1.2.3.4". */
export function remoteAddressOf(raw: string | undefined): string {
  if (raw === undefined) return "unknown";
  return raw.startsWith("::ffff:") && raw.includes(".") ? raw.slice(7) : raw;
}
