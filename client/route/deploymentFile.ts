import { existsSync, readFileSync } from "node:fs";
import { isAddress } from "ethers";
import { InvalidArgumentError } from "../../protocol/errors.js";

/**
 * The contract addresses a client trusts: its own deployment file (`npm run deploy` writes it), never
 * what a server announces. Discovery reads the staking and trust contracts; the wallet pays through
 * the token and channels, and checks receipts against commitments. (The operator side reads the same
 * file with node/chain/deployment.ts, which client/ may not import.)
 */
export interface ClientDeployment {
  chainId: bigint;
  token: string;
  staking: string;
  trust: string;
  commitments: string;
  channels: string;
  /** The TicketBroker clients may pay with tickets through; absent in deployments made before it. */
  ticketBroker?: string;
}

const CONTRACTS = ["token", "staking", "trust", "commitments", "channels"] as const;

/** Reads `path`; with `chainId` (the RPC endpoint's), checks the file is for that chain. */
export function readClientDeployment(path: string, chainId?: bigint): ClientDeployment {
  const d = readDeploymentRecord(path, chainId);
  const c = d.contracts ?? {};
  for (const name of CONTRACTS) {
    const value = c[name];
    if (typeof value !== "string" || !isAddress(value)) throw new InvalidArgumentError(`${path}: contracts.${name} must be an address, got ${String(value)}`);
  }
  const address = (name: (typeof CONTRACTS)[number]): string => c[name] as string;
  const broker = c.ticketBroker;
  if (broker !== undefined && (typeof broker !== "string" || !isAddress(broker))) throw new InvalidArgumentError(`${path}: contracts.ticketBroker must be an address, got ${String(broker)}`);
  return {
    chainId: d.chainId,
    token: address("token"),
    staking: address("staking"),
    trust: address("trust"),
    commitments: address("commitments"),
    channels: address("channels"),
    ...(broker === undefined ? {} : { ticketBroker: broker }),
  };
}

/** What every client reader of a deployment file gets: its chain id checked, its other fields as written. */
export interface DeploymentRecord {
  chainId: bigint;
  block?: unknown;
  contracts?: Record<string, unknown>;
}

/** The JSON of deployment file `path`, checked to exist, parse and (with `chainId`) be for that chain. */
export function readDeploymentRecord(path: string, chainId?: bigint): DeploymentRecord {
  if (!existsSync(path)) throw new InvalidArgumentError(`no deployment file ${path}: run npm run deploy, or pass --deployment FILE`);
  let d: { chainId?: unknown; block?: unknown; contracts?: Record<string, unknown> };
  try {
    d = JSON.parse(readFileSync(path, "utf8")) as typeof d;
  } catch (err) {
    throw new InvalidArgumentError(`${path} is not JSON: ${(err as Error).message}`);
  }
  if (typeof d.chainId !== "string" && typeof d.chainId !== "number") throw new InvalidArgumentError(`${path}: chainId must be a chain id, got ${String(d.chainId)}`);
  let fileChainId: bigint;
  try {
    fileChainId = BigInt(d.chainId);
  } catch {
    throw new InvalidArgumentError(`${path}: chainId must be a chain id, got ${String(d.chainId)}`);
  }
  if (chainId !== undefined && fileChainId !== chainId) {
    throw new InvalidArgumentError(`${path} is for chain ${fileChainId}, the RPC endpoint is chain ${chainId}`);
  }
  return { ...d, chainId: fileChainId };
}
