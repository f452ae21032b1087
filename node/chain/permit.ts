import { Signature, type Signer } from "ethers";
import { PERMIT_TYPES } from "../../protocol/eip712.js";
import type { EFedToken } from "../../types/ethers-contracts/index.js";

/** Seconds an EIP-2612 permit stays valid, counted from the chain's latest block. */
export const PERMIT_VALIDITY_SECONDS = 3600n;

/**
 * Signs an EIP-2612 permit letting `spender` pull `valueWei` of `owner`'s tokens, so a deposit
 * takes one transaction instead of approve + deposit. The deadline is counted from chain time (a
 * test chain moved forward, or a node behind the wall clock, would otherwise reject it).
 */
export async function signPermit(
  token: EFedToken,
  owner: Signer,
  spender: string,
  valueWei: bigint,
): Promise<{ deadline: bigint; v: number; r: string; s: string }> {
  const provider = owner.provider;
  if (provider === null) throw new Error("signPermit needs a signer connected to a provider");
  const ownerAddress = await owner.getAddress();
  const [domain, nonce, latest] = await Promise.all([token.eip712Domain(), token.nonces(ownerAddress), provider.getBlock("latest")]);
  const deadline = BigInt(latest?.timestamp ?? Math.floor(Date.now() / 1000)) + PERMIT_VALIDITY_SECONDS;
  const signature = await owner.signTypedData(
    { name: domain.name, version: domain.version, chainId: domain.chainId, verifyingContract: domain.verifyingContract },
    PERMIT_TYPES,
    { owner: ownerAddress, spender, value: valueWei, nonce, deadline },
  );
  const { v, r, s } = Signature.from(signature);
  return { deadline, v, r, s };
}
