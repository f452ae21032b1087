import { InvalidArgumentError } from "../../protocol/errors.js";

/** One entry of `Staking.servers` (contracts/interfaces/IStaking.sol ServerInfo), as ethers returns it. */
export interface ServerInfoRow {
  operator: string;
  firstLayer: bigint;
  lastLayer: bigint;
  pricePerToken: bigint;
  stake: bigint;
  trust: bigint;
  collateralized: boolean;
  eligible: boolean;
  endpoint: string;
}

/** What discovery reads on chain; a TypeChain `Staking` and `TrustScores` are these. */
export interface ServerRegistry {
  servers(variant: string, offset: number, limit: number): Promise<readonly ServerInfoRow[]>;
}
export interface TrustParams {
  params(): Promise<{ threshold: bigint }>;
}

/** A server registered on chain for the variant. */
export interface RegisteredServer {
  operator: string;
  firstLayer: number;
  lastLayer: number;
  pricePerToken: bigint;
  stake: bigint;
  /** Trust in WAD (1e18 = full trust). */
  trustWad: bigint;
  collateralized: boolean;
  eligible: boolean;
  endpoint: string;
}

export interface ReadOptions {
  /** Servers read per call (default 100). */
  pageSize?: number;
  /** Servers read at most (default 10,000): a registry that lists more is read up to here. */
  maxServers?: number;
}

/** Every server of `variantId` on chain, page by page, until a short page or `maxServers`. */
export async function readRegisteredServers(registry: ServerRegistry, variantId: string, o: ReadOptions = {}): Promise<RegisteredServer[]> {
  const pageSize = o.pageSize ?? 100;
  const maxServers = o.maxServers ?? 10_000;
  for (const [name, v] of [["pageSize", pageSize], ["maxServers", maxServers]] as const) {
    if (!Number.isSafeInteger(v) || v < 1) throw new InvalidArgumentError(`discovery option ${name} must be a positive integer, got ${v}`);
  }
  const out: RegisteredServer[] = [];
  while (out.length < maxServers) {
    const limit = Math.min(pageSize, maxServers - out.length);
    const page = await registry.servers(variantId, out.length, limit);
    for (const r of page) {
      out.push({
        operator: r.operator,
        firstLayer: Number(r.firstLayer),
        lastLayer: Number(r.lastLayer),
        pricePerToken: r.pricePerToken,
        stake: r.stake,
        trustWad: r.trust,
        collateralized: r.collateralized,
        eligible: r.eligible,
        endpoint: r.endpoint,
      });
    }
    if (page.length < limit) break;
  }
  return out;
}

export const WAD = 10n ** 18n;

export interface ScreenOptions {
  /** θ read from the trust contract, WAD. */
  thetaWad: bigint;
  /** The user's own floor (`--min-trust`), WAD; the higher of it and θ applies (default 0). */
  minTrustWad?: bigint;
  /** Servers asking more per token than this are dropped (`--max-price`: no route with them fits; default none). */
  maxPricePerToken?: bigint;
}

export interface Screened {
  kept: RegisteredServer[];
  dropped: { server: RegisteredServer; reason: string }[];
}

/**
 * Keeps the servers a client may route to: collateralized, eligible (serving, past probation, trust
 * at least θ per the chain), trust at least max(θ, --min-trust), within --max-price, with an
 * endpoint. Every dropped server comes with the reason.
 */
export function screenServers(servers: readonly RegisteredServer[], o: ScreenOptions): Screened {
  const floor = o.minTrustWad !== undefined && o.minTrustWad > o.thetaWad ? o.minTrustWad : o.thetaWad;
  const floorName = floor === o.thetaWad ? "θ" : "--min-trust";
  const kept: RegisteredServer[] = [];
  const dropped: Screened["dropped"] = [];
  for (const s of servers) {
    const reason = !s.collateralized
      ? "not collateralized (free stake below the minimum for its range)"
      : s.trustWad < floor
        ? `trust ${formatWad(s.trustWad)} below ${floorName} ${formatWad(floor)}`
        : !s.eligible
          ? "not eligible (not serving, in probation, or its variant retired)"
          : o.maxPricePerToken !== undefined && s.pricePerToken > o.maxPricePerToken
            ? `price ${s.pricePerToken} per token over --max-price ${o.maxPricePerToken}`
            : s.endpoint === ""
              ? "no endpoint"
              : undefined;
    if (reason === undefined) kept.push(s);
    else dropped.push({ server: s, reason });
  }
  return { kept, dropped };
}

/** A WAD amount as a decimal with 3 digits, e.g. 0.875. */
export function formatWad(x: bigint): string {
  return (Number(x / 10n ** 12n) / 1e6).toFixed(3);
}
