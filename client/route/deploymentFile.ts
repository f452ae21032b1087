import { existsSync, readFileSync } from "node:fs";
import { isAddress } from "ethers";
import { InvalidArgumentError } from "../../protocol/errors.js";

/**
 * The contract addresses a client reads from a deployment file (`npm run deploy` writes it; the
 * operator side reads the same file with node/chain/deployment.ts, which client/ may not import).
 */
export interface ClientDeployment {
  chainId: string;
  staking: string;
  trust: string;
}

/** Reads `path` and checks it is for chain `chainId` and names the staking and trust contracts. */
export function readClientDeployment(path: string, chainId: bigint): ClientDeployment {
  const d = readDeploymentRecord(path, chainId);
  const { staking, trust } = d.contracts ?? {};
  for (const [name, value] of [["staking", staking], ["trust", trust]] as const) {
    if (typeof value !== "string" || !isAddress(value)) throw new InvalidArgumentError(`${path}: contracts.${name} must be an address, got ${String(value)}`);
  }
  return { chainId: chainId.toString(), staking: staking as string, trust: trust as string };
}

/** The JSON of deployment file `path`, checked to exist, parse and be for chain `chainId` (its fields unchecked). */
export function readDeploymentRecord(path: string, chainId: bigint): { chainId?: unknown; block?: unknown; contracts?: Record<string, unknown> } {
  if (!existsSync(path)) throw new InvalidArgumentError(`no deployment file ${path}: run npm run deploy, or pass --deployment FILE`);
  let d: { chainId?: unknown; block?: unknown; contracts?: Record<string, unknown> };
  try {
    d = JSON.parse(readFileSync(path, "utf8")) as typeof d;
  } catch (err) {
    throw new InvalidArgumentError(`${path} is not JSON: ${(err as Error).message}`);
  }
  if (String(d.chainId) !== chainId.toString()) {
    throw new InvalidArgumentError(`${path} is for chain ${String(d.chainId)}, the RPC endpoint is chain ${chainId}`);
  }
  return d;
}
