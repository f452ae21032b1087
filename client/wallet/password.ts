import type PasswordPrompt from "@inquirer/password";
import { WalletError } from "./walletError.js";

/** The environment variable a wallet password may come from (scripts, CI); never a command-line flag. */
export const PASSWORD_ENV = "EFED_WALLET_PASSWORD";

/**
 * The wallet's password: $EFED_WALLET_PASSWORD when set, else asked on the terminal (twice when
 * `confirm`, for a new keystore). Without either it fails, naming both ways.
 */
export async function readPassword(what: string, confirm = false): Promise<string> {
  const fromEnv = process.env[PASSWORD_ENV];
  if (fromEnv !== undefined) {
    if (fromEnv.length === 0) throw new WalletError("WALLET_NO_PASSWORD", `${PASSWORD_ENV} is set but empty`);
    return fromEnv;
  }
  if (process.stdin.isTTY !== true) {
    throw new WalletError("WALLET_NO_PASSWORD", `no password for ${what}: set ${PASSWORD_ENV}, or run in a terminal to be asked`);
  }
  const password = await prompt();
  const first = await password({ message: `Password for ${what}:`, mask: true });
  if (!confirm) return first;
  const again = await password({ message: "Repeat it:", mask: true });
  if (again !== first) throw new WalletError("WALLET_NO_PASSWORD", "the two passwords differ");
  if (first.length === 0) throw new WalletError("WALLET_NO_PASSWORD", "an empty password protects nothing");
  return first;
}

/** A secret asked on the terminal only (e.g. a key to import); `otherwise` names the non-interactive way. */
export async function askSecret(message: string, otherwise: string): Promise<string> {
  if (process.stdin.isTTY !== true) throw new WalletError("WALLET_NO_PASSWORD", `not a terminal: cannot ask for ${message}; ${otherwise}`);
  return (await prompt())({ message: `${message}:`, mask: true });
}

/** The terminal prompt, loaded only when a password is asked for (every efed command would pay for it at start). */
async function prompt(): Promise<typeof PasswordPrompt> {
  return (await import("@inquirer/password")).default;
}
