import { buildManifest, readManifest, variantIdOf } from "../../engine/model/manifest.js";
import type { ModelDirectory } from "../../engine/model/modelDir.js";
import { FailoverPipeline, type FailoverOptions } from "../failover.js";
import { CandidatePool } from "./candidatePool.js";
import { connectChain, discoverRoute, planOptions } from "./discover.js";
import { explainRoute } from "./explain.js";
import type { RoutePreference } from "./plan.js";

/** How a client finds its route: RouteFlags of client/commands/options.ts, parsed. */
export interface RouteSource {
  /** An explicit route of standalone servers, and spares that may replace them. */
  route?: readonly string[];
  spare?: readonly string[];
  /** Discovery on chain. */
  rpc?: string;
  deployment?: string;
  minTrust?: number;
  maxPrice?: bigint;
  prefer: RoutePreference;
  explainRoute?: boolean;
  measureBudgetMs: number;
  maxFailovers: number;
}

/**
 * The route of `source` as a FailoverPipeline for `model` (`dir` is its directory): discovered on
 * chain and planned (every other candidate is a spare), or the explicit route with its spares.
 * With `explainRoute`, `explain` gets the explanation before the route connects.
 */
export async function openRoute(
  source: RouteSource,
  model: ModelDirectory,
  dir: string,
  options: FailoverOptions,
  explain: (text: string) => void = (t) => console.error(t),
): Promise<FailoverPipeline> {
  const numLayers = model.config.numLayers;
  const choice = {
    numLayers,
    prefer: source.prefer,
    ...(source.maxPrice === undefined ? {} : { maxPricePerToken: source.maxPrice }),
    ...(source.minTrust === undefined ? {} : { minTrust: source.minTrust }),
    measure: { budgetMs: source.measureBudgetMs, ...(options.connectTimeoutMs === undefined ? {} : { connectTimeoutMs: options.connectTimeoutMs }) },
  };
  const failover = { ...options, maxFailoversPerStep: source.maxFailovers };
  if (source.rpc !== undefined && source.route === undefined) {
    const chain = await connectChain(source.rpc, source.deployment);
    try {
      const variantId = variantIdOf(readManifest(dir) ?? buildManifest(model));
      const found = await discoverRoute(chain, variantId, choice);
      if (source.explainRoute === true) {
        explain(
          explainRoute({
            registered: found.registered,
            dropped: found.dropped,
            thetaWad: found.thetaWad,
            measurements: found.pool.measurements,
            candidates: found.pool.list(),
            route: found.route,
            prefer: source.prefer,
          }),
        );
      }
      return await FailoverPipeline.connect(
        found.route.servers.map((s) => s.url),
        numLayers,
        found.pool.replanner(planOptions(choice)),
        failover,
      );
    } finally {
      chain.close();
    }
  }
  if (source.route === undefined) throw new Error("openRoute needs --route or --rpc");
  // An explicit route is measured only when it must be repaired (or explained): measuring opens sessions
  const pool = new CandidatePool(choice.measure);
  pool.addUnmeasured([...source.route, ...(source.spare ?? [])].map((url) => ({ url })));
  if (source.explainRoute === true) {
    await pool.measure();
    const onRoute = source.route.map((u) => pool.list().find((c) => c.url === u)).filter((c) => c !== undefined);
    const timeMsPerToken = onRoute.reduce((t, c) => t + c.stepMs, 0);
    explain(
      explainRoute({
        measurements: pool.measurements,
        candidates: pool.list(),
        route: { servers: onRoute, timeMsPerToken, pricePerToken: onRoute.reduce((p, c) => p + c.pricePerToken, 0n), cost: Number.NaN },
        prefer: source.prefer,
      }) + "\n(--route: the route is the one given; the others are spares)",
    );
  }
  if ((source.spare ?? []).length === 0) {
    return FailoverPipeline.connect(source.route, numLayers, pool.replanner(planOptions(choice)), { ...failover, maxFailoversPerStep: 0 });
  }
  const pipeline = await FailoverPipeline.connect(source.route, numLayers, pool.replanner(planOptions(choice)), failover);
  // measured now, in the background, so that a failover does not wait for it
  void pool.measure();
  return pipeline;
}
