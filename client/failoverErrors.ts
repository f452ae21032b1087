import { EFedError } from "../protocol/errors.js";
import { ReceiptError, StepTimeoutError } from "./routeError.js";

/**
 * The URL of the server a route failure is pinned on, or undefined when the failure is not one
 * server's (then failing over would not help). Every error the route raises for a server names it:
 * timeouts and bad receipts by field, link failures and route errors in `details.url`.
 */
export function failedServerUrl(err: unknown): string | undefined {
  if (err instanceof StepTimeoutError || err instanceof ReceiptError) return err.url;
  if (err instanceof EFedError && typeof err.details?.url === "string") return err.details.url;
  return undefined;
}
