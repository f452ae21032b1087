import { homedir } from "node:os";
import { join } from "node:path";
import { InvalidArgumentError } from "commander";
import { isHexString } from "ethers";
import { Ledger } from "./ledger.js";
import { openKeystore } from "./keystore.js";
import { readPassword } from "./password.js";
import { readClientDeployment } from "../route/deploymentFile.js";
import { connectWalletChain, disconnect, type WalletChain } from "./walletChain.js";

/** The default keystore: $EFED_WALLET, else ~/.efed/wallet.json. */
export const DEFAULT_WALLET_PATH = process.env.EFED_WALLET ?? join(homedir(), ".efed", "wallet.json");

/** A wallet open for paying: its key on the chain, and its ledger. `close` releases both. */
export interface OpenWallet {
  chain: WalletChain;
  ledger: Ledger;
  close(): void;
}

/** Asks for the password, decrypts the keystore, connects to the chain of the deployment file, opens the ledger. */
export async function openWallet(walletPath: string, rpc: string, deploymentPath: string): Promise<OpenWallet> {
  const deployment = readClientDeployment(deploymentPath);
  const wallet = await openKeystore(walletPath, await readPassword(walletPath));
  const chain = await connectWalletChain(wallet, rpc, deployment);
  const ledger = Ledger.open(Ledger.pathFor(walletPath));
  return {
    chain,
    ledger,
    close: () => {
      ledger.close();
      disconnect(chain);
    },
  };
}

/** Commander parser: a 32-byte hex id. */
export function bytes32(value: string): string {
  if (!isHexString(value, 32)) throw new InvalidArgumentError(`"${value}" is not a 32-byte 0x-hex id.`);
  return value.toLowerCase();
}
