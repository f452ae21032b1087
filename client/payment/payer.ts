import { formatEther } from "ethers";
import { InvalidArgumentError } from "../../protocol/errors.js";
import { signBinding, stepCost } from "../../protocol/payment.js";
import type { ShardConnection } from "../shardClient.js";
import type { Ledger } from "../wallet/ledger.js";
import { channelsDomain, openChannel, type WalletChain } from "../wallet/walletChain.js";
import { WalletError } from "../wallet/walletError.js";
import { PaymentQuery, checkQueryLimit, nextStepCost, payEvery, type RoutePayment, type SequencePayment } from "./routePayment.js";
import { checkServer } from "./serverCheck.js";

export interface PayerOptions {
  chain: WalletChain;
  ledger: Ledger;
  /** A new channel's deposit pays for this many tokens at its server's price (default 100000: a channel serves many queries). */
  channelTokens?: number;
  /** Most one query (a generation, across failovers: PaymentQuery) may cost (token base units); absent: no limit. */
  maxPerQueryWei?: bigint;
  /** Most the wallet signs per UTC day, counted in its ledger across processes; absent: no limit. */
  maxPerDayWei?: bigint;
  /** The clock (tests). Default: the system's. */
  now?: () => Date;
}

export const DEFAULT_CHANNEL_TOKENS = 100_000;
/** Sessions whose cost `costOf` can still tell. */
const MAX_SESSIONS_COSTED = 100_000;

/** One priced server of a route, as the payer pays it. */
interface PricedServer {
  connection: ShardConnection;
  server: string;
  pricePerToken: bigint;
  channelId: string;
  /** This sequence's session at the server, to which its payments are counted (see costOf). */
  sessionId: string;
  /** What the session's steps since its last voucher cost, how many they are, and how many the server lets run (payEvery). */
  unpaid: bigint;
  unpaidSteps: number;
  every: number;
}

/**
 * The wallet paying a route: before the first step it checks each server on chain (a registered,
 * eligible server for the variant and layer range it announces, at the price it announces, and a
 * receipt domain that is the client's deployment's, not what the server says), opens or reuses a
 * channel to it, and binds the session to that channel. Once a server's credit is used up (payEvery:
 * after every step, or every few steps) it signs the cumulative voucher for exactly what the steps
 * since the last one cost (client/wallet/ledger.ts; a step's vouchers to several servers in one
 * ledger transaction) and waits until the server has stored it; at the end, what is left.
 * `spent` says what this payer paid, per server.
 */
export class Payer implements RoutePayment {
  readonly spent = new Map<string, bigint>();
  /** What was paid for each session (a sequence's sessions, one per priced server). */
  private readonly bySession = new Map<string, bigint>();
  /** Per channel: what each session's steps sent and not yet paid cost (other sessions' are no gap at binding). */
  private readonly running = new Map<string, Map<string, bigint>>();
  /** Per channel: the session whose last step failed unpaid (a gap at binding pays it, counted to that session). */
  private readonly unpaidStepOf = new Map<string, string>();
  /** The priced servers of every open sequence, and its query: what they owe unpaid counts against the limits of every step. */
  private readonly open = new Map<readonly PricedServer[], PaymentQuery>();
  private readonly channelTokens: bigint;
  private readonly now: () => Date;

  constructor(private readonly o: PayerOptions) {
    const tokens = o.channelTokens ?? DEFAULT_CHANNEL_TOKENS;
    if (!Number.isSafeInteger(tokens) || tokens < 1) throw new InvalidArgumentError(`payer channelTokens must be a positive integer, got ${tokens}`);
    this.channelTokens = BigInt(tokens);
    this.now = o.now ?? (() => new Date());
  }

  /** What was paid for the work of `sessionIds` (e.g. one request's sequences), in token base units. */
  costOf(sessionIds: readonly string[]): bigint {
    let t = 0n;
    for (const id of sessionIds) t += this.bySession.get(id) ?? 0n;
    return t;
  }

  /** What this payer signed over, in all. */
  get total(): bigint {
    let t = 0n;
    for (const v of this.spent.values()) t += v;
    return t;
  }

