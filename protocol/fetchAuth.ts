import { createHmac, timingSafeEqual } from "node:crypto";
import { concat, getBytes, hexlify, keccak256, hashMessage, toBeHex, type SigningKey } from "ethers";
import { recoverAddress, signDigest } from "./secp256k1.js";

/**
 * Who may fetch the step behind a receipt (FetchStep). The activations are the client's data (a
 * prompt can be recovered from the first hop's input), so a server answers only
 *
 * - the session's owner, who proves it per request with
 *     ownerProof = HMAC-SHA256(session's forwarding key, "efed.fetch.v1" ‖ challenge ‖ leaf)
 *   (the key is the 32-byte secret the server gave the owner when the session opened; the
 *   challenge is the one the server sent on this connection, so a proof seen on one connection is
 *   worthless on another), and
 * - a registered verifier, which proves its address once per connection with an EIP-191 signature
 *   over keccak256("efed.auth.v1" ‖ u64 chain id ‖ server address ‖ challenge) (Authenticate); the
 *   server then checks on chain that the address is a staked verifier.
 */
const FETCH_DOMAIN = new TextEncoder().encode("efed.fetch.v1");
const AUTH_DOMAIN = new TextEncoder().encode("efed.auth.v1");

/**
 * What an owner's proof names when fetching by session and step (FetchSessionStep) instead of by
 * leaf: keccak256(session id ‖ u64 step), 32 bytes like a leaf.
 */
export function sessionStepTarget(sessionId: string, step: bigint): string {
  return keccak256(concat([sessionId, toBeHex(step, 8)]));
}

/** The owner's proof for fetching `leaf` (or a `sessionStepTarget`) on a connection whose challenge is `challenge` (32-byte hex). */
export function ownerProof(forwardKey: string, challenge: string, leaf: string): string {
  return hexlify(ownerProofBytes(forwardKey, challenge, leaf));
}

/** Whether `proof` is the owner's proof for `leaf` (compared in constant time). */
export function ownerProofMatches(forwardKey: string, challenge: string, leaf: string, proof: string): boolean {
  const expected = ownerProofBytes(forwardKey, challenge, leaf);
  const given = getBytes(proof);
  return given.byteLength === expected.byteLength && timingSafeEqual(given, expected);
}

function ownerProofBytes(forwardKey: string, challenge: string, leaf: string): Buffer {
  return createHmac("sha256", getBytes(forwardKey)).update(FETCH_DOMAIN).update(getBytes(challenge)).update(getBytes(leaf)).digest();
}

/** The bytes a verifier signs (EIP-191) to authenticate on a connection to `server`. */
export function authMessage(chainId: bigint, server: string, challenge: string): Uint8Array {
  return getBytes(concat([AUTH_DOMAIN, toBeHex(chainId, 8), getBytes(server), getBytes(challenge)]));
}

/** A verifier's Authenticate signature for this connection. */
export function signAuth(key: SigningKey, chainId: bigint, server: string, challenge: string): string {
  return signDigest(key, hashMessage(authMessage(chainId, server, challenge)));
}

/** The address that signed an Authenticate for this connection, or undefined when the signature is malformed. */
export function recoverAuth(chainId: bigint, server: string, challenge: string, signature: string): string | undefined {
  try {
    return recoverAddress(hashMessage(authMessage(chainId, server, challenge)), signature);
  } catch {
    return undefined;
  }
}
