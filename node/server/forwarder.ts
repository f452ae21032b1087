import type { Logger } from "pino";
import { InvalidArgumentError } from "../../protocol/errors.js";
import { canonicalHopUrl, parseHopUrl } from "../../protocol/forwarding.js";
import { DEFAULT_LIMITS, ErrorCode, WireError, type Step } from "../../protocol/wire.js";
import { resolvePublicAddress } from "./addressPolicy.js";
import { PeerLink, type PeerExpectation, type PeerIdentity } from "./peerLink.js";

/**
 * What an operator allows forwarded steps to do. A client names the next hop's URL, so forwarding
 * makes this server open connections on a client's word: only to `ws://` / `wss://HOST:PORT` URLs
 * (no path, so nothing but a WebSocket upgrade of "/" is ever sent), only to allowed hosts whose
 * every resolved address is public (unless the operator allows private ones), only to endpoints
 * the `endpointAllowed` hook accepts, at most `maxPeers` at once, and every wait bounded.
 */
export interface ForwardingOptions {
  /**
   * Host names or IP addresses (as in the URL) a next hop may have, or "*" for any host. Default
   * "*": a public network's peers are not known in advance (the address and endpoint checks still apply).
   */
  allowedHosts: readonly string[] | "*";
  /**
   * Forward to loopback, private, link-local, CGNAT and other non-public addresses too. Default
   * false: a client could otherwise make this server reach services on its own machine or network.
   * Tests and private clusters set it.
   */
  allowPrivateAddresses: boolean;
  /**
   * Asked before connecting to a next hop whose first layer is `firstLayer`; false refuses it. A
   * server with --rpc accepts only endpoints registered on chain for that layer range
   * (node/chain/registeredEndpoints.ts). Default: none (every endpoint the other checks allow).
   */
  endpointAllowed?: ((url: string, firstLayer: number) => Promise<boolean>) | undefined;
  /**
   * Milliseconds to connect to a next hop, read its server info and authenticate. Also the time
   * every failed connect takes: each failure (refused, unreachable, timed out, not an eFed server,
   * refused by policy) is answered with one message after this long, so forwarding tells a client
   * nothing about what is at an address. Default 5000.
   */
  connectTimeoutMs: number;
  /**
   * Milliseconds the next hop may take to answer a forwarded step, plus HOP_SLACK_MS per hop left
   * after it (so the server nearest a hung hop times out first), capped by the route limit: at most
   * hopTimeoutMs + 16 × 250 ms whatever route a client sends. Default 10000.
   */
  hopTimeoutMs: number;
  /** Next-hop connections open (or being opened) at once; idle ones are closed to make room. Default 64. */
  maxPeers: number;
  /** Milliseconds between pings on each next-hop link. Default 2000. */
  heartbeatIntervalMs: number;
  /** Milliseconds a next hop may stay silent (no frame, no pong) before its link is dropped and its steps fail. Default 6000. */
  heartbeatTimeoutMs: number;
  /** PEM certificate(s) to trust for wss:// next hops besides the system's. Default: none. */
  ca?: string | undefined;
}

export const DEFAULT_FORWARDING: ForwardingOptions = {
  allowedHosts: "*",
  allowPrivateAddresses: false,
  connectTimeoutMs: 5_000,
  hopTimeoutMs: 10_000,
  maxPeers: 64,
  heartbeatIntervalMs: 2_000,
  heartbeatTimeoutMs: 6_000,
};

/** Extra wait per hop left after the next one, so that nearer servers time out first. */
export const HOP_SLACK_MS = 250;

/** How long a forwarded step with `hopsLeft` hops after the next one may take: fixed cap hopTimeoutMs + 16 × HOP_SLACK_MS. */
export function hopWaitMs(hopTimeoutMs: number, hopsLeft: number): number {
  return hopTimeoutMs + HOP_SLACK_MS * Math.min(hopsLeft, DEFAULT_LIMITS.maxRouteHops);
}

export function validateForwarding(o: ForwardingOptions): ForwardingOptions {
  for (const name of ["connectTimeoutMs", "hopTimeoutMs", "maxPeers", "heartbeatIntervalMs", "heartbeatTimeoutMs"] as const) {
    const v = o[name];
    if (!Number.isSafeInteger(v) || v < 1) throw new InvalidArgumentError(`forwarding option ${name} must be a positive integer, got ${v}`);
  }
  if (o.heartbeatTimeoutMs <= o.heartbeatIntervalMs) {
    throw new InvalidArgumentError(`forwarding option heartbeatTimeoutMs (${o.heartbeatTimeoutMs}) must exceed heartbeatIntervalMs (${o.heartbeatIntervalMs})`);
  }
  if (o.allowedHosts !== "*") for (const h of o.allowedHosts) normaliseHost(h);
  return o;
}

/** A host as the URL parser writes it ("LOCALHOST" → "localhost", IPv6 in brackets), or an InvalidArgumentError. */
function normaliseHost(h: string): string {
  let parsed: URL | undefined;
  try {
    parsed = new URL(`ws://${h}:1`);
  } catch {
    parsed = undefined;
  }
  if (h.trim() === "" || parsed === undefined || parsed.username !== "" || parsed.host !== `${parsed.hostname}:1` || parsed.pathname !== "/") {
    throw new InvalidArgumentError(`forwarding option allowedHosts: "${h}" is not a host name or address (IPv6 in brackets, e.g. [::1])`);
  }
  return parsed.hostname;
}

