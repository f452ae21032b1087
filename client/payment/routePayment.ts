import { formatEther } from "ethers";
import type { ServerInfo } from "../../protocol/wire.js";
import type { ShardConnection } from "../shardClient.js";
import { WalletError } from "../wallet/walletError.js";

/** Pays for one sequence's steps on a route (client/payment/payer.ts is the wallet's). */
export interface SequencePayment {
  /** Throws (and nothing is sent) when a step of `tokens` tokens would break a spending limit. */
  beforeStep(tokens: number): void;
  /**
   * Counts the step of `tokens` tokens that just ran, and pays every priced server whose credit it
   * used up (see payEvery) for all its steps not yet paid.
   */
  afterStep(tokens: number): Promise<void>;
  /** Pays every priced server what the sequence's steps still owe it (before the sequence closes). */
  settle(): Promise<void>;
  /** The step begun by `beforeStep` failed (it may have run on some servers, unpaid). */
  stepFailed?(): void;
}

/**
 * One query: a generation's sequence and the sequences failover opens in its place
 * (client/failover.ts). A payer's per-query limit counts what the query's sessions were paid and
 * what its open sequences still owe, and nothing of other queries: a gateway answering many requests
 * from one wallet limits each of them, not their sum.
 */
export class PaymentQuery {
  /** Sessions of the query's sequences, on every route it ran on. */
  readonly sessions = new Set<string>();
}

/** What RemotePipeline asks of a payer: how to pay for the sequences it opens. */
export interface RoutePayment {
  /**
   * Called once the sessions are open (`sessionIds[i]` on `connections[i]`), before the first step.
   * The sequence belongs to `query` (default: a query of its own).
   */
  openSequence(connections: readonly ShardConnection[], sessionIds: readonly string[], maxLength: number, query?: PaymentQuery): Promise<SequencePayment>;
}

/**
 * Refuses (WALLET_SPENDING_LIMIT, `details.limit` "query") a step of cost `step` that would bring its
 * query over `max`: what the query's sessions were paid (`paidOf`), what its open sequences (those of
 * `open` that belong to it) owe unpaid, and the step. Channels and tickets alike.
 */
export function checkQueryLimit<S>(
  max: bigint | undefined,
  query: PaymentQuery,
  step: bigint,
  open: ReadonlyMap<S, PaymentQuery>,
  unpaidOf: (sequence: S) => bigint,
  paidOf: (sessionIds: readonly string[]) => bigint,
): void {
  if (max === undefined) return;
  let withUnpaid = step;
  for (const [sequence, q] of open) if (q === query) withUnpaid += unpaidOf(sequence);
  const total = paidOf([...query.sessions]) + withUnpaid;
  if (total > max) {
    throw new WalletError("WALLET_SPENDING_LIMIT", `${nextStepCost(step, withUnpaid)}: the query would cost ${formatEther(total)}, over its limit of ${formatEther(max)}`, { limit: "query" });
  }
}

/**
 * Most steps a payer lets run unpaid on one server, whatever credit the server announces: it bounds
 * what a server may later claim was left unpaid (Payer's binding).
 */
export const MAX_PAY_EVERY_STEPS = 64;

/**
 * How many steps of a session a payer lets a priced server run before paying it, for all of them in
 * one voucher or ticket: the credit the server announces (a server takes a session's next step only
 * while fewer of its steps are unpaid), at least 1 and at most MAX_PAY_EVERY_STEPS.
 */
export function payEvery(info: Pick<ServerInfo, "creditSteps">): number {
  return Math.min(MAX_PAY_EVERY_STEPS, Math.max(1, info.creditSteps));
}

/** How a spending-limit refusal names the next step's cost, and its cost with the steps not yet paid when that is more. */
export function nextStepCost(step: bigint, withUnpaid: bigint): string {
  return `the next step costs ${formatEther(step)} EFED${withUnpaid === step ? "" : ` (${formatEther(withUnpaid)} with the steps not yet paid)`}`;
}
