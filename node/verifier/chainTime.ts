import type { Provider } from "ethers";

/** The latest block's timestamp: the clock every deadline on chain is measured by (not this machine's). */
export async function chainTime(provider: Provider): Promise<bigint> {
  const block = await provider.getBlock("latest");
  if (block === null) throw new Error("the RPC endpoint has no latest block");
  return BigInt(block.timestamp);
}
