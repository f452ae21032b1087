/**
 * The amortization model of the gas benchmark: how much on-chain gas one paid query costs once
 * commitment batches and payment channels spread the fixed transaction costs.
 *
 * A query is one generation of N tokens through a pipeline of k servers. Per query, the on-chain
 * cost has two parts, both paid once per server in the pipeline:
 *
 *   - Commitments. A server posts one Merkle root per interval, whatever the number of receipts under
 *     it (the root is 32 bytes, so `postBatch` gas does not depend on it). If it serves Q queries in
 *     that interval, each of them carries post/Q.
 *   - Channel lifecycle. The client opens a channel to each server (openWithPermit), the server
 *     redeems R vouchers over the channel's life, the last one together with the close
 *     (redeemAndClose), and the channel serves C queries. Each carries lifecycle(R)/C.
 *
 *     gas per query = k·post/Q + k·lifecycle(R)/C
 *     lifecycle(R)  = open + (R − 1)·redeem + redeemAndClose      (server closes, the default)
 *                   = open + R·redeem + startClose + finishClose  (client closes, the alternative)
 *
 * The first redemption of a channel writes its `paid` slot from zero, so it costs more than a later
 * one; lifecycle() uses the measured first/later figures where each applies rather than one average.
 */

export interface MeasuredCosts {
  /** Steady-state `postBatch` gas (not the server's first batch). */
  postBatch: number;
  /** Opening a later channel with `openWithPermit` (the normal client path). */
  open: number;
  /** A channel's first `redeem` (paid 0 → x). */
  redeemFirst: number;
  /** A later `redeem` (paid x → y). */
  redeemLater: number;
  /** `redeemAndClose` on a channel never redeemed before (R = 1). */
  redeemAndCloseFirst: number;
  /** `redeemAndClose` after earlier redemptions (R > 1). */
  redeemAndCloseLater: number;
  /** `startClose` + `finishClose`, the client-driven close. */
  clientClose: number;
}

/** Who ends the channel: the server with redeemAndClose, or the client with startClose + finishClose. */
export type Closer = "server" | "client";

export interface Scenario {
  /** Row label, e.g. "regular client". */
  label: string;
  /** Servers in the pipeline (k). */
  servers: number;
  /** Tokens per query (N): used only for the per-token figure and the posting interval. */
  tokens: number;
  /** Queries one server serves between two of its commitment posts (Q). */
  queriesPerBatch: number;
  /** Queries over one client↔server channel's life (C). */
  queriesPerChannel: number;
  /** Voucher redemptions over the channel's life (R ≥ 1), the last one included. */
  redemptions: number;
  closer: Closer;
}

export interface PerQuery {
  /** On-chain gas of one channel's whole life, for one server. */
  lifecycle: number;
  /** k·post/Q. */
  commitments: number;
  /** k·lifecycle/C. */
  channels: number;
  total: number;
  perToken: number;
  /** Smallest C that brings the total under `target`, or undefined if the commitments alone reach it. */
  minChannelForTarget: number | undefined;
}

/** Gas of one client↔server channel from open to close, with `redemptions` redemptions in all. */
export function lifecycle(g: MeasuredCosts, redemptions: number, closer: Closer): number {
  if (!Number.isInteger(redemptions) || redemptions < 1) throw new Error(`R must be a positive integer, got ${redemptions}`);
  if (closer === "client") return g.open + g.redeemFirst + (redemptions - 1) * g.redeemLater + g.clientClose;
  if (redemptions === 1) return g.open + g.redeemAndCloseFirst;
  return g.open + g.redeemFirst + (redemptions - 2) * g.redeemLater + g.redeemAndCloseLater;
}

export function perQuery(s: Scenario, g: MeasuredCosts, target: number): PerQuery {
  const life = lifecycle(g, s.redemptions, s.closer);
  const commitments = (s.servers * g.postBatch) / s.queriesPerBatch;
  const channels = (s.servers * life) / s.queriesPerChannel;
  const total = commitments + channels;
  const headroom = target - commitments;
  // total < target  ⇔  k·lifecycle / C < headroom  ⇔  C > k·lifecycle / headroom
  const minChannelForTarget = headroom > 0 ? Math.floor((s.servers * life) / headroom) + 1 : undefined;
  return { lifecycle: life, commitments, channels, total, perToken: total / s.tokens, minChannelForTarget };
}

/** Queries per second one server completes: concurrent sessions × tokens/s per session ÷ N. */
export function serverQueriesPerSecond(concurrentSessions: number, tokensPerSecondPerSession: number, tokensPerQuery: number): number {
  return (concurrentSessions * tokensPerSecondPerSession) / tokensPerQuery;
}