  async openSequence(connections: readonly ShardConnection[], sessionIds: readonly string[], maxLength: number, query = new PaymentQuery()): Promise<SequencePayment> {
    for (const id of sessionIds) query.sessions.add(id);
    const priced: PricedServer[] = [];
    for (let i = 0; i < connections.length; i++) {
      const c = connections[i]!;
      const price = await checkServer(this.o.chain, c);
      if (price === 0n) continue;
      const channelId = await this.channelFor(c, price, maxLength);
      await this.bind(c, sessionIds[i]!, channelId, price);
      priced.push({ connection: c, server: c.info.server, pricePerToken: price, channelId, sessionId: sessionIds[i]!, unpaid: 0n, unpaidSteps: 0, every: payEvery(c.info) });
    }
    this.open.set(priced, query);
    return {
      beforeStep: (tokens) => {
        this.checkLimits(priced, query, tokens);
        for (const p of priced) this.runningOn(p.channelId).set(p.sessionId, p.unpaid + stepCost(p.pricePerToken, tokens));
      },
      afterStep: (tokens) => {
        for (const p of priced) {
          p.unpaid += stepCost(p.pricePerToken, tokens);
          p.unpaidSteps++;
        }
        return this.payDue(priced.filter((p) => p.unpaidSteps >= p.every));
      },
      settle: async () => {
        try {
          await this.payDue(priced.filter((p) => p.unpaid > 0n));
        } finally {
          this.open.delete(priced);
        }
      },
      stepFailed: () => {
        // what the sequence owes is the next binding's gap now (paid then, and counted then)
        this.open.delete(priced);
        for (const p of priced) if (this.stopRunning(p)) this.unpaidStepOf.set(p.channelId, p.sessionId);
      },
    };
  }

  /** An open channel to the server with room for the session, or a new one. */
  private async channelFor(c: ShardConnection, price: bigint, maxLength: number): Promise<string> {
    const { chain, ledger } = this.o;
    const need = stepCost(price, maxLength);
    const existing = ledger.findOpen(chain.deployment.chainId, chain.deployment.channels, c.info.server, need);
    if (existing !== undefined) return existing.channelId;
    const tokens = this.channelTokens > BigInt(maxLength) ? this.channelTokens : BigInt(maxLength);
    return (await openChannel(chain, ledger, c.info.server, price * tokens)).channelId;
  }

  /**
   * Binds the session to the channel. A server owed more than the ledger signed and this payer's
   * other sessions on the channel have running (steps that failed before their voucher, here or in a
   * process that stopped) is paid the difference if it is at most the server's credit (payEvery) in
   * steps of its largest; more than that is refused.
   */
  private async bind(c: ShardConnection, sessionId: string, channelId: string, price: bigint): Promise<void> {
    const { chain, ledger } = this.o;
    const signature = signBinding(chain.wallet.signingKey, channelsDomain(chain), { channelId, sessionId, server: c.info.server, challenge: c.info.challenge });
    const bound = await c.bindChannel(sessionId, channelId, signature);
    // read in one turn with the ledger: a step's voucher is signed in the turn its running entry goes
    const signed = ledger.get(channelId)!.cumulative;
    let running = 0n;
    for (const cost of this.running.get(channelId)?.values() ?? []) running += cost;
    if (bound.owed <= signed + running) return;
    const gap = bound.owed - signed - running;
    const credit = payEvery(c.info);
    if (gap > BigInt(credit) * stepCost(price, c.info.maxStepTokens)) {
      throw new WalletError(
        "WALLET_SERVER_MISMATCH",
        `${c.url} claims ${bound.owed} owed on channel ${channelId}, this wallet signed ${signed}: more than ${credit} step${credit === 1 ? "" : "s"} apart, not paid`,
      );
    }
    // the step that failed is counted to its session, when it was this payer's (a failover's old route)
    const failedSession = this.unpaidStepOf.get(channelId);
    this.unpaidStepOf.delete(channelId);
    await this.pay(c, channelId, gap, failedSession, undefined);
  }

