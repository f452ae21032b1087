import { randomBytes } from "node:crypto";
import { existsSync, linkSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { Wallet, decryptKeystoreJsonSync, encryptKeystoreJson, isKeystoreJson } from "ethers";
import { InvalidArgumentError } from "../../protocol/errors.js";

/** Name of the key file a standalone server creates in its data directory. */
export const DEFAULT_KEY_FILE = "efed-server.key";

/** Holds the password of an encrypted key file: never a flag, which would land in shell history and `ps`. */
export const KEY_PASSWORD_ENV = "EFED_KEY_PASSWORD";

/**
 * The server's signing key: from `file`, else from $EFED_SERVER_KEY, else (standalone only) from
 * DATA_DIR/efed-server.key, created once with mode 0600 and reused on every restart, so receipts
 * signed before a restart can still be fetched and defended under the same address and store.
 * A chain server (`stakedKeyRequired`) must name its staked key: a new key holds no stake.
 * A key file may be an ethers JSON keystore, decrypted with `password` (default $EFED_KEY_PASSWORD).
 */
export function loadOrCreateKey(
  file: string | undefined,
  dataDir: string,
  stakedKeyRequired: boolean,
  password?: string,
): { wallet: Wallet; created: boolean; path: string | undefined } {
  if (file !== undefined) {
    if (!existsSync(file)) throw new InvalidArgumentError(`key file ${file} does not exist`);
    return { wallet: parseKey(readFileSync(file, "utf8"), file, password), created: false, path: resolve(file) };
  }
  const fromEnv = process.env.EFED_SERVER_KEY;
  if (fromEnv !== undefined && fromEnv.trim() !== "") return { wallet: parseKey(fromEnv, "EFED_SERVER_KEY", password), created: false, path: undefined };
  if (stakedKeyRequired) throw new InvalidArgumentError("a staked key is needed with --rpc: pass --key FILE or set EFED_SERVER_KEY");
  const path = resolve(join(dataDir, DEFAULT_KEY_FILE));
  if (!existsSync(path)) {
    mkdirSync(dirname(path), { recursive: true });
    const wallet = Wallet.createRandom();
    if (createOnce(path, `${wallet.privateKey}\n`)) return { wallet: new Wallet(wallet.privateKey), created: true, path };
  }
  // there already, or another server starting beside this one created it a moment ago
  return { wallet: parseKey(readFileSync(path, "utf8"), path, password), created: false, path };
}

/**
 * Creates `path` holding `text` (mode 0600) unless it exists; false when another process created it
 * first. The file appears whole or not at all (written aside, then hard-linked into place, which
 * never replaces a file): servers started together in a fresh data directory all get the one key,
 * and none reads a half-written file.
 */
function createOnce(path: string, text: string): boolean {
  const aside = `${path}.${process.pid}.${randomBytes(6).toString("hex")}.tmp`;
  writeFileSync(aside, text, { mode: 0o600, flag: "wx" });
  try {
    linkSync(aside, path);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "EEXIST") return false;
    throw err;
  } finally {
    rmSync(aside, { force: true });
  }
}

function parseKey(text: string, source: string, password: string | undefined): Wallet {
  const hex = text.trim();
  if (hex.startsWith("{")) return decryptKey(hex, source, password ?? process.env[KEY_PASSWORD_ENV]);
  try {
    return new Wallet(hex.startsWith("0x") ? hex : `0x${hex}`);
  } catch {
    throw new InvalidArgumentError(`${source} does not hold a valid private key (64 hex digits)`);
  }
}

/** Where the key of --key / $EFED_SERVER_KEY / DATA_DIR lives, and whether it is an encrypted keystore. */
function keySource(file: string | undefined, dataDir: string): { text: string; source: string } {
  if (file !== undefined) return { text: existsSync(file) ? readFileSync(file, "utf8") : "", source: file };
  const fromEnv = process.env.EFED_SERVER_KEY;
  if (fromEnv !== undefined && fromEnv.trim() !== "") return { text: fromEnv, source: "EFED_SERVER_KEY" };
  const path = resolve(join(dataDir, DEFAULT_KEY_FILE));
  if (!existsSync(path)) {
    throw new InvalidArgumentError(`no key: ${path} does not exist. Create it with efed operator key --data-dir ${dataDir}, or pass --key FILE / set EFED_SERVER_KEY`);
  }
  return { text: readFileSync(path, "utf8"), source: path };
}

/**
 * The operator's key, found as `efed server` finds it (--key FILE, else $EFED_SERVER_KEY, else
 * DATA_DIR/efed-server.key) but never created: a command that stakes or registers must act for the
 * key the server signs with. `efed operator key` creates it. An encrypted key is opened with
 * $EFED_KEY_PASSWORD, else a password asked in the terminal.
 */
export async function loadOperatorKey(file: string | undefined, dataDir: string, ask: (message: string) => Promise<string>): Promise<Wallet> {
  const { text, source } = keySource(file, dataDir);
  const encrypted = text.trim().startsWith("{");
  const fromEnv = process.env[KEY_PASSWORD_ENV];
  const password = encrypted && (fromEnv === undefined || fromEnv === "") && process.stdin.isTTY ? await ask(`password of ${source}:`) : undefined;
  return loadOrCreateKey(file, dataDir, false, password).wallet;
}

/**
 * Rewrites the plain key file at `path` as an ethers JSON keystore encrypted with `password`
 * (scrypt), mode 0600, replacing the file in one rename so a crash leaves the old or the new one.
 */
export async function encryptKeyFile(path: string, password: string): Promise<void> {
  if (password.length < 8) throw new InvalidArgumentError("the key password must be at least 8 characters");
  const text = readFileSync(path, "utf8");
  if (text.trim().startsWith("{")) throw new InvalidArgumentError(`${path} is already an encrypted keystore`);
  const wallet = parseKey(text, path, undefined);
  const json = await encryptKeystoreJson({ address: wallet.address, privateKey: wallet.privateKey }, password);
  const tmp = `${path}.encrypting`;
  writeFileSync(tmp, `${json}\n`, { mode: 0o600, flag: "wx" });
  renameSync(tmp, path);
}

function decryptKey(json: string, source: string, password: string | undefined): Wallet {
  if (!isKeystoreJson(json)) throw new InvalidArgumentError(`${source} is JSON but not an encrypted keystore (ethers JSON keystore v3)`);
  if (password === undefined || password === "") {
    throw new InvalidArgumentError(`${source} is an encrypted keystore: set ${KEY_PASSWORD_ENV} (or run efed operator in a terminal to be asked)`);
  }
  try {
    return new Wallet(decryptKeystoreJsonSync(json, password).privateKey);
  } catch {
    throw new InvalidArgumentError(`wrong password for the encrypted keystore ${source}`);
  }
}
