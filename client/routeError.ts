import { EFedError } from "../protocol/errors.js";

/** The route itself is wrong: servers that do not chain, or receipts that do not check out. */
export class RouteError extends EFedError {
  constructor(message: string, details?: Record<string, unknown>) {
    super("BAD_ROUTE", message, details === undefined ? {} : { details });
  }
}
