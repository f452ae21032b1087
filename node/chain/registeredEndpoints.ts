import { InvalidArgumentError } from "../../protocol/errors.js";
import { canonicalHopUrl } from "../../protocol/forwarding.js";

/** What is read of the Staking contract (contracts/interfaces/IStaking.sol `servers`); a TypeChain `Staking` is one. */
export interface StakingServerList {
  servers(variant: string, offset: number, limit: number): Promise<readonly { firstLayer: bigint; collateralized: boolean; endpoint: string }[]>;
}

export interface RegisteredEndpointsOptions {
  /** The Staking contract. */
  staking: StakingServerList;
  /** The model variant whose servers are listed. */
  variantId: string;
  /** Milliseconds a read of the server list is reused before the next one: a newly registered server is forwarded to at most this late. Default 30000. */
  ttlMs?: number;
  /** Servers read per call. Default 100. */
  pageSize?: number;
  /** Servers read at most (a registry that lists more is read up to here). Default 10000. */
  maxServers?: number;
  /** The clock, for tests. Default Date.now. */
  now?: () => number;
}

/**
 * The endpoints registered on chain for one model variant, by the first layer each serves: what a
 * server running with --rpc forwards to (ForwardingOptions.endpointAllowed). Only collateralized
 * servers count; endpoints are compared in their canonical spelling (scheme, host, explicit port).
 * The list is read once per `ttlMs`, concurrent asks share one read, and a failed read is not kept.
 */
export class RegisteredEndpoints {
  private readonly ttlMs: number;
  private readonly pageSize: number;
  private readonly maxServers: number;
  private readonly now: () => number;
  private cached: { atMs: number; list: Promise<ReadonlyMap<string, ReadonlySet<number>>> } | undefined;

  constructor(private readonly o: RegisteredEndpointsOptions) {
    this.ttlMs = o.ttlMs ?? 30_000;
    this.pageSize = o.pageSize ?? 100;
    this.maxServers = o.maxServers ?? 10_000;
    this.now = o.now ?? Date.now;
    for (const [name, v] of [["ttlMs", this.ttlMs], ["pageSize", this.pageSize], ["maxServers", this.maxServers]] as const) {
      if (!Number.isSafeInteger(v) || v < 1) throw new InvalidArgumentError(`registered endpoints option ${name} must be a positive integer, got ${v}`);
    }
  }

  /** Whether `url` is the registered endpoint of a collateralized server of the variant whose layers start at `firstLayer`. */
  async allowed(url: string, firstLayer: number): Promise<boolean> {
    let key: string;
    try {
      key = canonicalHopUrl(url);
    } catch {
      return false;
    }
    return (await this.list()).get(key)?.has(firstLayer) ?? false;
  }

  private list(): Promise<ReadonlyMap<string, ReadonlySet<number>>> {
    const now = this.now();
    if (this.cached !== undefined && now - this.cached.atMs < this.ttlMs) return this.cached.list;
    const entry = { atMs: now, list: this.read() };
    this.cached = entry;
    entry.list.catch(() => {
      if (this.cached === entry) this.cached = undefined;
    });
    return entry.list;
  }

  private async read(): Promise<ReadonlyMap<string, ReadonlySet<number>>> {
    const byUrl = new Map<string, Set<number>>();
    for (let offset = 0; offset < this.maxServers; offset += this.pageSize) {
      const page = await this.o.staking.servers(this.o.variantId, offset, Math.min(this.pageSize, this.maxServers - offset));
      for (const s of page) {
        if (!s.collateralized) continue;
        let key: string;
        try {
          key = canonicalHopUrl(s.endpoint);
        } catch {
          continue; // an endpoint no server could forward to
        }
        const layers = byUrl.get(key) ?? new Set<number>();
        layers.add(Number(s.firstLayer));
        byUrl.set(key, layers);
      }
      if (page.length < this.pageSize) break;
    }
    return byUrl;
  }
}
