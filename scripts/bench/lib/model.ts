/**
 * The amortization model of the gas benchmark: how much on-chain gas one paid query costs once
 * batching (commitments) and payment channels (vouchers) spread the fixed transaction costs.
 *
 * A query is one generation of `tokens` tokens through a pipeline of `servers` servers. Every
 * server signs one receipt per step it computes (ReceiptLib: a prefill step, then one decode step
 * per further token), so a query leaves `tokens` receipts with each server. Each server
 *   - posts one commitment batch per `receiptsPerBatch` receipts (all sessions mixed),
 *   - redeems one voucher per `queriesPerRedeem` queries on the client's channel to it,
 *   - sees that channel opened and closed once per `queriesPerChannel` queries.
 */

export interface MeasuredCosts {
  /** Steady-state `postBatch` gas (not the server's first batch). */
  postBatch: number;
  /** A later `redeem` on a channel (not its first). */
  redeem: number;
  /** Opening a channel, approval included (the dearer of approve+open and openWithPermit). */
  open: number;
  /** Closing a channel (the dearer of closeByServer and startClose+finishClose). */
  close: number;
}

export interface Scenario {
  /** Servers in the pipeline (k). */
  servers: number;
  /** Tokens generated per query (N): also the number of steps, hence receipts, per server. */
  tokens: number;
  /** Receipts per commitment batch (B). */
  receiptsPerBatch: number;
  /** Queries per voucher redemption, per channel (R). */
  queriesPerRedeem: number;
  /** Queries per channel lifetime: one open + one close (C). */
  queriesPerChannel: number;
}

export interface PerQuery {
  receipts: number;
  commitments: number;
  vouchers: number;
  channels: number;
  total: number;
  perToken: number;
  /** Smallest B that brings the total under `target`, or undefined if vouchers + channels alone reach it. */
  minBatchForTarget: number | undefined;
}

export function perQuery(s: Scenario, g: MeasuredCosts, target: number): PerQuery {
  const receipts = s.servers * s.tokens;
  const commitments = (receipts * g.postBatch) / s.receiptsPerBatch;
  const vouchers = (s.servers * g.redeem) / s.queriesPerRedeem;
  const channels = (s.servers * (g.open + g.close)) / s.queriesPerChannel;
  const total = commitments + vouchers + channels;
  const headroom = target - vouchers - channels;
  // total < target  ⇔  receipts·post / B < headroom  ⇔  B > receipts·post / headroom
  const minBatchForTarget = headroom > 0 ? Math.floor((receipts * g.postBatch) / headroom) + 1 : undefined;
  return { receipts, commitments, vouchers, channels, total, perToken: total / s.tokens, minBatchForTarget };
}
