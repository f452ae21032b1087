import { helloTranscript, linkKey, newEphemeralKey, openSealedFrame, signTranscript, signedBy, welcomeTranscript } from "../../protocol/peerAuth.js";
import { ErrorCode, MessageType, WireError, type PeerHello, type PeerWelcome } from "../../protocol/wire.js";
import type { PeerIdentity } from "./peerLink.js";

/**
 * The accepting side of one connection, as far as server-to-server links go (design in
 * protocol/forwarding.ts). Every connection gets one, with the challenge sent in its ServerInfo;
 * when the other side is a server, its PeerHello proves its address, and from the PeerWelcome on
 * every frame it sends must carry the link MAC. The server then takes a forwarded step on this
 * connection only if its tag names `previousHop()` as the server that delivers it.
 *
 * Use: `challenge` in the ServerInfo; every incoming frame through `open()` before parsing (a
 * failure is a BadLinkMac WireError, after which the connection should be closed); a PeerHello
 * answered with `welcome()`; a forwarded step checked against `previousHop()`.
 */
export class InboundPeer {
  private peer: { address: string; key: Uint8Array; frames: bigint } | undefined;

  constructor(
    private readonly me: PeerIdentity,
    /** The 32-byte hex challenge this connection was sent in ServerInfo (fresh per connection). */
    readonly challenge: string,
  ) {}

  /** The frame inside `data`: unchanged before authentication, MAC-checked and stripped after. */
  open(data: Uint8Array): Uint8Array {
    if (this.peer === undefined) return data;
    return openSealedFrame(this.peer.key, this.peer.frames++, data);
  }

  /** Checks a connecting server's PeerHello and returns the PeerWelcome that completes the link key. */
  welcome(hello: PeerHello): PeerWelcome {
    if (this.peer !== undefined) throw new WireError(ErrorCode.PeerUnauthenticated, `this connection already authenticated as ${this.peer.address}`);
    const transcript = helloTranscript({ challenge: this.challenge, accepting: this.me.address, connecting: hello.server, connectingKey: hello.ephemeralKey });
    if (!signedBy(transcript, hello.signature, hello.server)) {
      throw new WireError(ErrorCode.PeerUnauthenticated, `PeerHello is not signed by ${hello.server} over this connection's challenge`);
    }
    const own = newEphemeralKey();
    const t = { challenge: this.challenge, connecting: hello.server, accepting: this.me.address, connectingKey: hello.ephemeralKey, acceptingKey: own.publicKey };
    const key = linkKey(own.privateKey, hello.ephemeralKey, t);
    this.peer = { address: hello.server, key, frames: 0n };
    return { type: MessageType.PeerWelcome, requestId: hello.requestId, ephemeralKey: own.publicKey, signature: signTranscript(this.me.signingKey, welcomeTranscript(t)) };
  }

  /** The address this connection authenticated as: the only previous hop whose forwarded steps it may deliver. */
  previousHop(): string {
    if (this.peer === undefined) {
      throw new WireError(ErrorCode.PeerUnauthenticated, "a forwarded step came on a connection that has not authenticated as a server (PeerHello)");
    }
    return this.peer.address;
  }
}
