import { formatWad, type RegisteredServer } from "./discovery.js";
import type { Measurement } from "./measure.js";
import { costScale, serverCost, type Candidate, type PlannedRoute, type RoutePreference } from "./plan.js";

export interface RouteExplanation {
  /** Servers the chain lists, with why each was dropped before measuring (absent: not read from chain). */
  registered?: readonly RegisteredServer[];
  dropped?: readonly { server: RegisteredServer; reason: string }[];
  thetaWad?: bigint;
  measurements: readonly Measurement[];
  candidates: readonly Candidate[];
  route: PlannedRoute;
  prefer: RoutePreference;
}

/**
 * `--explain-route`: every server considered, what became of it (dropped and why, unreachable,
 * measured: round trip, 1-token step, its cost), the route chosen and why: the least summed cost
 * over the chains of whole ranges from layer 0 to the last.
 */
export function explainRoute(e: RouteExplanation): string {
  const lines: string[] = [];
  if (e.registered !== undefined) {
    const theta = e.thetaWad === undefined ? "" : `, θ = ${formatWad(e.thetaWad)}`;
    lines.push(`chain: ${e.registered.length} server(s) registered for the variant${theta}`);
    for (const { server, reason } of e.dropped ?? []) {
      lines.push(`  dropped  ${server.endpoint || "(no endpoint)"}  ${server.operator}  layers ${server.firstLayer}:${server.lastLayer}: ${reason}`);
    }
  }
  for (const m of e.measurements) {
    if (!m.ok) lines.push(`  unusable ${m.url}: ${m.reason}`);
    else if (m.note !== undefined) lines.push(`  note     ${m.url}: ${m.note}`);
  }
  const scale = costScale(e.candidates);
  const chosen = new Set(e.route.servers.map((s) => s.url));
  lines.push(`measured candidates (cost = ${e.prefer === "latency" ? "step/median + 0.1·price/median" : "0.1·step/median + price/median"}, × (1 + 1 − trust)):`);
  for (const c of e.candidates) {
    const mark = chosen.has(c.url) ? "*" : " ";
    lines.push(
      `${mark} ${c.url}  layers ${c.firstLayer}:${c.lastLayer}  rtt ${c.rttMs.toFixed(1)} ms  step ${c.stepMs.toFixed(1)} ms  ` +
        `price ${c.pricePerToken}  trust ${c.trust.toFixed(3)}  cost ${serverCost(c, scale, e.prefer, 1).toFixed(3)}`,
    );
  }
  lines.push(
    `route (${e.route.servers.length} server(s), least total cost ${e.route.cost.toFixed(3)} of the chains of whole ranges from layer 0; ` +
      `expected ${e.route.timeMsPerToken.toFixed(1)} ms and ${e.route.pricePerToken} per token):`,
  );
  for (const s of e.route.servers) lines.push(`  ${s.firstLayer}:${s.lastLayer}  ${s.url}`);
  lines.push("a route enters each server at its first layer: a shard server opens sessions for its whole range only");
  return lines.join("\n");
}
