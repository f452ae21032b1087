import type { VerifiedReceipt } from "../receiptChecker.js";

/**
 * What a gateway's route did, counted from the receipts its servers signed (so only work the
 * client checked counts): tokens per server and sequences opened. Fed by `record` (the route's
 * onReceipt); read by the dashboard, which turns totals into rates between its samples.
 */
export class GatewayCounters {
  private readonly tokensByServer = new Map<string, number>();
  private sessionCount = 0;

  /** Counts one verified receipt: its tokens for its server; step 0 of the route's first hop opens a sequence. */
  readonly record = (r: VerifiedReceipt): void => {
    const server = r.receipt.server.toLowerCase();
    this.tokensByServer.set(server, (this.tokensByServer.get(server) ?? 0) + r.receipt.tokens);
    if (r.receipt.step === 0n && r.receipt.firstLayer === 0) this.sessionCount++;
  };

  /** Tokens each server (lowercase address) processed so far. */
  tokens(): ReadonlyMap<string, number> {
    return this.tokensByServer;
  }

  get sessions(): number {
    return this.sessionCount;
  }

  get totalTokens(): number {
    let total = 0;
    for (const n of this.tokensByServer.values()) total += n;
    return total;
  }
}
