import { hexlify, randomBytes } from "ethers";
import type { KvCache } from "../../engine/runtime/shard.js";
import { ErrorCode, WireError } from "../../protocol/wire.js";
import type { ServerLimits } from "./limits.js";

/** Who opened a session: a connection, known by its remote address (fairness and per-address limits count by it). */
export interface SessionOwner {
  readonly address: string;
}

/** One client sequence held by this server: its KV cache and bookkeeping. */
export interface Session<Owner extends SessionOwner = SessionOwner> {
  id: string;
  /** The connection that opened it: it may step or close it, and it receives the receipts. */
  owner: Owner;
  /** 32-byte secret given to the owner at open: forwarded steps and fetches of its steps are authorised with it. */
  forwardKey: string;
  maxLength: number;
  cache: KvCache;
  /** Next step index expected. */
  nextStep: bigint;
  /** Tokens of the step now in flight (0: none). A session runs one step at a time. */
  inFlightTokens: number;
  /** Forwarded steps done here whose route has not answered yet. */
  parked: number;
  lastUsedMs: number;
}

/**
 * The sessions of one server with the operator's limits applied: count (in all, per connection, per
 * remote address), length, memory budget (counting steps in flight) and idle timeout. A session has
 * at most one step in flight. Refusing or evicting one session never touches another.
 */
export class SessionTable<Owner extends SessionOwner = SessionOwner> {
  private readonly sessions = new Map<string, Session<Owner>>();
  private readonly perOwner = new Map<Owner, number>();
  private readonly perAddress = new Map<string, number>();
  /** Called with every session that ends, however it ends (payments drop its channel binding, the engine frees its KV slot). */
  onRemove: ((id: string, cache: KvCache) => void) | undefined;

  constructor(
    private readonly limits: ServerLimits,
    /** KV cache bytes one token costs in this shard (all its layers, keys and values). */
    private readonly kvBytesPerToken: number,
  ) {}

  get size(): number {
    return this.sessions.size;
  }

  /** Sessions `owner` holds. */
  countOf(owner: Owner): number {
    return this.perOwner.get(owner) ?? 0;
  }

  /** Bytes the caches of all sessions hold now, plus what the steps in flight will add. */
  get kvBytes(): number {
    let tokens = 0;
    for (const s of this.sessions.values()) tokens += s.cache.length + s.inFlightTokens;
    return tokens * this.kvBytesPerToken;
  }

  open(id: string, owner: Owner, maxLength: number, cache: KvCache, nowMs: number): Session<Owner> {
    if (this.sessions.has(id)) throw new WireError(ErrorCode.SessionExists, `session ${id} is already open`);
    if (this.sessions.size >= this.limits.maxSessions) {
      throw new WireError(ErrorCode.TooManySessions, `server holds its maximum of ${this.limits.maxSessions} sessions`);
    }
    if (this.countOf(owner) >= this.limits.maxSessionsPerConnection) {
      throw new WireError(ErrorCode.TooManySessions, `this connection holds its maximum of ${this.limits.maxSessionsPerConnection} sessions`);
    }
    if ((this.perAddress.get(owner.address) ?? 0) >= this.limits.maxSessionsPerAddress) {
      throw new WireError(ErrorCode.TooManySessions, `address ${owner.address} holds its maximum of ${this.limits.maxSessionsPerAddress} sessions`);
    }
    if (maxLength < 1 || maxLength > this.limits.maxSessionTokens) {
      throw new WireError(ErrorCode.SessionTooLong, `session length ${maxLength} is outside 1..${this.limits.maxSessionTokens}`);
    }
    const forwardKey = hexlify(randomBytes(32));
    const session: Session<Owner> = { id, owner, forwardKey, maxLength, cache, nextStep: 0n, inFlightTokens: 0, parked: 0, lastUsedMs: nowMs };
    this.sessions.set(id, session);
    this.perOwner.set(owner, this.countOf(owner) + 1);
    this.perAddress.set(owner.address, (this.perAddress.get(owner.address) ?? 0) + 1);
    return session;
  }

  /** The session `id` if `owner` opened it. */
  get(id: string, owner: Owner): Session<Owner> {
    const s = this.sessions.get(id);
    if (s === undefined || s.owner !== owner) throw new WireError(ErrorCode.UnknownSession, `session ${id} is not open on this connection`);
    return s;
  }

  /** The session `id`, whoever opened it: for forwarded steps, whose tag the caller must then check. */
  lookup(id: string): Session<Owner> {
    const s = this.sessions.get(id);
    if (s === undefined) throw new WireError(ErrorCode.UnknownSession, `session ${id} is not open on this server`);
    return s;
  }

  /**
   * Admits a step of `tokens` tokens: refused when the session already has one in flight, or when
   * they would not fit the session's length or the server's memory budget. On success the tokens
   * count as in flight until `finish`.
   */
  admit(s: Session<Owner>, tokens: number): void {
    if (s.inFlightTokens > 0) {
      throw new WireError(ErrorCode.Busy, `session ${s.id} already has a step in flight: send one step at a time`);
    }
    if (s.cache.length + tokens > s.maxLength) {
      throw new WireError(
        ErrorCode.SessionTooLong,
        `session ${s.id} would reach ${s.cache.length + tokens} tokens, over its maximum of ${s.maxLength}`,
      );
    }
    const after = this.kvBytes + tokens * this.kvBytesPerToken;
    if (after > this.limits.memoryBudgetBytes) {
      throw new WireError(ErrorCode.MemoryBudget, `KV caches would take ${after} bytes, over the budget of ${this.limits.memoryBudgetBytes}`);
    }
    s.inFlightTokens = tokens;
  }

  /** The step admitted last is done (its tokens are in the cache now, or it failed and left the cache unchanged). */
  finish(s: Session<Owner>, nowMs: number): void {
    s.inFlightTokens = 0;
    s.lastUsedMs = nowMs;
  }

  close(id: string, owner: Owner): void {
    this.remove(this.get(id, owner));
  }

  /** Drops every session of a connection that went away. */
  dropOwner(owner: Owner): number {
    let n = 0;
    for (const s of this.sessions.values()) {
      if (s.owner === owner) {
        this.remove(s);
        n++;
      }
    }
    return n;
  }

  /** Closes sessions idle for longer than the timeout (never one with a step in flight); returns their ids. */
  evictIdle(nowMs: number): string[] {
    const evicted: string[] = [];
    for (const s of this.sessions.values()) {
      if (s.inFlightTokens === 0 && nowMs - s.lastUsedMs > this.limits.idleTimeoutMs) {
        this.remove(s);
        evicted.push(s.id);
      }
    }
    return evicted;
  }

  private remove(s: Session<Owner>): void {
    if (!this.sessions.delete(s.id)) return;
    this.onRemove?.(s.id, s.cache);
    const owned = this.countOf(s.owner) - 1;
    if (owned === 0) this.perOwner.delete(s.owner);
    else this.perOwner.set(s.owner, owned);
    const fromAddress = (this.perAddress.get(s.owner.address) ?? 1) - 1;
    if (fromAddress === 0) this.perAddress.delete(s.owner.address);
    else this.perAddress.set(s.owner.address, fromAddress);
  }
}
