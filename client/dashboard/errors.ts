import { EFedError } from "../../protocol/errors.js";

/** The dashboard could not read what it shows (the chain did not answer in time, a file is missing). */
export class DashboardError extends EFedError {
  constructor(message: string, details?: Record<string, unknown>) {
    super("DASHBOARD", message, details === undefined ? {} : { details });
  }
}