  /**
   * Refuses a step whose cost would break a limit: with what the query has cost so far and its open
   * sequences owe unpaid, its per-query limit; with what every open sequence (of any query) owes
   * unpaid, the wallet's daily limit.
   */
  private checkLimits(priced: readonly PricedServer[], query: PaymentQuery, tokens: number): void {
    const step = priced.reduce((sum, p) => sum + stepCost(p.pricePerToken, tokens), 0n);
    const unpaidOf = (sequence: readonly PricedServer[]): bigint => sequence.reduce((sum, p) => sum + p.unpaid, 0n);
    const { maxPerQueryWei, maxPerDayWei, ledger } = this.o;
    checkQueryLimit(maxPerQueryWei, query, step, this.open, unpaidOf, (ids) => this.costOf(ids));
    const day = this.day();
    if (maxPerDayWei !== undefined) {
      let cost = step;
      for (const sequence of this.open.keys()) cost += unpaidOf(sequence);
      if (ledger.spentOn(day) + cost > maxPerDayWei) {
        throw new WalletError(
          "WALLET_SPENDING_LIMIT",
          `${nextStepCost(step, cost)}: ${day}'s spending would be ${formatEther(ledger.spentOn(day) + cost)}, over the daily limit of ${formatEther(maxPerDayWei)}`,
          { limit: "day", day },
        );
      }
    }
  }

  /** Vouchers for what the `due` servers' unpaid steps cost, signed in one ledger transaction, then sent. */
  private async payDue(due: readonly PricedServer[]): Promise<void> {
    if (due.length === 0) return;
    const amounts = due.map((p) => p.unpaid);
    for (const p of due) {
      this.stopRunning(p);
      p.unpaid = 0n;
      p.unpaidSteps = 0;
    }
    const vouchers = this.sign(due.map((p, i) => ({ channelId: p.channelId, amount: amounts[i]! })));
    await Promise.all(due.map((p, i) => this.send(p.connection, p.channelId, amounts[i]!, vouchers[i]!, p.sessionId, p.sessionId)));
  }

  private runningOn(channelId: string): Map<string, bigint> {
    let m = this.running.get(channelId);
    if (m === undefined) this.running.set(channelId, (m = new Map()));
    return m;
  }

  /** Forgets the session's running step on its channel; true when it had one. */
  private stopRunning(p: PricedServer): boolean {
    const m = this.running.get(p.channelId);
    const had = m?.delete(p.sessionId) ?? false;
    if (m?.size === 0) this.running.delete(p.channelId);
    return had;
  }

  /**
   * Signs (in the ledger's transaction) and sends the next voucher on `channelId`, `amount` more,
   * counted to `costSession` in costOf (when known: not for a gap another payer or process left) and
   * sent as paying a step of `paidSession` (absent for a gap: the server covers its oldest debt).
   */
  private async pay(c: ShardConnection, channelId: string, amount: bigint, costSession: string | undefined, paidSession: string | undefined): Promise<void> {
    await this.send(c, channelId, amount, this.sign([{ channelId, amount }])[0]!, costSession, paidSession);
  }

  /** The next vouchers on these channels, in one ledger transaction (all or none). */
  private sign(items: readonly { channelId: string; amount: bigint }[]): { cumulativeAmount: bigint; signature: string }[] {
    const { chain, ledger } = this.o;
    return ledger.signNextAll(items, chain.wallet.signingKey, channelsDomain(chain), { day: this.day(), maxPerDayWei: this.o.maxPerDayWei });
  }

  /** Counts a signed voucher to its server (and session) and sends it; resolves once the server holds it. */
  private async send(
    c: ShardConnection,
    channelId: string,
    amount: bigint,
    v: { cumulativeAmount: bigint; signature: string },
    costSession: string | undefined,
    paidSession: string | undefined,
  ): Promise<void> {
    this.spent.set(c.info.server, (this.spent.get(c.info.server) ?? 0n) + amount);
    if (costSession !== undefined) {
      this.bySession.set(costSession, (this.bySession.get(costSession) ?? 0n) + amount);
      // a long-running gateway opens sessions without end: the oldest are forgotten (their requests are long answered)
      if (this.bySession.size > MAX_SESSIONS_COSTED) this.bySession.delete(this.bySession.keys().next().value!);
    }
    const paid = await c.pay(channelId, v.cumulativeAmount, v.signature, paidSession);
    if (paid.covered !== v.cumulativeAmount) {
      throw new WalletError("WALLET_SERVER_MISMATCH", `${c.url} says channel ${channelId} is covered to ${paid.covered} after a voucher for ${v.cumulativeAmount}`);
    }
  }

  private day(): string {
    return this.now().toISOString().slice(0, 10);
  }
}
