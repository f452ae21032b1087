import { InvalidArgumentError } from "../../protocol/errors.js";
import { stepCost } from "../../protocol/payment.js";
import { ticketDomain } from "../../protocol/tickets.js";
import type { ShardConnection } from "../shardClient.js";
import type { WalletChain } from "../wallet/walletChain.js";
import { WalletError } from "../wallet/walletError.js";
import { PaymentQuery, checkQueryLimit, payEvery, type RoutePayment, type SequencePayment } from "./routePayment.js";
import { checkServer } from "./serverCheck.js";
import type { TicketLedger } from "./ticketLedger.js";
import { TicketPayer } from "./ticketPayer.js";

export interface TicketRoutePayerOptions {
  chain: WalletChain;
  ledger: TicketLedger;
  /**
   * Face value a ticket aims for, token base units (default 1 token: ≈ 100 × a redemption's gas at
   * devnet prices). A target at or below a step's cost makes every ticket certain (probability 1).
   */
  targetFaceValueWei?: bigint;
  /** Most one query (a generation, across failovers: PaymentQuery) may cost in expected value (token base units); absent: no limit. */
  maxPerQueryWei?: bigint;
}

export const DEFAULT_TICKET_FACE_VALUE_WEI = 10n ** 18n;
const MAX_SESSIONS_COSTED = 100_000;

interface PricedServer {
  connection: ShardConnection;
  server: string;
  pricePerToken: bigint;
  sessionId: string;
  /** What this session owes the server so far. */
  owed: bigint;
  /** What the tickets sent so far are worth (in expectation). */
  paid: bigint;
  /** Steps run since the last ticket, and how many the server lets run before one (payEvery). */
  unpaidSteps: number;
  every: number;
}

/**
 * The wallet paying a route with probabilistic tickets drawn on its TicketBroker deposit (the
 * alternative to Payer's channels; no transaction per server): before the first step it checks each
 * server on chain (client/payment/serverCheck.ts) and binds the session to the deposit; once a
 * server's credit is used up (payEvery: every step, or every few steps) it sends it one ticket whose
 * expected value is exactly what the steps since the last one cost, and waits until it says the
 * tickets cover what it is owed; at the end what is left. `spent` counts expected value per server.
 */
export class TicketRoutePayer implements RoutePayment {
  readonly spent = new Map<string, bigint>();
  private readonly bySession = new Map<string, bigint>();
  /** The priced servers of every open sequence, and its query: what they owe unpaid counts against its query's limit. */
  private readonly open = new Map<readonly PricedServer[], PaymentQuery>();
  private readonly payer: TicketPayer;

  constructor(private readonly o: TicketRoutePayerOptions) {
    const broker = o.chain.deployment.ticketBroker;
    if (broker === undefined) throw new InvalidArgumentError("the deployment file names no ticketBroker: pay with channels, or use a deployment that has one");
    this.payer = new TicketPayer({
      key: o.chain.wallet.signingKey,
      domain: ticketDomain(o.chain.deployment.chainId, broker),
      ledger: o.ledger,
      targetFaceValueWei: o.targetFaceValueWei ?? DEFAULT_TICKET_FACE_VALUE_WEI,
    });
  }

  get total(): bigint {
    let t = 0n;
    for (const v of this.spent.values()) t += v;
    return t;
  }

  /** What was paid (in expected value) for the work of `sessionIds`, in token base units. */
  costOf(sessionIds: readonly string[]): bigint {
    let t = 0n;
    for (const id of sessionIds) t += this.bySession.get(id) ?? 0n;
    return t;
  }

  async openSequence(connections: readonly ShardConnection[], sessionIds: readonly string[], _maxLength?: number, query = new PaymentQuery()): Promise<SequencePayment> {
    for (const id of sessionIds) query.sessions.add(id);
    const priced: PricedServer[] = [];
    for (let i = 0; i < connections.length; i++) {
      const c = connections[i]!;
      const price = await checkServer(this.o.chain, c);
      if (price === 0n) continue;
      const sessionId = sessionIds[i]!;
      const bound = await c.bindTickets(this.payer.bindMessage(0, c.info.server, sessionId, c.info.challenge));
      this.payer.accepted(c.info.server, bound);
      priced.push({ connection: c, server: c.info.server, pricePerToken: price, sessionId, owed: 0n, paid: 0n, unpaidSteps: 0, every: payEvery(c.info) });
    }
    const payAll = (due: readonly PricedServer[]): Promise<void> => Promise.all(due.map((p) => this.pay(p))).then(() => undefined);
    this.open.set(priced, query);
    return {
      beforeStep: (tokens) => this.checkLimit(priced, query, tokens),
      afterStep: (tokens) => {
        for (const p of priced) {
          p.owed += stepCost(p.pricePerToken, tokens);
          p.unpaidSteps++;
        }
        return payAll(priced.filter((p) => p.unpaidSteps >= p.every));
      },
      settle: async () => {
        try {
          await payAll(priced.filter((p) => p.owed > p.paid));
        } finally {
          this.open.delete(priced);
        }
      },
      // a failed sequence's unpaid steps are lost to their servers (tickets are not owed across bindings)
      stepFailed: () => this.open.delete(priced),
    };
  }

  /**
   * Refuses a step that would bring what its query costs (paid, owed unpaid by the query's open
   * sequences, and the step) over the per-query limit.
   */
  private checkLimit(priced: readonly PricedServer[], query: PaymentQuery, tokens: number): void {
    const step = priced.reduce((sum, p) => sum + stepCost(p.pricePerToken, tokens), 0n);
    const unpaidOf = (sequence: readonly PricedServer[]): bigint => sequence.reduce((sum, p) => sum + p.owed - p.paid, 0n);
    checkQueryLimit(this.o.maxPerQueryWei, query, step, this.open, unpaidOf, (ids) => this.costOf(ids));
  }

  /** One ticket worth what `p`'s steps since the last one cost; resolves once the server says the tickets cover what it is owed. */
  private async pay(p: PricedServer): Promise<void> {
    const { connection: c } = p;
    const amount = p.owed - p.paid;
    const target = p.owed;
    p.paid = target;
    p.unpaidSteps = 0;
    this.spent.set(p.server, (this.spent.get(p.server) ?? 0n) + amount);
    this.bySession.set(p.sessionId, (this.bySession.get(p.sessionId) ?? 0n) + amount);
    // a long-running gateway opens sessions without end: the oldest are forgotten
    if (this.bySession.size > MAX_SESSIONS_COSTED) this.bySession.delete(this.bySession.keys().next().value!);
    const paid = await c.payTicket(this.payer.payStep(0, p.server, p.sessionId, amount));
    this.payer.accepted(p.server, paid);
    if (paid.covered < target) {
      throw new WalletError("WALLET_SERVER_MISMATCH", `${c.url} says tickets cover ${paid.covered} of session ${p.sessionId} after tickets worth ${target}`);
    }
  }
}
