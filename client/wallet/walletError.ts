import { EFedError } from "../../protocol/errors.js";

/** Codes of the wallet's errors: what a user did or has that stops the wallet. */
export type WalletErrorCode =
  | "WALLET_MISSING"
  | "WALLET_EXISTS"
  | "WALLET_BAD_PASSWORD"
  | "WALLET_BAD_FILE"
  | "WALLET_NO_PASSWORD"
  | "WALLET_INSUFFICIENT_BALANCE"
  | "WALLET_INSUFFICIENT_DEPOSIT"
  | "WALLET_SPENDING_LIMIT"
  | "WALLET_SERVER_NOT_ELIGIBLE"
  | "WALLET_SERVER_MISMATCH"
  | "WALLET_UNKNOWN_CHANNEL";

/** A wallet operation refused, with a message that names the value and what was expected. Nothing was sent when it is thrown. */
export class WalletError extends EFedError {
  constructor(code: WalletErrorCode, message: string, details?: Record<string, unknown>) {
    super(code, message, details === undefined ? {} : { details });
  }
}
