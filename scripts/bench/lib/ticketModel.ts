/**
 * The amortization model of probabilistic tickets (TicketBroker), beside the channels' model in
 * model.ts: what one paid query costs on chain when a client funds ONE deposit for all its servers
 * and servers redeem only winning tickets.
 *
 *   gas per query = k·post/Q + fund/C + exit/C + k·w·redeem
 *
 *   - k·post/Q: the commitment posts, as for channels (they do not depend on how clients pay).
 *   - fund/C: one `fundWithPermit` per client funds C queries, whatever k is.
 *   - exit/C: `unlock` + `withdraw`, only for a client that takes its remainder back after C queries.
 *   - k·w·redeem: w is the expected number of winning tickets per query per server. The client signs
 *     one ticket per step for exactly what the step owes (protocol/tickets.ts `ticketTerms`): face
 *     value owed·2^j close to the target face value, win probability 2^-j, so w = Σ over the steps of
 *     owed/faceValue. The target face value is `redemptionsPerFace` (Livepeer: 100) times what one
 *     redemption costs in tokens, so redemptions spend about 1/redemptionsPerFace of what is paid on gas.
 */
import { ticketTerms } from "../../../protocol/tickets.js";

export interface TicketCosts {
  /** `fundWithPermit` of a client that funded before (the normal top-up path). */
  fund: number;
  /** `fundWithPermit` of a client's first funding (fresh storage) or after a withdrawal. */
  fundFirst: number;
  /** `fund` of a client that approved the broker once without limit (no permit in the call). */
  fundApproved: number;
  /** `redeemWinningTicket` paid from the deposit. */
  redeem: number;
  /** `unlock` + `withdraw`. */
  exit: number;
  /** Steady-state `postBatch` (as in model.ts). */
  postBatch: number;
}

/** What the money side of the model assumes; every figure is stated in the docs next to the table. */
export interface TicketAssumptions {
  /** Gas price, gwei. */
  gasPriceGwei: number;
  /** Token price in the chain's native coin (ETH per EFED). */
  ethPerEfed: number;
  /** A server's price per token, EFED base units (18 decimals). */
  pricePerTokenWei: bigint;
  /** Tokens of the prompt (one prefill step) and decode steps (one token each) per query. */
  promptTokens: number;
  decodeSteps: number;
  /** Target face value as a multiple of one redemption's cost in tokens (Livepeer: 100). */
  redemptionsPerFace: number;
}

export interface TicketScenario {
  label: string;
  /** Servers in the pipeline (k). */
  servers: number;
  /** Queries a server serves between two commitment posts (Q). */
  queriesPerBatch: number;
  /** Queries one funding transaction pays for (C). */
  queriesPerDeposit: number;
  /** Whether the client also unlocks and withdraws after its C queries. */
  withExit: boolean;
  /** How the client funds: a later `fundWithPermit` top-up, its first one (fresh storage, after a
   *  withdrawal too), or `fund` under a standing unlimited approval given once per wallet. */
  funding: "permit" | "first" | "approved";
}

export interface TicketPerQuery {
  /** Target face value, EFED base units. */
  targetFaceWei: bigint;
  /** Expected winning tickets per query per server (w). */
  winnersPerQuery: number;
  commitments: number;
  funding: number;
  exit: number;
  redemptions: number;
  total: number;
}

const WEI = 10n ** 18n;

/** The face value to aim for: redemptionsPerFace × redeem gas × gas price, in EFED base units. */
export function targetFaceValueWei(redeemGas: number, a: TicketAssumptions): bigint {
  const efedPerGas = (a.gasPriceGwei * 1e-9) / a.ethPerEfed;
  return BigInt(Math.round(a.redemptionsPerFace * redeemGas * efedPerGas * 1e18));
}

/** Expected winning tickets per query per server: Σ over the query's steps of owed / faceValue. */
export function winnersPerQuery(targetFaceWei: bigint, a: TicketAssumptions): number {
  const expected = (tokens: number): number => {
    const owed = a.pricePerTokenWei * BigInt(tokens);
    const { faceValue } = ticketTerms(owed, targetFaceWei);
    return Number((owed * WEI) / faceValue) / 1e18;
  };
  return expected(a.promptTokens) + a.decodeSteps * expected(1);
}

export function ticketPerQuery(s: TicketScenario, g: TicketCosts, a: TicketAssumptions): TicketPerQuery {
  const targetFaceWei = targetFaceValueWei(g.redeem, a);
  const w = winnersPerQuery(targetFaceWei, a);
  const commitments = (s.servers * g.postBatch) / s.queriesPerBatch;
  const fundGas = s.funding === "first" ? g.fundFirst : s.funding === "approved" ? g.fundApproved : g.fund;
  const funding = fundGas / s.queriesPerDeposit;
  const exit = s.withExit ? g.exit / s.queriesPerDeposit : 0;
  const redemptions = s.servers * w * g.redeem;
  return { targetFaceWei, winnersPerQuery: w, commitments, funding, exit, redemptions, total: commitments + funding + exit + redemptions };
}
