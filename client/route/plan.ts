import { RouteError } from "../routeError.js";

/** A server the planner may put on a route: what the chain (or the user) says, and what the client measured. */
export interface Candidate {
  url: string;
  /** Layers [firstLayer, lastLayer) it serves (whole range only: see planRoute). */
  firstLayer: number;
  lastLayer: number;
  /** Token base units per token (0 for standalone servers). */
  pricePerToken: bigint;
  /** Trust in [0, 1] (1 for standalone servers: nothing on chain says otherwise). */
  trust: number;
  /** Measured by this client: round trip of a small request, milliseconds. */
  rttMs: number;
  /** Measured by this client: one 1-token step through its layers, round trip included, milliseconds. */
  stepMs: number;
}

export type RoutePreference = "latency" | "price";

export interface PlanOptions {
  numLayers: number;
  /** Which weighs more (default latency): see `serverCost`. */
  prefer?: RoutePreference;
  /** Refuse routes whose summed price per token is above this (token base units; default: no limit). */
  maxRoutePricePerToken?: bigint;
  /** How much an untrusted server costs extra: cost × (1 + trustWeight × (1 − trust)) (default 1). */
  trustWeight?: number;
  /** Servers that count half their cost: those already on a route being repaired (a failover moves as few as it can). */
  keep?: ReadonlySet<string>;
}

export interface PlannedRoute {
  servers: Candidate[];
  /** Expected milliseconds per generated token: the sum of the servers' measured steps. */
  timeMsPerToken: number;
  pricePerToken: bigint;
  /** The weighted cost the route minimises (see `serverCost`). */
  cost: number;
}

/** Weights of time and price for each preference: the preferred one counts ten times the other. */
const WEIGHTS: Record<RoutePreference, { time: number; price: number }> = {
  latency: { time: 1, price: 0.1 },
  price: { time: 0.1, price: 1 },
};

/** The scales that make time and price comparable: the median of the candidates' (1 when all are 0). */
export interface CostScale {
  timeMs: number;
  price: number;
}

export function costScale(candidates: readonly Candidate[]): CostScale {
  const median = (xs: number[]): number => {
    const s = [...xs].sort((a, b) => a - b);
    return s.length === 0 ? 0 : s[Math.floor(s.length / 2)]!;
  };
  const timeMs = median(candidates.map((c) => c.stepMs));
  const price = median(candidates.map((c) => Number(c.pricePerToken)));
  return { timeMs: timeMs > 0 ? timeMs : 1, price: price > 0 ? price : 1 };
}

/**
 * One server's share of a route's cost: its measured step time and its price, each divided by the
 * candidates' median so that they weigh the same at equal preference, weighted by the preference,
 * and raised for a server with less than full trust (a server that may fail costs a failover).
 */
export function serverCost(c: Candidate, scale: CostScale, prefer: RoutePreference, trustWeight: number): number {
  const w = WEIGHTS[prefer];
  const base = (w.time * c.stepMs) / scale.timeMs + (w.price * Number(c.pricePerToken)) / scale.price;
  return base * (1 + trustWeight * (1 - c.trust));
}

/** A partial route ending at some layer boundary: its cost and price so far, and how it got there. */
interface Label {
  cost: number;
  price: bigint;
  timeMs: number;
  servers: Candidate[];
}

/** Labels kept per boundary: enough for the price limit to find a cheaper route, bounded. */
const MAX_LABELS_PER_LAYER = 32;

/**
 * The route of whole server ranges from layer 0 to `numLayers` with the least summed `serverCost`,
 * whose summed price per token is at most `maxRoutePricePerToken`. Ranges may overlap; a route
 * enters each server at its first layer (a shard server opens sessions for its whole range only),
 * so the next server must start where the previous one ends. Throws a RouteError naming the layers
 * no candidate covers, or, when every layer is covered, why no chain of ranges fits.
 */
export function planRoute(candidates: readonly Candidate[], options: PlanOptions): PlannedRoute {
  const { numLayers } = options;
  const prefer = options.prefer ?? "latency";
  const trustWeight = options.trustWeight ?? 1;
  const scale = costScale(candidates);
  const usable = candidates.filter((c) => c.firstLayer >= 0 && c.lastLayer <= numLayers && c.firstLayer < c.lastLayer);
  // Pareto labels (cost, price) per boundary, filled in boundary order: ranges only go forward
  const labels: Label[][] = Array.from({ length: numLayers + 1 }, () => []);
  labels[0]!.push({ cost: 0, price: 0n, timeMs: 0, servers: [] });
  const byStart = new Map<number, Candidate[]>();
  for (const c of usable) byStart.set(c.firstLayer, [...(byStart.get(c.firstLayer) ?? []), c]);
  for (let layer = 0; layer < numLayers; layer++) {
    for (const from of labels[layer]!) {
      for (const c of byStart.get(layer) ?? []) {
        const next: Label = {
          cost: from.cost + serverCost(c, scale, prefer, trustWeight) * (options.keep?.has(c.url) === true ? 0.5 : 1),
          price: from.price + c.pricePerToken,
          timeMs: from.timeMs + c.stepMs,
          servers: [...from.servers, c],
        };
        if (options.maxRoutePricePerToken !== undefined && next.price > options.maxRoutePricePerToken) continue;
        addLabel(labels[c.lastLayer]!, next);
      }
    }
  }
  const done = labels[numLayers]!;
  if (done.length === 0) throw noRouteError(usable, candidates, options);
  const best = done.reduce((a, b) => (b.cost < a.cost ? b : a));
  return { servers: best.servers, timeMsPerToken: best.timeMs, pricePerToken: best.price, cost: best.cost };
}

/** Adds `l` unless a label is at least as cheap in both cost and price; drops those it beats. */
function addLabel(list: Label[], l: Label): void {
  if (list.some((o) => o.cost <= l.cost && o.price <= l.price)) return;
  const kept = list.filter((o) => !(l.cost <= o.cost && l.price <= o.price));
  kept.push(l);
  kept.sort((a, b) => a.cost - b.cost);
  list.splice(0, list.length, ...kept.slice(0, MAX_LABELS_PER_LAYER));
}

/** Layers [from, to) as "3" or "3–5" (inclusive, as people count them), joined. */
export function layerRanges(layers: readonly number[]): string {
  const parts: string[] = [];
  for (let i = 0; i < layers.length; ) {
    let j = i;
    while (j + 1 < layers.length && layers[j + 1] === layers[j]! + 1) j++;
    parts.push(i === j ? `${layers[i]}` : `${layers[i]}–${layers[j]}`);
    i = j + 1;
  }
  return parts.join(", ");
}

function noRouteError(usable: readonly Candidate[], all: readonly Candidate[], options: PlanOptions): RouteError {
  const uncovered: number[] = [];
  for (let layer = 0; layer < options.numLayers; layer++) {
    if (!usable.some((c) => c.firstLayer <= layer && layer < c.lastLayer)) uncovered.push(layer);
  }
  const details = { uncoveredLayers: uncovered, candidates: all.length };
  if (uncovered.length > 0) {
    return new RouteError(`no route covers the model's ${options.numLayers} layers: no usable server serves layer(s) ${layerRanges(uncovered)}`, details);
  }
  if (options.maxRoutePricePerToken !== undefined) {
    return new RouteError(
      `no route of whole server ranges covers the model's ${options.numLayers} layers within the price limit of ${options.maxRoutePricePerToken} per token`,
      details,
    );
  }
  return new RouteError(
    `every layer is served, but no chain of whole server ranges goes from layer 0 to ${options.numLayers} (a route enters a server at its first layer)`,
    details,
  );
}
