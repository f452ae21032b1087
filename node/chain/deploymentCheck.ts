import type { Provider } from "ethers";
import { InvalidArgumentError } from "../../protocol/errors.js";
import type { Deployment } from "./deployment.js";

/**
 * Checks that every contract of a deployment file has code on the chain. A file written before a
 * chain restart (or for another network with the same chain id) otherwise surfaces as ethers'
 * `could not decode result data (value="0x")` on the first read.
 */
export async function checkDeploymentCode(provider: Provider, d: Deployment, source: string): Promise<void> {
  for (const [name, address] of Object.entries(d.contracts)) {
    if (address === undefined) continue;
    const code = await provider.getCode(address);
    if (code === "0x") {
      throw new InvalidArgumentError(
        `${source} does not match chain ${d.chainId}: there is no contract at ${address} (${name}). The chain was restarted or ` +
          "redeployed since the file was written: deploy again (npm run deploy) or pass --deployment with this chain's file",
        { contract: name, address },
      );
    }
  }
}
