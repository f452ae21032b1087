import { InvalidArgumentError } from "../protocol/errors.js";

export interface BanOptions {
  /** Milliseconds a server is banned after its first failure (default 60,000). */
  firstBanMs?: number;
  /** Milliseconds a ban grows to at most: each repeat failure doubles it (default 3,600,000). */
  maxBanMs?: number;
  /** The clock, for tests (default Date.now). */
  now?: () => number;
}

/**
 * Servers a client keeps off its routes for a while after they failed. A server that fails again
 * after its ban is banned twice as long, up to `maxBanMs`; the count is kept for the client's life.
 */
export class BanList {
  private readonly firstBanMs: number;
  private readonly maxBanMs: number;
  private readonly now: () => number;
  private readonly bans = new Map<string, { untilMs: number; failures: number }>();

  constructor(o: BanOptions = {}) {
    this.firstBanMs = o.firstBanMs ?? 60_000;
    this.maxBanMs = o.maxBanMs ?? 3_600_000;
    this.now = o.now ?? Date.now;
    for (const [name, v] of [["firstBanMs", this.firstBanMs], ["maxBanMs", this.maxBanMs]] as const) {
      if (!Number.isSafeInteger(v) || v < 1) throw new InvalidArgumentError(`ban option ${name} must be a positive integer, got ${v}`);
    }
    if (this.maxBanMs < this.firstBanMs) throw new InvalidArgumentError(`maxBanMs ${this.maxBanMs} is below firstBanMs ${this.firstBanMs}`);
  }

  /** Bans `url` (again); returns the milliseconds of this ban. */
  ban(url: string): number {
    const failures = (this.bans.get(url)?.failures ?? 0) + 1;
    const ms = Math.min(this.maxBanMs, this.firstBanMs * 2 ** Math.min(failures - 1, 40));
    this.bans.set(url, { untilMs: this.now() + ms, failures });
    return ms;
  }

  isBanned(url: string): boolean {
    return (this.bans.get(url)?.untilMs ?? -Infinity) > this.now();
  }

  /** The servers banned now. */
  banned(): Set<string> {
    return new Set([...this.bans.keys()].filter((u) => this.isBanned(u)));
  }
}