/** A pooled connection: connecting, then connected. */
interface Entry {
  opening: Promise<PeerLink>;
  link?: PeerLink;
}

/** A pool of authenticated connections to next hops, one per peer URL, shared by every session that forwards there. */
export class Forwarder {
  private readonly links = new Map<string, Entry>();
  private readonly allowed: ReadonlySet<string> | "*";
  private readonly o: ForwardingOptions;
  private closed = false;

  constructor(
    options: ForwardingOptions,
    private readonly expect: PeerExpectation,
    private readonly me: PeerIdentity,
    private readonly logger: Logger,
  ) {
    this.o = validateForwarding(options);
    // normalised as the URL parser writes host names, so "LOCALHOST" in a route matches "localhost"
    this.allowed = options.allowedHosts === "*" ? "*" : new Set(options.allowedHosts.map(normaliseHost));
  }

  /**
   * Refuses a malformed hop URL or a host name the operator does not list; a canonical pool key
   * otherwise. Cheap and network-free (it reveals only the operator's list): run before the engine.
   */
  check(url: string): string {
    const { host } = parseHopUrl(url);
    if (this.allowed !== "*" && !this.allowed.has(host)) {
      throw new WireError(ErrorCode.BadRoute, `next hop host ${host} is not one this server forwards to`);
    }
    return canonicalHopUrl(url);
  }

  /** The pooled connection to `key` (from `check`), opened if needed. Never throws: a refusal is a rejected promise. */
  link(key: string): Promise<PeerLink> {
    const existing = this.links.get(key);
    if (existing !== undefined) return existing.opening;
    if (this.closed) return Promise.reject(new WireError(ErrorCode.ShuttingDown, "server is shutting down"));
    try {
      this.makeRoom();
    } catch (err) {
      return Promise.reject(err as Error);
    }
    const entry: Entry = { opening: this.open(key) };
    this.links.set(key, entry);
    entry.opening.then(
      (l) => {
        entry.link = l;
        if (this.closed) l.close();
      },
      () => {
        if (this.links.get(key) === entry) this.links.delete(key); // a failed connect is not kept: the next step retries
      },
    );
    return entry.opening;
  }

  /**
   * Sends `step` to the next hop and waits until it and the hops after it are done, at most
   * hopTimeoutMs + HOP_SLACK_MS per hop left after it (the route length is bounded at the edge, and
   * clamped here too, so the wait has a fixed cap). On an open link the step is sent before this
   * returns: what the caller does next (sign and store the receipt) must not hold up the next hop.
   */
  forward(key: string, step: Omit<Step, "type" | "requestId">): Promise<void> {
    const waitMs = hopWaitMs(this.o.hopTimeoutMs, step.route.length);
    const open = this.links.get(key)?.link;
    if (open !== undefined) return open.forward(step, waitMs);
    return this.link(key).then((link) => link.forward(step, waitMs));
  }

  /** Whether a connection to `key` is open or opening (a step to it costs no new connection). */
  has(key: string): boolean {
    return this.links.has(key);
  }

  close(): void {
    this.closed = true;
    for (const e of this.links.values()) e.link?.close();
    this.links.clear();
  }

  get size(): number {
    return this.links.size;
  }

  /**
   * Checks policy, resolves, connects to the checked address and authenticates. Every failure but a
   * peer serving the wrong layers (an eFed server, so nothing is learnt) comes out as one message,
   * no sooner than connectTimeoutMs after the attempt began: forwarding is no port scanner.
   */
  private async open(key: string): Promise<PeerLink> {
    const started = Date.now();
    try {
      if (this.o.endpointAllowed !== undefined && !(await this.o.endpointAllowed(key, this.expect.firstLayer))) {
        throw new Error(`${key} is not an endpoint allowed for layer ${this.expect.firstLayer}`);
      }
      const address = await resolvePublicAddress(parseHopUrl(key).host, this.o.allowPrivateAddresses);
      const options = { ...this.o, address };
      return await PeerLink.connect(key, this.expect, this.me, options, (l) => this.forget(key, l));
    } catch (err) {
      if (err instanceof WireError && err.wireCode === ErrorCode.BadRoute) throw err;
      this.logger.debug({ peer: key, err: (err as Error).message }, "next hop refused or unreachable");
      const waitMs = started + this.o.connectTimeoutMs - Date.now();
      if (waitMs > 0) await new Promise((resolve) => setTimeout(resolve, waitMs).unref());
      throw new WireError(ErrorCode.Upstream, `next hop ${key} is unreachable, is not an eFed server, or is not one this server forwards to`, 1);
    }
  }

  private forget(key: string, link: PeerLink): void {
    if (this.links.get(key)?.link === link) this.links.delete(key);
  }

  /** At the limit, closes the least recently used idle link; with none idle, refuses. */
  private makeRoom(): void {
    if (this.links.size < this.o.maxPeers) return;
    let victim: { key: string; link: PeerLink } | undefined;
    for (const [key, { link }] of this.links) {
      if (link !== undefined && link.busy === 0 && (victim === undefined || link.lastUsedMs < victim.link.lastUsedMs)) victim = { key, link };
    }
    if (victim === undefined) {
      throw new WireError(ErrorCode.Overloaded, `server holds its maximum of ${this.o.maxPeers} next-hop connections, all busy`);
    }
    this.logger.debug({ peer: victim.key }, "closing idle next-hop connection to make room");
    this.links.delete(victim.key);
    victim.link.close();
  }
}
