import { measureServers, type MeasureTarget } from "../route/measure.js";
import { buildSnapshot, healthKey, sampleOf, type Health } from "./buildSnapshot.js";
import type { ChainRead, ChainWatch } from "./chainWatch.js";
import type { GatewayCounters } from "./gatewayCounters.js";
import type { DashboardEvent, Sample, Snapshot } from "./snapshot.js";

export interface DashboardOptions {
  /** Milliseconds between polls of the chain (default 2,000). */
  pollIntervalMs?: number;
  /** Milliseconds between measurements of the registered servers (default 15,000; 0: never measure). */
  measureIntervalMs?: number;
  /** Milliseconds one measurement of all servers may take (default 3,000). */
  measureBudgetMs?: number;
  /** Plot points kept (default 600: 20 minutes at the default poll interval). */
  historySamples?: number;
  /** Page subscribers at once at most (default 32); more are refused. */
  maxSubscribers?: number;
  /** Prefix of transaction links (default "tx/": the dashboard's own view of a transaction). */
  txUrl?: string;
  /** The gateway's counters, when the dashboard runs in (or watches) a gateway. */
  counters?: GatewayCounters;
}

/**
 * The live state of the network for the page: polls the chain (ChainWatch), measures the servers
 * itself now and then (client/route/measure.ts: reachable, and what the chain says they are), turns
 * the gateway's counters into tokens/s, and pushes each snapshot and plot point to subscribers.
 * `start` begins the loop; `tick` runs one poll (tests drive it directly).
 */
export class Dashboard {
  private latest: Snapshot | undefined;
  private lastRead: ChainRead | undefined;
  private readonly samples: Sample[] = [];
  private readonly listeners = new Set<(e: DashboardEvent) => void>();
  private readonly health = new Map<string, Health>();
  private previousTokens: { at: number; tokens: Map<string, number> } | undefined;
  private timer: NodeJS.Timeout | undefined;
  private ticking: Promise<void> | undefined;
  private measuring: Promise<void> | undefined;
  private lastMeasuredAt = -Infinity;
  private closed = false;
  private readonly o: Required<Omit<DashboardOptions, "counters">> & { counters?: GatewayCounters };

  constructor(
    readonly watch: ChainWatch,
    options: DashboardOptions = {},
  ) {
    this.o = {
      pollIntervalMs: options.pollIntervalMs ?? 2_000,
      measureIntervalMs: options.measureIntervalMs ?? 15_000,
      measureBudgetMs: options.measureBudgetMs ?? 3_000,
      historySamples: options.historySamples ?? 600,
      maxSubscribers: options.maxSubscribers ?? 32,
      txUrl: options.txUrl ?? "tx/",
      ...(options.counters === undefined ? {} : { counters: options.counters }),
    };
    for (const [name, v, min] of [
      ["pollIntervalMs", this.o.pollIntervalMs, 1],
      ["measureIntervalMs", this.o.measureIntervalMs, 0],
      ["measureBudgetMs", this.o.measureBudgetMs, 1],
      ["historySamples", this.o.historySamples, 1],
      ["maxSubscribers", this.o.maxSubscribers, 1],
    ] as const) {
      if (!Number.isSafeInteger(v) || v < min) throw new RangeError(`dashboard option ${name} must be an integer >= ${min}, got ${v}`);
    }
  }

  /** Starts polling: a first tick now, then one every pollIntervalMs (never two at once). */
  start(): void {
    const loop = async (): Promise<void> => {
      await this.tick();
      if (!this.closed) this.timer = setTimeout(() => void loop(), this.o.pollIntervalMs);
    };
    void loop();
  }

  /** One poll: reads the chain, starts a measurement when one is due, publishes a snapshot and a plot point. */
  tick(): Promise<void> {
    this.ticking ??= this.pollOnce().finally(() => (this.ticking = undefined));
    return this.ticking;
  }

  snapshot(): Snapshot | undefined {
    return this.latest;
  }

  history(): readonly Sample[] {
    return this.samples;
  }

  /**
   * Calls `listener` with the history, the latest snapshot, then every new snapshot and sample.
   * Returns the unsubscribe function, or undefined when maxSubscribers are already listening.
   */
  subscribe(listener: (e: DashboardEvent) => void): (() => void) | undefined {
    if (this.listeners.size >= this.o.maxSubscribers) return undefined;
    this.listeners.add(listener);
    listener({ type: "history", samples: [...this.samples] });
    if (this.latest !== undefined) listener({ type: "snapshot", snapshot: this.latest });
    return () => this.listeners.delete(listener);
  }

  /** Measures every registered server now (also done in the background every measureIntervalMs). */
  async measure(): Promise<void> {
    this.measuring ??= this.measureNow().finally(() => (this.measuring = undefined));
    await this.measuring;
  }

  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.timer);
    this.listeners.clear();
    await this.ticking;
    await this.measuring;
    this.watch.close();
  }

  private async pollOnce(): Promise<void> {
    let error: string | undefined;
    try {
      this.lastRead = await this.watch.poll();
    } catch (err) {
      error = err instanceof Error ? err.message : String(err); // shown on the page; the next poll tries again
    }
    if (this.closed || this.lastRead === undefined) return;
    const at = Date.now();
    if (this.o.measureIntervalMs > 0 && at - this.lastMeasuredAt >= this.o.measureIntervalMs) {
      this.lastMeasuredAt = at;
      void this.measure();
    }
    const counters = this.o.counters;
    this.latest = buildSnapshot({
      read: this.lastRead,
      log: this.watch.log,
      health: this.health,
      tokensPerS: this.rates(at),
      ...(counters === undefined ? {} : { gateway: { sessions: counters.sessions, tokens: counters.totalTokens } }),
      txUrl: this.o.txUrl,
      at,
      ...(error === undefined ? {} : { error }),
    });
    const sample = sampleOf(this.latest);
    this.samples.push(sample);
    if (this.samples.length > this.o.historySamples) this.samples.shift();
    this.publish({ type: "snapshot", snapshot: this.latest });
    this.publish({ type: "sample", sample });
  }

  /** Tokens per second of each server since the previous poll, from the gateway's counters. */
  private rates(at: number): Map<string, number> {
    const rates = new Map<string, number>();
    const counters = this.o.counters;
    if (counters === undefined) return rates;
    const now = new Map(counters.tokens());
    const before = this.previousTokens;
    if (before !== undefined && at > before.at) {
      const seconds = (at - before.at) / 1000;
      for (const [server, tokens] of now) rates.set(server, roundTenth((tokens - (before.tokens.get(server) ?? 0)) / seconds));
    }
    this.previousTokens = { at, tokens: now };
    return rates;
  }

  private async measureNow(): Promise<void> {
    const targets = new Map<string, MeasureTarget>();
    for (const v of this.lastRead?.variants ?? []) {
      for (const s of v.servers) {
        if (s.endpoint === "") continue;
        targets.set(healthKey(s.endpoint, s.operator), { url: s.endpoint, expect: { operator: s.operator, variantId: v.id, firstLayer: s.firstLayer, lastLayer: s.lastLayer } });
      }
    }
    const keys = [...targets.keys()];
    const results = await measureServers([...targets.values()], { budgetMs: this.o.measureBudgetMs });
    results.forEach((m, i) => this.health.set(keys[i]!, m.ok ? { health: "up", stepMs: m.stepMs } : { health: "down", reason: m.reason }));
  }

  private publish(e: DashboardEvent): void {
    for (const listener of this.listeners) listener(e);
  }
}

function roundTenth(x: number): number {
  return Math.round(x * 10) / 10;
}
