import { hexlify, randomBytes } from "ethers";
import type { KvCache } from "../../engine/runtime/shard.js";
import { ErrorCode, WireError } from "../../protocol/wire.js";
import type { ServerLimits } from "./limits.js";

/** One client sequence held by this server: its KV cache and bookkeeping. */
export interface Session<Owner extends object = object> {
  id: string;
  /** The connection that opened it: it may step or close it, and it receives the receipts. */
  owner: Owner;
  /** 32-byte secret given to the owner at open: steps forwarded by other servers carry a tag made with it. */
  forwardKey: string;
  maxLength: number;
  cache: KvCache;
  /** Next step index expected. */
  nextStep: bigint;
  lastUsedMs: number;
}

/**
 * The sessions of one server with the operator's limits applied: count, length, memory budget
 * and idle timeout. Refusing or evicting one session never touches another.
 */
export class SessionTable<Owner extends object = object> {
  private readonly sessions = new Map<string, Session<Owner>>();

  constructor(
    private readonly limits: ServerLimits,
    /** KV cache bytes one token costs in this shard (all its layers, keys and values). */
    private readonly kvBytesPerToken: number,
  ) {}

  get size(): number {
    return this.sessions.size;
  }

  /** Bytes the caches of all sessions hold now. */
  get kvBytes(): number {
    let tokens = 0;
    for (const s of this.sessions.values()) tokens += s.cache.length;
    return tokens * this.kvBytesPerToken;
  }

  open(id: string, owner: Owner, maxLength: number, cache: KvCache, nowMs: number): Session<Owner> {
    if (this.sessions.has(id)) throw new WireError(ErrorCode.SessionExists, `session ${id} is already open`);
    if (this.sessions.size >= this.limits.maxSessions) {
      throw new WireError(ErrorCode.TooManySessions, `server holds its maximum of ${this.limits.maxSessions} sessions`);
    }
    if (maxLength < 1 || maxLength > this.limits.maxSessionTokens) {
      throw new WireError(ErrorCode.SessionTooLong, `session length ${maxLength} is outside 1..${this.limits.maxSessionTokens}`);
    }
    const forwardKey = hexlify(randomBytes(32));
    const session: Session<Owner> = { id, owner, forwardKey, maxLength, cache, nextStep: 0n, lastUsedMs: nowMs };
    this.sessions.set(id, session);
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

  /** Checks that `tokens` more fit the session's length and the server's memory budget. */
  admit(s: Session<Owner>, tokens: number): void {
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
  }

  close(id: string, owner: Owner): void {
    this.get(id, owner);
    this.sessions.delete(id);
  }

  /** Drops every session of a connection that went away. */
  dropOwner(owner: Owner): number {
    let n = 0;
    for (const [id, s] of this.sessions) {
      if (s.owner === owner) {
        this.sessions.delete(id);
        n++;
      }
    }
    return n;
  }

  /** Closes sessions idle for longer than the timeout; returns their ids. */
  evictIdle(nowMs: number): string[] {
    const evicted: string[] = [];
    for (const [id, s] of this.sessions) {
      if (nowMs - s.lastUsedMs > this.limits.idleTimeoutMs) {
        this.sessions.delete(id);
        evicted.push(id);
      }
    }
    return evicted;
  }
}
