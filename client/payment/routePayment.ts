import type { ShardConnection } from "../shardClient.js";

/** Pays for one sequence's steps on a route (client/payment/payer.ts is the wallet's). */
export interface SequencePayment {
  /** Throws (and nothing is sent) when a step of `tokens` tokens would break a spending limit. */
  beforeStep(tokens: number): void;
  /** Pays every priced server of the route for the step of `tokens` tokens that just ran. */
  afterStep(tokens: number): Promise<void>;
  /** The step begun by `beforeStep` failed (it may have run on some servers, unpaid). */
  stepFailed?(): void;
}

/** What RemotePipeline asks of a payer: how to pay for the sequences it opens. */
export interface RoutePayment {
  /** Called once the sessions are open (`sessionIds[i]` on `connections[i]`), before the first step. */
  openSequence(connections: readonly ShardConnection[], sessionIds: readonly string[], maxLength: number): Promise<SequencePayment>;
}
