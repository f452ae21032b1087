import { JsonRpcProvider, type Wallet } from "ethers";
import { contractCall } from "../../protocol/contractErrors.js";
import { EFedError } from "../../protocol/errors.js";
import {
  Commitments__factory,
  EFedToken__factory,
  ModelRegistry__factory,
  PaymentChannels__factory,
  Staking__factory,
  TrustScores__factory,
  type Commitments,
  type EFedToken,
  type ModelRegistry,
  type PaymentChannels,
  type Staking,
  type TrustScores,
} from "../../types/ethers-contracts/index.js";
import { readDeployment, type Deployment } from "./deployment.js";
import { checkDeploymentCode } from "./deploymentCheck.js";

/** How long the first request may take before the RPC endpoint counts as unreachable. */
export const RPC_CONNECT_TIMEOUT_MS = 15_000;

/** One operator key connected to one deployment: what every `efed operator` command works on. */
export interface OperatorChain {
  provider: JsonRpcProvider;
  chainId: bigint;
  deployment: Deployment;
  /** Block the deployment started at (0 when the file does not say): where event queries begin. */
  deploymentBlock: number;
  signer: Wallet;
  address: string;
  token: EFedToken;
  registry: ModelRegistry;
  staking: Staking;
  commitments: Commitments;
  trust: TrustScores;
  channels: PaymentChannels;
}

/**
 * Connects `wallet` to the chain at `rpc` and the deployment in `deploymentFile` (default
 * deployments/<chainId>.json under `root`), after checking the file is for this chain and every
 * contract in it has code. The caller destroys `provider` when done.
 */
export async function connectOperator(opts: { rpc: string; deploymentFile: string | undefined; root: string; wallet: Wallet }): Promise<OperatorChain> {
  // no request cache: a nonce read right after a mined transaction must not be the cached one
  const provider = new JsonRpcProvider(opts.rpc, undefined, { staticNetwork: true, cacheTimeout: -1 });
  try {
    const chainId = await withTimeout(
      contractCall(`reaching the JSON-RPC node at ${opts.rpc}`, async () => (await provider.getNetwork()).chainId),
      RPC_CONNECT_TIMEOUT_MS,
      `no JSON-RPC node answered at ${opts.rpc} within ${RPC_CONNECT_TIMEOUT_MS} ms`,
    );
    const deployment = readDeployment(chainId, opts.deploymentFile, opts.root);
    await checkDeploymentCode(provider, deployment, opts.deploymentFile ?? `deployments/${chainId}.json`);
    const signer = opts.wallet.connect(provider);
    const c = deployment.contracts;
    const block = (deployment as { block?: unknown }).block;
    return {
      provider,
      chainId,
      deployment,
      deploymentBlock: typeof block === "number" && Number.isSafeInteger(block) && block >= 0 ? block : 0,
      signer,
      address: signer.address,
      token: EFedToken__factory.connect(c.token, signer),
      registry: ModelRegistry__factory.connect(c.registry, signer),
      staking: Staking__factory.connect(c.staking, signer),
      commitments: Commitments__factory.connect(c.commitments, signer),
      trust: TrustScores__factory.connect(c.trust, signer),
      channels: PaymentChannels__factory.connect(c.channels, signer),
    };
  } catch (err) {
    provider.destroy();
    throw err;
  }
}

async function withTimeout<T>(p: Promise<T>, ms: number, message: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new EFedError("RPC_TIMEOUT", message)), ms);
  });
  try {
    return await Promise.race([p, timeout]);
  } finally {
    clearTimeout(timer);
  }
}
