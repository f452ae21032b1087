import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { InvalidArgumentError } from "../../protocol/errors.js";

/** Contract addresses of one deployment, as `npm run deploy` writes them. */
export interface Deployment {
  chainId: string;
  contracts: {
    token: string;
    registry: string;
    staking: string;
    trust: string;
    commitments: string;
    rewards: string;
    channels: string;
    /** Absent in deployments made before the dispute contract existed. */
    disputes?: string;
    /** Absent in deployments made before the data-request contract existed. */
    dataRequests?: string;
    /** Absent in deployments made before the audit ledger existed (passes are then not recorded on chain). */
    auditLedger?: string;
    /** Absent in deployments made before the ticket broker existed (clients then pay through channels only). */
    ticketBroker?: string;
  };
}

/** Reads `file`, or deployments/<chainId>.json under `root` when no file is given. */
export function readDeployment(chainId: bigint, file: string | undefined, root: string): Deployment {
  const path = file ?? join(root, "deployments", `${chainId}.json`);
  if (!existsSync(path)) throw new InvalidArgumentError(`no deployment file ${path}: run npm run deploy, or pass --deployment FILE`);
  const d = JSON.parse(readFileSync(path, "utf8")) as Deployment;
  if (d.chainId !== chainId.toString()) {
    throw new InvalidArgumentError(`${path} is for chain ${d.chainId}, the RPC endpoint is chain ${chainId}`);
  }
  return d;
}
