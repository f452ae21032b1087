import { createHmac, timingSafeEqual } from "node:crypto";
import { getAddress, getBytes, hexlify } from "ethers";
import { ENCODING_CODE, type ActivationEncoding } from "./activations.js";
import { ErrorCode, WireError, encodeRoute, type Hop } from "./wire.js";

/**
 * Forwarding: a client sends a step with the rest of its route to the first server; each server
 * runs its layers and sends its output straight to the next one, and the last server sends the
 * final output to the client. Every server still sends its own receipt to the client directly.
 *
 * Who may drive a session, and with what input. The client opens a session on every server of the
 * route itself, over its own connection, and each server answers with a fresh 32-byte forwarding
 * key that only that client learns. A forwarded step arrives from another server, so it carries a
 * tag for server i of the route (i ≥ 1),
 *
 *   HMAC-SHA256(key_i, "efed.forward.v2" ‖ session id ‖ u64 step ‖ u32 position ‖ u32 rows ‖
 *               u8 output encoding ‖ previous hop's address (20 bytes) ‖ encodeRoute(hops after i))
 *
 * where the previous hop's address is the receipt-signing address (ServerInfo.server) of server
 * i-1, the one the client expects to deliver the step. The client cannot bind server i's input in
 * the tag (it never sees it: server i-1 computes it), so the input is covered in two parts:
 *
 * 1. Only server i-1 may deliver the step. Server-to-server links are authenticated once, at
 *    connect (protocol/peerAuth.ts): the accepting server's ServerInfo carries a fresh challenge;
 *    the connecting server answers with PeerHello, signing (challenge, accepting address, its own
 *    address, an ephemeral X25519 key) with its receipt key; the accepting server answers
 *    PeerWelcome with its own ephemeral key, signed by its receipt key. Both derive a link key
 *    from the X25519 secret (HKDF over the transcript). The accepting server takes a tagged step
 *    only on a link authenticated as the address the tag names.
 * 2. Nobody between them can change the input. Every frame the connecting server sends after
 *    PeerWelcome carries a MAC trailer, HMAC-SHA256(link key, "efed.link.frame.v1" ‖ u64 frame
 *    number ‖ frame), so a relay on a plain ws:// path can neither alter, reorder, drop nor replay
 *    a frame without the link failing. The man in the middle cannot learn the link key: the
 *    connecting server's ephemeral key is signed, and only the two servers hold the private halves.
 *
 * Server 0 gets the step from the client itself, on the connection that opened the session: over
 * plain ws:// a man in the middle there could change it, which is what wss:// is for.
 *
 * What server i-1 itself sends is what it signs a receipt for (its output hash is server i's input
 * hash), so a wrong input is the signer's fraud, caught by the client chaining the receipts' hashes
 * and by verifiers. A tag seen by anyone (a later hop, a relay) is useless elsewhere: it is bound to
 * its step, position, size, route and delivering server, and each step index is accepted once.
 */
const TAG_DOMAIN = new TextEncoder().encode("efed.forward.v2");

export interface TaggedStep {
  sessionId: string;
  step: bigint;
  position: number;
  rows: number;
  outputEncoding: ActivationEncoding;
  /** Receipt-signing address of the server that delivers this step (the route's previous server). */
  previous: string;
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
  const fields = Buffer.alloc(32 + 8 + 4 + 4 + 1 + 20);
  Buffer.from(getBytes(s.sessionId)).copy(fields, 0);
  fields.writeBigUInt64LE(s.step, 32);
  fields.writeUInt32LE(s.position, 40);
  fields.writeUInt32LE(s.rows, 44);
  fields.writeUInt8(ENCODING_CODE[s.outputEncoding], 48);
  Buffer.from(getBytes(getAddress(s.previous))).copy(fields, 49);
  return createHmac("sha256", getBytes(key)).update(TAG_DOMAIN).update(fields).update(encodeRoute(s.route)).digest();
}

/** A server of a forwarded route after the first: where it is, the client's session there, and who feeds it. */
export interface RouteHop {
  url: string;
  sessionId: string;
  forwardKey: string;
  /** Its receipt-signing address (ServerInfo.server): the server after it accepts the step only from it. */
  server: string;
}

/**
 * Builds the route of a forwarded step: for servers 1..k-1 of a route (server 0, whose address is
 * `firstServer`, gets the step directly), each hop with its tag. Tags are made from the last hop
 * back, since each one binds the hops after it.
 */
export function buildRoute(
  firstServer: string,
  hops: readonly RouteHop[],
  step: { step: bigint; position: number; rows: number; outputEncoding: ActivationEncoding },
): Hop[] {
  const route: Hop[] = [];
  for (let i = hops.length - 1; i >= 0; i--) {
    const h = hops[i]!;
    const previous = i === 0 ? firstServer : hops[i - 1]!.server;
    const tag = forwardTag(h.forwardKey, { ...step, sessionId: h.sessionId, previous, route });
    route.unshift({ url: h.url, sessionId: h.sessionId, tag });
  }
  return route;
}

/** Longest hop URL accepted: a scheme, a host name and a port fit easily. */
export const MAX_HOP_URL_CHARS = 256;

/** A hop URL's parts: `ws:` or `wss:`, the host as the URL parser normalises it (IPv6 in brackets), the port. */
export interface HopAddress {
  scheme: "ws:" | "wss:";
  host: string;
  port: number;
}

/**
 * Checks that a hop URL names a shard server and nothing else: `ws://HOST:PORT` or
 * `wss://HOST:PORT` with an optional trailing slash, no credentials, path, query or fragment. A
 * server connects to these on a client's word, so anything that would let a client make it send
 * other requests is refused.
 */
export function parseHopUrl(url: string): HopAddress {
  const bad = (why: string): WireError => new WireError(ErrorCode.BadRoute, `hop URL "${url.slice(0, 80)}" ${why}`);
  if (url.length > MAX_HOP_URL_CHARS) throw bad(`is ${url.length} characters, over ${MAX_HOP_URL_CHARS}`);
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw bad("is not a URL");
  }
  if (u.protocol !== "ws:" && u.protocol !== "wss:") throw bad(`has scheme ${u.protocol}, expected ws: or wss:`);
  if (u.username !== "" || u.password !== "") throw bad("carries credentials");
  if ((u.pathname !== "/" && u.pathname !== "") || u.search !== "" || u.hash !== "") throw bad("has a path, query or fragment; expected ws://HOST:PORT");
  // the URL parser drops a default port
  const port = u.port !== "" ? Number(u.port) : u.protocol === "wss:" ? 443 : 80;
  if (port === 0) throw bad("has port 0");
  return { scheme: u.protocol, host: u.hostname, port };
}

/** The one spelling of a hop URL: scheme, normalised host and explicit port (pool keys, registry matches). */
export function canonicalHopUrl(url: string): string {
  const { scheme, host, port } = parseHopUrl(url);
  return `${scheme}//${host}:${port}`;
}
