import { join } from "node:path";
import { JsonRpcProvider, type Interface } from "ethers";
import {
  AuditLedger__factory,
  Commitments__factory,
  Disputes__factory,
  ModelRegistry__factory,
  PaymentChannels__factory,
  Staking__factory,
  TrustScores__factory,
  VerifierRewards__factory,
} from "../../types/ethers-contracts/index.js";
import { withDeadline } from "../deadline.js";
import { DashboardError } from "./errors.js";
import { readRegisteredServers, WAD, type RegisteredServer } from "../route/discovery.js";
import { ChainLog, type ChainLogLimits } from "./chainLog.js";
import { ChainScanner, type ScanOptions } from "./chainScanner.js";
import { readDashboardDeployment, type DashboardDeployment } from "./deployment.js";

/** A model variant as read from the registry, with its registered servers. */
export interface VariantRead {
  id: string;
  name: string;
  numLayers: number;
  retired: boolean;
  servers: RegisteredServer[];
}

/** One poll's reading of the chain. */
export interface ChainRead {
  chainId: string;
  block: number;
  scannedBlock: number;
  thetaWad: bigint;
  variants: VariantRead[];
  rewardPoolWei: bigint;
}

export interface ChainWatchOptions extends ScanOptions, ChainLogLimits {
  /** Variants read at most (default 50). */
  maxVariants?: number;
  /** Servers read per variant at most (default 500). */
  maxServersPerVariant?: number;
  /** Milliseconds one RPC call may take (default 10,000). */
  rpcTimeoutMs?: number;
}

/**
 * Follows one deployment: each `poll` reads what is current (variants, their servers with stake,
 * price, trust and eligibility, θ, the reward pool) and folds the events since the last poll into
 * `log` (bounded block ranges, see ChainScanner). Polls must not overlap (Dashboard runs them one
 * at a time).
 */
export class ChainWatch {
  readonly log: ChainLog;
  private readonly scanner: ChainScanner;
  private readonly names = new Map<string, { name: string; numLayers: number }>();
  private readonly maxVariants: number;
  private readonly maxServersPerVariant: number;
  private readonly rpcTimeoutMs: number;

  private constructor(
    private readonly provider: JsonRpcProvider,
    readonly deployment: DashboardDeployment,
    private readonly rpcUrl: string,
    o: ChainWatchOptions,
  ) {
    this.log = new ChainLog(o);
    this.maxVariants = o.maxVariants ?? 50;
    this.maxServersPerVariant = o.maxServersPerVariant ?? 500;
    this.rpcTimeoutMs = o.rpcTimeoutMs ?? 10_000;
    const c = deployment.contracts;
    const followed: { address: string | undefined; iface: Interface }[] = [
      { address: c.staking, iface: Staking__factory.createInterface() },
      { address: c.commitments, iface: Commitments__factory.createInterface() },
      { address: c.channels, iface: PaymentChannels__factory.createInterface() },
      { address: c.rewards, iface: VerifierRewards__factory.createInterface() },
      { address: c.disputes, iface: Disputes__factory.createInterface() },
      { address: c.auditLedger, iface: AuditLedger__factory.createInterface() },
    ];
    this.scanner = new ChainScanner(
      provider,
      followed.filter((f): f is { address: string; iface: Interface } => f.address !== undefined),
      deployment.block,
      o,
    );
  }

  /**
   * Connects to `rpcUrl` and reads the deployment file `deploymentFile` (default
   * deployments/<chainId>.json in the working directory), checked against the chain id.
   */
  static async connect(rpcUrl: string, deploymentFile: string | undefined, o: ChainWatchOptions = {}): Promise<ChainWatch> {
    const provider = new JsonRpcProvider(rpcUrl, undefined, { staticNetwork: true, cacheTimeout: -1 });
    try {
      const timeoutMs = o.rpcTimeoutMs ?? 10_000;
      const { chainId } = await withDeadline(provider.getNetwork(), timeoutMs, () => new DashboardError(`no answer from the RPC endpoint ${rpcUrl} within ${timeoutMs} ms`));
      const file = deploymentFile ?? join(process.cwd(), "deployments", `${chainId}.json`);
      return new ChainWatch(provider, readDashboardDeployment(file, chainId), rpcUrl, o);
    } catch (err) {
      provider.destroy();
      throw err;
    }
  }

  async poll(): Promise<ChainRead> {
    return withDeadline(this.read(), this.rpcTimeoutMs, () => new DashboardError(`reading the chain at ${this.rpcUrl} took over ${this.rpcTimeoutMs} ms`));
  }

  /** The transaction `hash` and its receipt, as the node returns them (null when unknown). */
  async transaction(hash: string): Promise<{ transaction: unknown; receipt: unknown } | null> {
    const [transaction, receipt] = await Promise.all([this.provider.getTransaction(hash), this.provider.getTransactionReceipt(hash)]);
    return transaction === null ? null : { transaction: transaction.toJSON(), receipt: receipt?.toJSON() ?? null };
  }

  close(): void {
    this.provider.destroy();
  }

  private async read(): Promise<ChainRead> {
    const c = this.deployment.contracts;
    const registry = ModelRegistry__factory.connect(c.registry, this.provider);
    const staking = Staking__factory.connect(c.staking, this.provider);
    const head = await this.provider.getBlockNumber();
    for (const e of await this.scanner.scan(head)) this.log.apply(e);
    const [ids, { threshold }, rewardPoolWei] = await Promise.all([
      registry.variantIds(0, this.maxVariants),
      TrustScores__factory.connect(c.trust, this.provider).params(),
      VerifierRewards__factory.connect(c.rewards, this.provider).unallocated(),
    ]);
    const variants = await Promise.all(
      ids.map(async (id): Promise<VariantRead> => {
        const [v, servers] = await Promise.all([registry.variant(id), readRegisteredServers(staking, id, { maxServers: this.maxServersPerVariant })]);
        return { id, name: variantName(v.manifestURI, id), numLayers: Number(v.numLayers), retired: v.retired, servers };
      }),
    );
    return { chainId: this.deployment.chainId, block: head, scannedBlock: this.scanner.nextBlock - 1, thetaWad: threshold, variants, rewardPoolWei };
  }
}

/** A readable name for a variant: the last part of its manifest URI (file://kjv-llama-6m → kjv-llama-6m), else a short id. */
export function variantName(manifestURI: string, id: string): string {
  const last = manifestURI.replace(/[/?#]+$/, "").split(/[/:]/).pop() ?? "";
  return last === "" ? id.slice(0, 10) : last.slice(0, 64);
}

/** A WAD value as a fraction of 1 (a double: plenty for a page that shows three digits). */
export function fromWad(x: bigint): number {
  return Number(x) / Number(WAD);
}
