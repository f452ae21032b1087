import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { Wallet, encryptKeystoreJson, getAddress, isKeystoreJson } from "ethers";
import { WalletError } from "./walletError.js";

/** scrypt cost of new keystores (ethers' default): about a second to open on a laptop. */
export const DEFAULT_SCRYPT_N = 131_072;

/**
 * Writes `wallet`'s key to `path` as an encrypted ethers JSON keystore (scrypt + AES-128-CTR),
 * readable by its owner only. Refuses to overwrite a file.
 */
export async function writeKeystore(path: string, wallet: Wallet, password: string, scryptN = DEFAULT_SCRYPT_N): Promise<void> {
  if (existsSync(path)) throw new WalletError("WALLET_EXISTS", `${path} exists: a wallet file is never overwritten (move it away first)`);
  if (!Number.isSafeInteger(scryptN) || scryptN < 2 || (scryptN & (scryptN - 1)) !== 0) {
    throw new WalletError("WALLET_BAD_FILE", `scrypt cost ${scryptN} must be a power of two >= 2`);
  }
  const json = await encryptKeystoreJson({ address: wallet.address, privateKey: wallet.privateKey }, password, { scrypt: { N: scryptN } });
  writeFileSync(path, json, { mode: 0o600, flag: "wx" });
}

/** The address a keystore holds (stored in clear in the file: no password needed). */
export function keystoreAddress(path: string): string {
  return readKeystoreJson(path).address;
}

/** Opens the keystore at `path` with `password`: the wallet, or a WalletError naming the file and what is wrong. */
export async function openKeystore(path: string, password: string): Promise<Wallet> {
  const { json } = readKeystoreJson(path);
  try {
    const w = await Wallet.fromEncryptedJson(json, password);
    return new Wallet(w.privateKey);
  } catch (err) {
    if (/incorrect password/i.test((err as Error).message)) throw new WalletError("WALLET_BAD_PASSWORD", `wrong password for the keystore ${path}`);
    throw new WalletError("WALLET_BAD_FILE", `${path} cannot be decrypted: ${(err as Error).message}`);
  }
}

function readKeystoreJson(path: string): { json: string; address: string } {
  if (!existsSync(path)) throw new WalletError("WALLET_MISSING", `no keystore at ${path}: create one with \`efed wallet create --wallet ${path}\``);
  const json = readFileSync(path, "utf8");
  if (!isKeystoreJson(json)) throw new WalletError("WALLET_BAD_FILE", `${path} is not an encrypted JSON keystore (ethers / geth format)`);
  const address = (JSON.parse(json) as { address?: string }).address;
  if (address === undefined) throw new WalletError("WALLET_BAD_FILE", `${path} names no address`);
  return { json, address: getAddress(address.startsWith("0x") ? address : `0x${address}`) };
}
