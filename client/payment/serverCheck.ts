import { getAddress } from "ethers";
import type { ShardConnection } from "../shardClient.js";
import type { WalletChain } from "../wallet/walletChain.js";
import { WalletError } from "../wallet/walletError.js";

/**
 * A route server's registered price, once the chain confirms it is who and what it says: it signs
 * receipts for the client's deployment (chain and Commitments, not what it announces), it is a
 * registered, eligible server for the variant and layer range it announces, at the price it announces.
 * Whatever pays it (a channel or tickets) checks this first.
 */
export async function checkServer(chain: WalletChain, c: ShardConnection): Promise<bigint> {
  const d = chain.deployment;
  const info = c.info;
  const mismatch = (what: string): WalletError => new WalletError("WALLET_SERVER_MISMATCH", `${c.url} (${info.server}) ${what}: not paid`);
  if (info.chainId !== d.chainId) throw mismatch(`signs receipts for chain ${info.chainId}, the deployment is chain ${d.chainId}`);
  if (getAddress(info.commitments) !== getAddress(d.commitments)) {
    throw mismatch(`signs receipts for contract ${info.commitments}, the deployment's Commitments is ${d.commitments}`);
  }
  const s = await chain.staking.server(info.server);
  if (s.registrationId === 0n) throw new WalletError("WALLET_SERVER_NOT_ELIGIBLE", `${c.url} (${info.server}) is not a registered server: not paid`);
  if (s.variant !== info.variantId || Number(s.firstLayer) !== info.firstLayer || Number(s.lastLayer) !== info.lastLayer) {
    throw mismatch(`announces variant ${info.variantId} layers ${info.firstLayer}:${info.lastLayer}, it is registered for ${s.variant} layers ${s.firstLayer}:${s.lastLayer}`);
  }
  if (!(await chain.staking.isEligible(info.server))) {
    throw new WalletError("WALLET_SERVER_NOT_ELIGIBLE", `${c.url} (${info.server}) is not eligible (deregistered, in probation, or trusted below the threshold): not paid`);
  }
  if (s.pricePerToken !== info.pricePerToken) throw mismatch(`announces ${info.pricePerToken} per token, its registered price is ${s.pricePerToken}`);
  return s.pricePerToken;
}
