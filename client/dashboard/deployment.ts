import { isAddress } from "ethers";
import { InvalidArgumentError } from "../../protocol/errors.js";
import { readDeploymentRecord } from "../route/deploymentFile.js";

/** The contracts the dashboard reads; the optional ones are absent from older deployments. */
export interface DashboardDeployment {
  chainId: string;
  /** Block the contracts were deployed in: the event scan starts there (0 when the file does not say). */
  block: number;
  contracts: {
    registry: string;
    staking: string;
    trust: string;
    commitments: string;
    rewards: string;
    channels: string;
    disputes?: string;
    auditLedger?: string;
  };
}

const REQUIRED = ["registry", "staking", "trust", "commitments", "rewards", "channels"] as const;
const OPTIONAL = ["disputes", "auditLedger"] as const;

/** Reads a deployment file (`npm run deploy` writes it) and checks it is for chain `chainId`. */
export function readDashboardDeployment(path: string, chainId: bigint): DashboardDeployment {
  const d = readDeploymentRecord(path, chainId);
  const given = d.contracts ?? {};
  const contracts: Record<string, string> = {};
  for (const name of [...REQUIRED, ...OPTIONAL]) {
    const value = given[name];
    if (value === undefined && (OPTIONAL as readonly string[]).includes(name)) continue;
    if (typeof value !== "string" || !isAddress(value)) throw new InvalidArgumentError(`${path}: contracts.${name} must be an address, got ${String(value)}`);
    contracts[name] = value;
  }
  const block = d.block === undefined ? 0 : Number(d.block);
  if (!Number.isSafeInteger(block) || block < 0) throw new InvalidArgumentError(`${path}: block must be a block number, got ${String(d.block)}`);
  return { chainId: chainId.toString(), block, contracts: contracts as DashboardDeployment["contracts"] };
}
