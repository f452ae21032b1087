import { createHmac, createPublicKey, diffieHellman, generateKeyPairSync, hkdfSync, timingSafeEqual, type KeyObject } from "node:crypto";
import { concat, getAddress, getBytes, hashMessage, hexlify, type SigningKey } from "ethers";
import { recoverAddress, signDigest } from "./secp256k1.js";
import { ErrorCode, WireError } from "./wire.js";

/**
 * Authentication of a server-to-server link (the design is in protocol/forwarding.ts): the
 * handshake transcripts each side signs, the link key both derive, and the MAC trailer on every
 * frame the connecting server sends afterwards. Signatures are EIP-191 personal signatures by the
 * receipt-signing key, over domain-separated bytes, so they can never pass for a receipt or a
 * transaction.
 */

const HELLO_DOMAIN = "efed.peer.hello.v1";
const WELCOME_DOMAIN = "efed.peer.welcome.v1";
const LINK_KEY_INFO = "efed.peer.link.v1";
const FRAME_DOMAIN = new TextEncoder().encode("efed.link.frame.v1");
/** Bytes of the MAC trailer appended to each sealed frame. */
export const SEAL_BYTES = 32;

/** An X25519 key pair for one link; the public half as 32-byte hex. */
export interface EphemeralKey {
  publicKey: string;
  privateKey: KeyObject;
}

export function newEphemeralKey(): EphemeralKey {
  const { publicKey, privateKey } = generateKeyPairSync("x25519");
  const jwk = publicKey.export({ format: "jwk" });
  return { publicKey: hexlify(Buffer.from(jwk.x!, "base64url")), privateKey };
}

/** What the connecting server signs: the accepting server's challenge, both addresses, its ephemeral key. */
export function helloTranscript(t: { challenge: string; accepting: string; connecting: string; connectingKey: string }): Uint8Array {
  return getBytes(concat([new TextEncoder().encode(HELLO_DOMAIN), t.challenge, getAddress(t.accepting), getAddress(t.connecting), t.connectingKey]));
}

/** What the accepting server signs: the challenge it issued, who connected, and both ephemeral keys. */
export function welcomeTranscript(t: { challenge: string; connecting: string; connectingKey: string; acceptingKey: string }): Uint8Array {
  return getBytes(concat([new TextEncoder().encode(WELCOME_DOMAIN), t.challenge, getAddress(t.connecting), t.connectingKey, t.acceptingKey]));
}

export function signTranscript(key: SigningKey, transcript: Uint8Array): string {
  return signDigest(key, hashMessage(transcript));
}

/** Whether `signature` over `transcript` is by `address`; a malformed signature is simply not. */
export function signedBy(transcript: Uint8Array, signature: string, address: string): boolean {
  try {
    return recoverAddress(hashMessage(transcript), signature) === getAddress(address);
  } catch {
    return false;
  }
}

/**
 * The link key: HKDF-SHA256 over the X25519 secret of `own` and `peerPublic`, salted with the
 * challenge and bound to both addresses and both ephemeral keys (in connecting, accepting order).
 */
export function linkKey(
  own: KeyObject,
  peerPublic: string,
  t: { challenge: string; connecting: string; accepting: string; connectingKey: string; acceptingKey: string },
): Uint8Array {
  let publicKey: KeyObject;
  try {
    publicKey = createPublicKey({ key: { kty: "OKP", crv: "X25519", x: Buffer.from(getBytes(peerPublic)).toString("base64url") }, format: "jwk" });
  } catch {
    throw new WireError(ErrorCode.PeerUnauthenticated, `ephemeral key ${peerPublic} is not an X25519 public key`);
  }
  const secret = diffieHellman({ privateKey: own, publicKey });
  const info = concat([new TextEncoder().encode(LINK_KEY_INFO), getAddress(t.connecting), getAddress(t.accepting), t.connectingKey, t.acceptingKey]);
  return new Uint8Array(hkdfSync("sha256", secret, getBytes(t.challenge), getBytes(info), 32));
}

function frameMac(key: Uint8Array, frameNumber: bigint, frame: Uint8Array): Buffer {
  const n = Buffer.alloc(8);
  n.writeBigUInt64LE(frameNumber);
  return createHmac("sha256", key).update(FRAME_DOMAIN).update(n).update(frame).digest();
}

/** `frame` followed by its MAC as the `frameNumber`-th sealed frame of a link (counted from 0). */
export function sealFrame(key: Uint8Array, frameNumber: bigint, frame: Uint8Array): Uint8Array {
  const out = new Uint8Array(frame.byteLength + SEAL_BYTES);
  out.set(frame, 0);
  out.set(frameMac(key, frameNumber, frame), frame.byteLength);
  return out;
}

/** The frame inside a sealed one, or a BadLinkMac WireError when the trailer is not its MAC as frame `frameNumber`. */
export function openSealedFrame(key: Uint8Array, frameNumber: bigint, sealed: Uint8Array): Uint8Array {
  if (sealed.byteLength < SEAL_BYTES) {
    throw new WireError(ErrorCode.BadLinkMac, `frame ${frameNumber} on an authenticated link is ${sealed.byteLength} bytes, too short for its ${SEAL_BYTES}-byte MAC`);
  }
  const frame = sealed.subarray(0, sealed.byteLength - SEAL_BYTES);
  const given = sealed.subarray(sealed.byteLength - SEAL_BYTES);
  if (!timingSafeEqual(given, frameMac(key, frameNumber, frame))) {
    throw new WireError(ErrorCode.BadLinkMac, `frame ${frameNumber} on an authenticated link fails its MAC: altered, reordered or replayed on the way`);
  }
  return frame;
}
