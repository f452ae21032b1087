import type { Logger } from "pino";
import { InvalidArgumentError } from "../../protocol/errors.js";
import { parseHopUrl } from "../../protocol/forwarding.js";
import { ErrorCode, WireError, type Step } from "../../protocol/wire.js";
import { PeerLink, type PeerExpectation } from "./peerLink.js";

/**
 * What an operator allows forwarded steps to do. A client names the next hop's URL, so forwarding
 * makes this server open connections on a client's word: only to `ws://HOST:PORT` URLs (no path,
 * so nothing but a WebSocket upgrade of "/" is ever sent), only to allowed hosts, at most
 * `maxPeers` at once, and every wait bounded.
 */
export interface ForwardingOptions {
  /**
   * Host names or IP addresses (as in the URL) a next hop may have, or "*" for any host. Default
   * "*": a public network's peers are not known in advance. On a machine that can reach private
   * services, list the peers' hosts (and later: the endpoints registered on chain).
   */
  allowedHosts: readonly string[] | "*";
  /** Milliseconds to connect to a next hop and read its server info. Default 5000. */
  connectTimeoutMs: number;
  /** Milliseconds each hop after this server may take to finish a forwarded step. Default 15000. */
  hopTimeoutMs: number;
  /** Next-hop connections open at once; idle ones are closed to make room. Default 64. */
  maxPeers: number;
}

export const DEFAULT_FORWARDING: ForwardingOptions = { allowedHosts: "*", connectTimeoutMs: 5_000, hopTimeoutMs: 15_000, maxPeers: 64 };

export function validateForwarding(o: ForwardingOptions): ForwardingOptions {
  for (const name of ["connectTimeoutMs", "hopTimeoutMs", "maxPeers"] as const) {
    const v = o[name];
    if (!Number.isSafeInteger(v) || v < 1) throw new InvalidArgumentError(`forwarding option ${name} must be a positive integer, got ${v}`);
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

/** A pool of connections to next hops, one per peer URL, shared by every session that forwards there. */
export class Forwarder {
  private readonly links = new Map<string, Entry>();
  private readonly allowed: ReadonlySet<string> | "*";

  constructor(
    private readonly o: ForwardingOptions,
    private readonly expect: PeerExpectation,
    private readonly logger: Logger,
  ) {
    validateForwarding(o);
    // normalised as the URL parser writes host names, so "LOCALHOST" in a route matches "localhost"
    this.allowed = o.allowedHosts === "*" ? "*" : new Set(o.allowedHosts.map(normaliseHost));
  }

  /** Refuses a next hop the operator does not allow; a canonical pool key otherwise. Cheap: run before the engine. */
  check(url: string): string {
    const { host, port } = parseHopUrl(url);
    if (this.allowed !== "*" && !this.allowed.has(host)) {
      throw new WireError(ErrorCode.BadRoute, `next hop host ${host} is not one this server forwards to`);
    }
    return `ws://${host}:${port}`;
  }

  /** The pooled connection to `key` (from `check`), opened if needed. Never throws: a refusal is a rejected promise. */
  link(key: string): Promise<PeerLink> {
    const existing = this.links.get(key);
    if (existing !== undefined) return existing.opening;
    try {
      this.makeRoom();
    } catch (err) {
      return Promise.reject(err as Error);
    }
    const entry: Entry = { opening: PeerLink.connect(key, this.expect, this.o.connectTimeoutMs, (l) => this.forget(key, l)) };
    this.links.set(key, entry);
    entry.opening.then(
      (l) => (entry.link = l),
      () => {
        if (this.links.get(key) === entry) this.links.delete(key); // a failed connect is not kept: the next step retries
      },
    );
    return entry.opening;
  }

  /**
   * Sends `step` to the next hop and waits until it and the hops after it are done. The wait grows
   * with the hops left, so the server nearest a failure times out first and names it.
   */
  async forward(key: string, step: Omit<Step, "type" | "requestId">): Promise<void> {
    const link = await this.link(key);
    await link.forward(step, this.o.hopTimeoutMs * (step.route.length + 1));
  }

  /** Whether a connection to `key` is open or opening (a step to it costs no new connection). */
  has(key: string): boolean {
    return this.links.has(key);
  }

  heartbeat(): void {
    for (const e of this.links.values()) e.link?.heartbeat();
  }

  close(): void {
    for (const e of this.links.values()) e.opening.then((l) => l.close(), () => undefined);
    this.links.clear();
  }

  get size(): number {
    return this.links.size;
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
