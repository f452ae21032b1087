import { join } from "node:path";
import { JsonRpcProvider } from "ethers";
import { Staking__factory, TrustScores__factory } from "../../types/ethers-contracts/index.js";
import { withDeadline } from "../deadline.js";
import { RouteError } from "../routeError.js";
import { CandidatePool } from "./candidatePool.js";
import { readClientDeployment } from "./deploymentFile.js";
import { readRegisteredServers, screenServers, WAD, type ReadOptions, type RegisteredServer, type ServerRegistry, type TrustParams } from "./discovery.js";
import type { MeasureOptions } from "./measure.js";
import type { PlannedRoute, RoutePreference } from "./plan.js";

export interface RouteChoiceOptions {
  numLayers: number;
  prefer?: RoutePreference;
  /** `--max-price`: most the whole route may ask per token, token base units (default: no limit). */
  maxPricePerToken?: bigint;
  /** `--min-trust`: trust floor in [0, 1] on top of θ (default 0). */
  minTrust?: number;
  measure?: MeasureOptions;
}

/** What discovery found, measured and chose: enough for `--explain-route` and for failover. */
export interface Discovery {
  route: PlannedRoute;
  pool: CandidatePool;
  registered: RegisteredServer[];
  dropped: { server: RegisteredServer; reason: string }[];
  thetaWad: bigint;
  /** Milliseconds spent reading the chain, then measuring the candidates. */
  chainMs: number;
  measureMs: number;
}

/**
 * Finds a route on chain: reads the variant's servers from the staking contract (paged) and θ from
 * the trust contract, drops the servers a client may not use (see screenServers), measures the rest
 * itself in parallel (see measureServers: each must be what the chain says it is), and plans the
 * route of least weighted cost (see planRoute). The pool keeps the candidates for failover.
 */
export async function discoverRoute(
  chain: { registry: ServerRegistry; trust: TrustParams },
  variantId: string,
  o: RouteChoiceOptions & ReadOptions,
): Promise<Discovery> {
  let started = performance.now();
  const [registered, { threshold }] = await Promise.all([readRegisteredServers(chain.registry, variantId, o), chain.trust.params()]);
  const minTrustWad = o.minTrust === undefined ? undefined : BigInt(Math.round(o.minTrust * 1e6)) * (WAD / 1_000_000n);
  const { kept, dropped } = screenServers(registered, {
    thetaWad: threshold,
    ...(minTrustWad === undefined ? {} : { minTrustWad }),
    ...(o.maxPricePerToken === undefined ? {} : { maxPricePerToken: o.maxPricePerToken }),
  });
  const chainMs = performance.now() - started;
  started = performance.now();
  const pool = new CandidatePool(o.measure);
  pool.addUnmeasured(
    kept.map((s) => ({
      url: s.endpoint,
      expect: { operator: s.operator, variantId, firstLayer: s.firstLayer, lastLayer: s.lastLayer },
      pricePerToken: s.pricePerToken,
      trust: Number(s.trustWad) / 1e18,
    })),
  );
  await pool.measure();
  const measureMs = performance.now() - started;
  const route = pool.plan(planOptions(o));
  return { route, pool, registered, dropped, thetaWad: threshold, chainMs, measureMs };
}

/** The planner's options for a route choice. */
export function planOptions(o: RouteChoiceOptions) {
  return {
    numLayers: o.numLayers,
    ...(o.prefer === undefined ? {} : { prefer: o.prefer }),
    ...(o.maxPricePerToken === undefined ? {} : { maxRoutePricePerToken: o.maxPricePerToken }),
  };
}

/** Milliseconds the RPC endpoint gets to say which chain it is. */
const CHAIN_TIMEOUT_MS = 10_000;

/**
 * The staking and trust contracts of the deployment in `deploymentFile` (default
 * deployments/<chainId>.json in the working directory), read over `rpcUrl`.
 */
export async function connectChain(rpcUrl: string, deploymentFile?: string): Promise<{ registry: ServerRegistry; trust: TrustParams; close(): void }> {
  const provider = new JsonRpcProvider(rpcUrl, undefined, { staticNetwork: true });
  try {
    const { chainId } = await withDeadline(provider.getNetwork(), CHAIN_TIMEOUT_MS, () => new RouteError(`no answer from the RPC endpoint ${rpcUrl} within ${CHAIN_TIMEOUT_MS} ms`));
    const d = readClientDeployment(deploymentFile ?? join(process.cwd(), "deployments", `${chainId}.json`), chainId);
    return {
      registry: Staking__factory.connect(d.staking, provider),
      trust: TrustScores__factory.connect(d.trust, provider),
      close: () => provider.destroy(),
    };
  } catch (err) {
    provider.destroy();
    throw err;
  }
}
