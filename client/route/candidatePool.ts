import type { Replanner } from "../failover.js";
import { measureServers, type MeasureOptions, type MeasureTarget, type Measurement } from "./measure.js";
import { planRoute, type Candidate, type PlanOptions } from "./plan.js";

/** What the client knows of a server it has not measured yet: where it is, what the chain says. */
export interface UnmeasuredServer extends MeasureTarget {
  pricePerToken?: bigint;
  trust?: number;
}

/**
 * The servers a client may route over: measured candidates, and spares not measured yet (or not
 * reachable when last tried). `replanner` gives FailoverPipeline its way around a failed server: it
 * measures the spares it has not measured (in parallel, within the measuring budget), then plans
 * over every candidate not banned, preferring those already on the route.
 */
export class CandidatePool {
  private readonly candidates = new Map<string, Candidate>();
  private readonly unmeasured = new Map<string, UnmeasuredServer>();
  /** Every measurement, failed ones included, in the order made (what --explain-route prints). */
  readonly measurements: Measurement[] = [];
  private measuring: Promise<void> | undefined;

  constructor(private readonly measureOptions: MeasureOptions = {}) {}

  /**
   * Adds servers to measure at the next `measure` or replan. Registrations are told apart by URL and
   * operator: two may name one endpoint, and only the one whose address the server announces counts.
   */
  addUnmeasured(servers: readonly UnmeasuredServer[]): void {
    for (const s of servers) if (!this.candidates.has(s.url)) this.unmeasured.set(`${s.url} ${s.expect?.operator ?? ""}`, s);
  }

  /**
   * Measures the servers not measured yet (but those in `skip`); those that answer become
   * candidates. A measurement already under way is waited for first, so none is made twice.
   */
  async measure(skip: ReadonlySet<string> = new Set()): Promise<void> {
    while (this.measuring !== undefined) await this.measuring;
    this.measuring = this.measureNow(skip).finally(() => (this.measuring = undefined));
    return this.measuring;
  }

  private async measureNow(skip: ReadonlySet<string>): Promise<void> {
    const pending = [...this.unmeasured.values()].filter((s) => !skip.has(s.url));
    if (pending.length === 0) return;
    const results = await measureServers(pending, this.measureOptions);
    this.measurements.push(...results);
    for (const [i, m] of results.entries()) {
      if (!m.ok) continue;
      const s = pending[i]!;
      for (const [key, u] of this.unmeasured) if (u.url === s.url) this.unmeasured.delete(key);
      this.candidates.set(s.url, {
        url: s.url,
        firstLayer: m.info.firstLayer,
        lastLayer: m.info.lastLayer,
        pricePerToken: s.pricePerToken ?? m.info.pricePerToken,
        trust: s.trust ?? 1,
        rttMs: m.rttMs,
        stepMs: m.stepMs,
      });
    }
  }

  /** The measured candidates, in the order measured. */
  list(): Candidate[] {
    return [...this.candidates.values()];
  }

  /** Plans a route over the candidates not banned. */
  plan(options: PlanOptions, banned: ReadonlySet<string> = new Set()) {
    return planRoute(
      this.list().filter((c) => !banned.has(c.url)),
      options,
    );
  }

  /** FailoverPipeline's replanner over this pool: the route that failed keeps the servers it can. */
  replanner(options: PlanOptions): Replanner {
    return async (banned, failedRoute) => {
      await this.measure(banned);
      return this.plan({ ...options, keep: new Set(failedRoute) }, banned).servers.map((c) => c.url);
    };
  }
}
