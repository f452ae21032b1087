import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { Wallet } from "ethers";
import { InvalidArgumentError } from "../../protocol/errors.js";

/** Name of the key file a standalone server creates in its data directory. */
export const DEFAULT_KEY_FILE = "efed-server.key";

/**
 * The server's signing key: from `file`, else from $EFED_SERVER_KEY, else (standalone only) from
 * DATA_DIR/efed-server.key, created once with mode 0600 and reused on every restart, so receipts
 * signed before a restart can still be fetched and defended under the same address and store.
 * A chain server (`stakedKeyRequired`) must name its staked key: a new key holds no stake.
 */
export function loadOrCreateKey(
  file: string | undefined,
  dataDir: string,
  stakedKeyRequired: boolean,
): { wallet: Wallet; created: boolean; path: string | undefined } {
  if (file !== undefined) {
    if (!existsSync(file)) throw new InvalidArgumentError(`key file ${file} does not exist`);
    return { wallet: parseKey(readFileSync(file, "utf8"), file), created: false, path: resolve(file) };
  }
  const fromEnv = process.env.EFED_SERVER_KEY;
  if (fromEnv !== undefined && fromEnv.trim() !== "") return { wallet: parseKey(fromEnv, "EFED_SERVER_KEY"), created: false, path: undefined };
  if (stakedKeyRequired) throw new InvalidArgumentError("a staked key is needed with --rpc: pass --key FILE or set EFED_SERVER_KEY");
  const path = resolve(join(dataDir, DEFAULT_KEY_FILE));
  if (existsSync(path)) return { wallet: parseKey(readFileSync(path, "utf8"), path), created: false, path };
  mkdirSync(dirname(path), { recursive: true });
  const wallet = Wallet.createRandom();
  // "wx": never overwrite a key another process created a moment ago
  writeFileSync(path, `${wallet.privateKey}\n`, { mode: 0o600, flag: "wx" });
  return { wallet: new Wallet(wallet.privateKey), created: true, path };
}

function parseKey(text: string, source: string): Wallet {
  const hex = text.trim();
  try {
    return new Wallet(hex.startsWith("0x") ? hex : `0x${hex}`);
  } catch {
    throw new InvalidArgumentError(`${source} does not hold a valid private key (64 hex digits)`);
  }
}

/**
 * The operator's key, found as `efed server` finds it (--key FILE, else $EFED_SERVER_KEY, else
 * DATA_DIR/efed-server.key) but never created: a command that stakes or registers must act for the
 * key the server signs with. `efed operator key` creates it.
 */
export function loadExistingKey(file: string | undefined, dataDir: string): { wallet: Wallet; source: string } {
  if (file === undefined && (process.env.EFED_SERVER_KEY ?? "").trim() === "") {
    const path = resolve(join(dataDir, DEFAULT_KEY_FILE));
    if (!existsSync(path)) {
      throw new InvalidArgumentError(`no key: ${path} does not exist. Create it with efed operator key --data-dir ${dataDir}, or pass --key FILE / set EFED_SERVER_KEY`);
    }
  }
  const { wallet, path } = loadOrCreateKey(file, dataDir, false);
  return { wallet, source: path ?? "$EFED_SERVER_KEY" };
}
