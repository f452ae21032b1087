import type { SigningKey } from "ethers";
import { Link, LinkFailure, dialServer, type LinkError, type LinkTiming } from "../../protocol/link.js";
import { SEAL_BYTES, helloTranscript, linkKey, newEphemeralKey, sealFrame, signTranscript, signedBy, welcomeTranscript } from "../../protocol/peerAuth.js";
import { DEFAULT_LIMITS, ErrorCode, MessageType, WireError, type PaymentDue, type ServerInfo, type Step } from "../../protocol/wire.js";

/** What this server expects of the server it forwards to. */
export interface PeerExpectation {
  variantId: string;
  /** The next server's first layer: this server's last (exclusive) layer. */
  firstLayer: number;
}

/** Who this server is on a link: the receipt-signing key it proves its address with. */
export interface PeerIdentity {
  signingKey: SigningKey;
  address: string;
}

export interface PeerLinkOptions {
  /** Milliseconds to connect, read the peer's info and finish the PeerHello/PeerWelcome handshake. */
  connectTimeoutMs: number;
  heartbeatIntervalMs: number;
  heartbeatTimeoutMs: number;
  /** Connect to this (already checked) IP address instead of resolving the URL's host. */
  address?: string | undefined;
  /** PEM certificate(s) to trust for wss:// peers besides the system's. */
  ca?: string | undefined;
}

/** Replies on a link are StepForwarded, PeerWelcome or Error frames: small. */
const MAX_REPLY_BYTES = 64 * 1024;

/**
 * One authenticated server→server connection, used to forward steps to the next server of routes.
 * At connect this server proves its address (PeerHello over the peer's challenge) and both agree a
 * link key; every step sent afterwards carries a MAC trailer (protocol/forwarding.ts). Many
 * clients' steps share the link; each is a request answered by StepForwarded or an Error, and every
 * failure becomes a `WireError` whose hop counts from this server (1 = the peer), so it can be
 * relayed back toward the client as it is.
 */
export class PeerLink {
  lastUsedMs = Date.now();

  private constructor(
    readonly url: string,
    private readonly link: Link,
    readonly info: ServerInfo,
  ) {}

  /**
   * Connects, checks that the peer continues this server's layers, and authenticates. Rejects with
   * a WireError: BadRoute for a peer serving other layers; otherwise the link's own error (the
   * caller gives every other failure one message, see Forwarder).
   */
  static async connect(url: string, expect: PeerExpectation, me: PeerIdentity, o: PeerLinkOptions, onClosed: (link: PeerLink) => void): Promise<PeerLink> {
    const deadline = Date.now() + o.connectTimeoutMs;
    const { ws, info, socket } = await dialServer(url, { connectTimeoutMs: o.connectTimeoutMs, maxFrameBytes: MAX_REPLY_BYTES, ca: o.ca, address: o.address });
    if (info.variantId !== expect.variantId || info.firstLayer !== expect.firstLayer) {
      ws.terminate();
      throw new WireError(
        ErrorCode.BadRoute,
        `next hop ${url} serves layers ${info.firstLayer}:${info.lastLayer} of variant ${info.variantId}; ` +
          `this server's output goes to layer ${expect.firstLayer} of variant ${expect.variantId}`,
      );
    }
    const opened: { peer?: PeerLink } = {};
    const timing: LinkTiming = { requestTimeoutMs: o.connectTimeoutMs, heartbeatIntervalMs: o.heartbeatIntervalMs, heartbeatTimeoutMs: o.heartbeatTimeoutMs };
    const link = new Link(url, ws, {
      ...timing,
      limits: { ...DEFAULT_LIMITS, maxFrameBytes: MAX_REPLY_BYTES },
      maxSendBytes: info.maxFrameBytes,
      socket,
      onClose: () => {
        if (opened.peer !== undefined) onClosed(opened.peer);
      },
    });
    try {
      const key = await authenticate(link, info, me, Math.max(1, deadline - Date.now()));
      let frameNumber = 0n;
      link.sealWith((frame) => sealFrame(key, frameNumber++, frame), SEAL_BYTES);
    } catch (err) {
      link.close(1008, "handshake failed");
      throw err;
    }
    opened.peer = new PeerLink(url, link, info);
    return opened.peer;
  }

  /** Forwarded steps waiting for their answer. */
  get busy(): number {
    return this.link.busy;
  }

  /**
   * Sends `step` and resolves when the peer answers StepForwarded: the peer and every hop after it
   * are done. Rejects with a `WireError` counted from this server (the peer's own errors come back
   * as hop 1, errors it relays from further down one more).
   */
  async forward(step: Omit<Step, "type" | "requestId">, timeoutMs: number): Promise<void> {
    const what = `step ${step.step} of session ${step.sessionId}`;
    this.lastUsedMs = Date.now();
    try {
      await this.link.request({ type: MessageType.Step, ...step }, MessageType.StepForwarded, timeoutMs);
    } catch (err) {
      throw this.relayable(err as LinkError, what, timeoutMs);
    }
  }

  close(): void {
    this.link.close(1001, "server shutting down");
  }

  /** A link failure as the WireError this server relays toward the client. */
  private relayable(err: LinkError, what: string, timeoutMs: number): WireError {
    const wireCode = err.wireCode;
    if (wireCode !== undefined) {
      const message = typeof err.details?.message === "string" ? err.details.message : err.message;
      const payment = err.details?.payment as PaymentDue | undefined; // what a priced hop says it is owed travels with its error
      return new WireError(wireCode, err.hop === 0 ? `${this.url}: ${message}` : message, err.hop + 1, payment);
    }
    switch (err.code) {
      case LinkFailure.Timeout:
        return new WireError(ErrorCode.Upstream, `next hop ${this.url} did not finish ${what} within ${timeoutMs} ms`, 1);
      case LinkFailure.TooLarge:
        return new WireError(ErrorCode.TooLarge, `forwarded ${what}: ${err.message}`, 1);
      default:
        return new WireError(ErrorCode.Upstream, `next hop: ${err.message}; ${what} was in flight`, 1);
    }
  }
}

/** PeerHello / PeerWelcome: proves this server's address to the peer, checks the peer's, and returns the link key. */
async function authenticate(link: Link, info: ServerInfo, me: PeerIdentity, timeoutMs: number): Promise<Uint8Array> {
  const own = newEphemeralKey();
  const hello = helloTranscript({ challenge: info.challenge, accepting: info.server, connecting: me.address, connectingKey: own.publicKey });
  const welcome = await link.request(
    { type: MessageType.PeerHello, server: me.address, ephemeralKey: own.publicKey, signature: signTranscript(me.signingKey, hello) },
    MessageType.PeerWelcome,
    timeoutMs,
  );
  const transcript = { challenge: info.challenge, connecting: me.address, connectingKey: own.publicKey, acceptingKey: welcome.ephemeralKey };
  if (!signedBy(welcomeTranscript(transcript), welcome.signature, info.server)) {
    throw new WireError(ErrorCode.PeerUnauthenticated, `next hop ${link.url}'s welcome is not signed by the address it announced, ${info.server}`, 1);
  }
  return linkKey(own.privateKey, welcome.ephemeralKey, { ...transcript, accepting: info.server });
}
