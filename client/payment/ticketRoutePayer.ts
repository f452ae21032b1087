import { formatEther } from "ethers";
import { InvalidArgumentError } from "../../protocol/errors.js";
import { stepCost } from "../../protocol/payment.js";
import { ticketDomain } from "../../protocol/tickets.js";
import type { ShardConnection } from "../shardClient.js";
import type { WalletChain } from "../wallet/walletChain.js";
import { WalletError } from "../wallet/walletError.js";
import type { RoutePayment, SequencePayment } from "./routePayment.js";
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
  /** Most this payer hands out in expected value over all its sequences (token base units); absent: no limit. */
  maxPerQueryWei?: bigint;
}

export const DEFAULT_TICKET_FACE_VALUE_WEI = 10n ** 18n;
const MAX_SESSIONS_COSTED = 100_000;

interface PricedServer {
  connection: ShardConnection;
  server: string;
  pricePerToken: bigint;
  sessionId: string;
  /** What this session owes the server so far, and what the tickets sent cover. */
  owed: bigint;
}

/**
 * The wallet paying a route with probabilistic tickets drawn on its TicketBroker deposit (the
 * alternative to Payer's channels; no transaction per server): before the first step it checks each
 * server on chain (client/payment/serverCheck.ts) and binds the session to the deposit; after each
 * step it sends every priced server one ticket whose expected value is exactly price × tokens, and
 * waits until each says the tickets cover what it is owed. `spent` counts expected value per server.
 */
export class TicketRoutePayer implements RoutePayment {
  readonly spent = new Map<string, bigint>();
  private readonly bySession = new Map<string, bigint>();
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

  async openSequence(connections: readonly ShardConnection[], sessionIds: readonly string[]): Promise<SequencePayment> {
    const priced: PricedServer[] = [];
    for (let i = 0; i < connections.length; i++) {
      const c = connections[i]!;
      const price = await checkServer(this.o.chain, c);
      if (price === 0n) continue;
      const sessionId = sessionIds[i]!;
      const bound = await c.bindTickets(this.payer.bindMessage(0, c.info.server, sessionId, c.info.challenge));
      this.payer.accepted(c.info.server, bound);
      priced.push({ connection: c, server: c.info.server, pricePerToken: price, sessionId, owed: 0n });
    }
    return {
      beforeStep: (tokens) => this.checkLimit(priced, tokens),
      afterStep: (tokens) => Promise.all(priced.map((p) => this.pay(p, stepCost(p.pricePerToken, tokens)))).then(() => undefined),
    };
  }

  private checkLimit(priced: readonly PricedServer[], tokens: number): void {
    const cost = priced.reduce((sum, p) => sum + stepCost(p.pricePerToken, tokens), 0n);
    const max = this.o.maxPerQueryWei;
    if (max !== undefined && this.total + cost > max) {
      throw new WalletError("WALLET_SPENDING_LIMIT", `the next step costs ${formatEther(cost)} EFED: the query would cost ${formatEther(this.total + cost)}, over its limit of ${formatEther(max)}`);
    }
  }

  private async pay(p: PricedServer, amount: bigint): Promise<void> {
    const { connection: c } = p;
    p.owed += amount;
    this.spent.set(p.server, (this.spent.get(p.server) ?? 0n) + amount);
    this.bySession.set(p.sessionId, (this.bySession.get(p.sessionId) ?? 0n) + amount);
    // a long-running gateway opens sessions without end: the oldest are forgotten
    if (this.bySession.size > MAX_SESSIONS_COSTED) this.bySession.delete(this.bySession.keys().next().value!);
    const paid = await c.payTicket(this.payer.payStep(0, p.server, p.sessionId, amount));
    this.payer.accepted(p.server, paid);
    if (paid.covered < p.owed) {
      throw new WalletError("WALLET_SERVER_MISMATCH", `${c.url} says tickets cover ${paid.covered} of session ${p.sessionId} after tickets worth ${p.owed}`);
    }
  }
}
