import { InvalidArgumentError } from "../protocol/errors.js";

/**
 * How long a client waits for the servers of a route, and how far receipt checking may lag behind
 * generation. One validated object: every default lives here.
 */
export interface RouteTimingOptions {
  /** Milliseconds to connect to a server and receive its info frame (default 5,000). */
  connectTimeoutMs: number;
  /**
   * Milliseconds a server gets for its part of one step, before the per-token allowance (default
   * 4,000: a decode step's deadline stays under 5 s, the bound for noticing a hung server).
   * Relaying, each server gets it for its own step; forwarding, the deadline restarts each time a
   * server of the route shows progress (its receipt for the step arrives), so it is what each server
   * gets too. The same deadline bounds opening and closing sessions and waiting for receipts.
   */
  stepTimeoutMs: number;
  /** Milliseconds added to a step's deadline per token in the step, for long prefills (default 20). */
  stepTimeoutPerTokenMs: number;
  /**
   * Steps beyond the route's longest signed run (the largest `signEvery` its servers announce) whose
   * receipts may still lack a verified signature when the next step is sent (default 4). Hashes are
   * compared as receipts arrive, and receipts may be at most one step late; so a server whose
   * receipts carry a wrong hash from step k gets no step after k + 1, and one whose signature over
   * a run ending at step k is wrong gets no step after k + N (a missing one: none after k + 1).
   */
  maxUnverifiedSteps: number;
}

export const DEFAULT_ROUTE_TIMING: RouteTimingOptions = {
  connectTimeoutMs: 5_000,
  stepTimeoutMs: 4_000,
  stepTimeoutPerTokenMs: 20,
  maxUnverifiedSteps: 4,
};

/** The defaults with `given` applied, each checked: an error names the option, its value and what is accepted. */
export function routeTiming(given: Partial<RouteTimingOptions>): RouteTimingOptions {
  const o = { ...DEFAULT_ROUTE_TIMING };
  for (const key of Object.keys(DEFAULT_ROUTE_TIMING) as (keyof RouteTimingOptions)[]) {
    const value = given[key];
    if (value === undefined) continue;
    const min = key === "stepTimeoutPerTokenMs" || key === "maxUnverifiedSteps" ? 0 : 1;
    if (!Number.isSafeInteger(value) || value < min) throw new InvalidArgumentError(`${key} must be an integer >= ${min}, got ${value}`);
    o[key] = value;
  }
  return o;
}

/** The deadline of one server's part of a step of `tokens` tokens. */
export function stepDeadlineMs(o: RouteTimingOptions, tokens: number): number {
  return o.stepTimeoutMs + tokens * o.stepTimeoutPerTokenMs;
}
