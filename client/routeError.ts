import { EFedError } from "../protocol/errors.js";

/** How errors name a server: its position on the route (from 1) and its URL. */
export function routePlace(index: number, routeLength: number, url: string): string {
  return `server ${index + 1} of ${routeLength} on the route (${url})`;
}

/** The route itself is wrong: servers that do not chain, or receipts that do not check out. */
export class RouteError extends EFedError {
  constructor(message: string, details?: Record<string, unknown>) {
    super("BAD_ROUTE", message, details === undefined ? {} : { details });
  }
}

/**
 * A server's receipt for a step does not check out (a hash that does not chain, a signature that is
 * not the server's): that step's output, and every output computed from it, cannot be trusted.
 */
export class ReceiptError extends RouteError {
  constructor(
    message: string,
    readonly url: string,
    /** The step whose receipt failed. */
    readonly step: bigint,
  ) {
    super(message, { url, step: step.toString() });
  }
}

/**
 * A server of the route did not deliver within its deadline: a step's output, or its receipts, or
 * an answer to open or close a session. Names the server by URL and position on the route.
 */
export class StepTimeoutError extends EFedError {
  constructor(
    readonly url: string,
    /** Position of the server on the route, from 0. */
    readonly index: number,
    readonly routeLength: number,
    /** What was awaited, e.g. "the output of step 3". */
    what: string,
    readonly timeoutMs: number,
  ) {
    super("STEP_TIMEOUT", `${routePlace(index, routeLength, url)} did not deliver ${what} within ${timeoutMs} ms`, {
      details: { url, index, routeLength, timeoutMs },
    });
  }
}
