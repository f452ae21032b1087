import { createHmac, timingSafeEqual } from "node:crypto";
import { getBytes, hexlify } from "ethers";
import { ENCODING_CODE, type ActivationEncoding } from "./activations.js";
import { ErrorCode, WireError, encodeRoute, type Hop } from "./wire.js";

/**
 * Forwarding: a client sends a step with the rest of its route to the first server; each server
 * runs its layers and sends its output straight to the next one, and the last server sends the
 * final output to the client. Every server still sends its own receipt to the client directly.
 *
 * Who may drive a session: the client opens a session on every server of the route itself, over its
 * own connection, and each server answers with a fresh 32-byte forwarding key that only that client
 * learns. A forwarded step arrives from another server, so the server cannot check who sent it by
 * connection; instead the step carries a tag,
 *
 *   HMAC-SHA256(key, "efed.forward.v1" ‖ session id ‖ u64 step ‖ u32 position ‖ u32 rows ‖
 *               u8 output encoding ‖ encodeRoute(rest of the route after this server))
 *
 * which only the key's holder can make. The tag binds the step, its position, its size and the
 * route beyond the server, so a server earlier in the route, which sees the tags of the servers
 * after it, can neither replay a tag (each step index is accepted once), nor use it for another
 * step or size, nor redirect the output elsewhere. What it can do is send wrong activations, which
 * it could do anyway; the client catches that by chaining the receipts' hashes.
 */
const TAG_DOMAIN = new TextEncoder().encode("efed.forward.v1");

export interface TaggedStep {
  sessionId: string;
  step: bigint;
  position: number;
  rows: number;
  outputEncoding: ActivationEncoding;
  /** The hops after the server the tag is for. */
  route: readonly Hop[];
}

/** The forwarding tag (32-byte hex) for one server's part of a step, made with that session's key. */
export function forwardTag(key: string, s: TaggedStep): string {
  return hexlify(tagBytes(key, s));
}

/** Whether `tag` is the forwarding tag of `s` under `key` (compared in constant time). */
export function tagMatches(key: string, s: TaggedStep, tag: string): boolean {
  const expected = tagBytes(key, s);
  const given = getBytes(tag);
  return given.byteLength === expected.byteLength && timingSafeEqual(given, expected);
}

function tagBytes(key: string, s: TaggedStep): Uint8Array {
  const fields = Buffer.alloc(32 + 8 + 4 + 4 + 1);
  Buffer.from(getBytes(s.sessionId)).copy(fields, 0);
  fields.writeBigUInt64LE(s.step, 32);
  fields.writeUInt32LE(s.position, 40);
  fields.writeUInt32LE(s.rows, 44);
  fields.writeUInt8(ENCODING_CODE[s.outputEncoding], 48);
  return createHmac("sha256", getBytes(key)).update(TAG_DOMAIN).update(fields).update(encodeRoute(s.route)).digest();
}

/**
 * Builds the route of a forwarded step: for servers 1..k-1 of a route (server 0 gets the step
 * directly), each hop with its tag. Tags are made from the last hop back, since each one binds the
 * hops after it.
 */
export function buildRoute(
  hops: readonly { url: string; sessionId: string; forwardKey: string }[],
  step: { step: bigint; position: number; rows: number; outputEncoding: ActivationEncoding },
): Hop[] {
  const route: Hop[] = [];
  for (let i = hops.length - 1; i >= 0; i--) {
    const h = hops[i]!;
    const tag = forwardTag(h.forwardKey, { ...step, sessionId: h.sessionId, route });
    route.unshift({ url: h.url, sessionId: h.sessionId, tag });
  }
  return route;
}

/** Longest hop URL accepted: ws://, a host name and a port fit easily. */
export const MAX_HOP_URL_CHARS = 256;

/**
 * Checks that a hop URL names a shard server and nothing else: `ws://HOST:PORT` with an optional
 * trailing slash, no credentials, path, query or fragment. A server connects to these on a
 * client's word, so anything that would let a client make it send other requests is refused.
 * Returns the host name (as the URL parser normalises it) for the operator's allowlist.
 */
export function parseHopUrl(url: string): { host: string; port: number } {
  const bad = (why: string): WireError => new WireError(ErrorCode.BadRoute, `hop URL "${url.slice(0, 80)}" ${why}`);
  if (url.length > MAX_HOP_URL_CHARS) throw bad(`is ${url.length} characters, over ${MAX_HOP_URL_CHARS}`);
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw bad("is not a URL");
  }
  if (u.protocol !== "ws:") throw bad(`has scheme ${u.protocol}, expected ws:`);
  if (u.username !== "" || u.password !== "") throw bad("carries credentials");
  if ((u.pathname !== "/" && u.pathname !== "") || u.search !== "" || u.hash !== "") throw bad("has a path, query or fragment; expected ws://HOST:PORT");
  const port = u.port === "" ? 80 : Number(u.port); // the URL parser drops a default port
  if (port === 0) throw bad("has port 0");
  return { host: u.hostname, port };
}
