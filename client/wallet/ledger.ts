import { DatabaseSync, type StatementSync } from "node:sqlite";
import { statementCache, withSynchronous, writeTransaction } from "../../protocol/sqlite.js";
import type { SigningKey, TypedDataDomain } from "ethers";
import { signVoucherSync } from "../../protocol/voucher.js";
import { WalletError } from "./walletError.js";

export type ChannelState = "open" | "closing" | "closed";

/** A channel this wallet opened, as its ledger keeps it. Amounts in token base units. */
export interface LedgerChannel {
  channelId: string;
  chainId: bigint;
  /** The PaymentChannels contract. */
  contract: string;
  server: string;
  deposit: bigint;
  /** The cumulative amount of the last voucher signed (0: none). */
  cumulative: bigint;
  /** That voucher's signature ("" when none). */
  signature: string;
  state: ChannelState;
}

interface Row {
  channel_id: string;
  chain_id: string;
  contract: string;
  server: string;
  deposit: string;
  cumulative: string;
  signature: string;
  state: ChannelState;
}

const fromRow = (r: Row): LedgerChannel => ({
  channelId: r.channel_id,
  chainId: BigInt(r.chain_id),
  contract: r.contract,
  server: r.server,
  deposit: BigInt(r.deposit),
  cumulative: BigInt(r.cumulative),
  signature: r.signature,
  state: r.state,
});

/** A receipt the wallet paid for: the evidence it can dispute with. */
export interface LedgerReceipt {
  sessionId: string;
  step: bigint;
  server: string;
  tokens: number;
  /**
   * The server's EIP-712 ReceiptChain signature over its session's receipts through `chainLastStep`
   * (protocol/receiptChain.ts): with the session's receipts 0..chainLastStep, proof the server signed this one.
   */
  signature: string;
  chainLastStep: bigint;
  /** The chain head the signature is over. */
  chainHead: string;
  /** The whole receipt as JSON (bigints as strings). */
  receipt: string;
}

/**
 * The wallet's durable state in SQLite (node:sqlite), beside its keystore: its channels, the last
 * voucher signed on each, the receipts it paid for, and what it spent per day. Signing the next
 * voucher reads the last cumulative amount, signs and writes the new one inside one write
 * transaction (BEGIN IMMEDIATE), so two processes sharing the wallet take turns and can never sign
 * two different vouchers for the same cumulative amount.
 */
export class Ledger {
  private readonly statement: (sql: string) => StatementSync;

  private constructor(private readonly db: DatabaseSync) {
    this.statement = statementCache(db);
  }

  /** The ledger of the keystore `walletPath`: `walletPath`.ledger.sqlite. */
  static pathFor(walletPath: string): string {
    return `${walletPath}.ledger.sqlite`;
  }

  static open(path: string): Ledger {
    const db = new DatabaseSync(path);
    db.exec(`
      PRAGMA journal_mode = WAL;
      PRAGMA synchronous = FULL;
      PRAGMA busy_timeout = 10000;
      CREATE TABLE IF NOT EXISTS channels (
        channel_id TEXT PRIMARY KEY, chain_id TEXT NOT NULL, contract TEXT NOT NULL, server TEXT NOT NULL,
        deposit TEXT NOT NULL, cumulative TEXT NOT NULL, signature TEXT NOT NULL, state TEXT NOT NULL
      );
      CREATE TABLE IF NOT EXISTS receipts (
        session_id TEXT NOT NULL, step TEXT NOT NULL, server TEXT NOT NULL, tokens INTEGER NOT NULL,
        signature TEXT NOT NULL, receipt TEXT NOT NULL, PRIMARY KEY (session_id, step, server)
      );
      CREATE TABLE IF NOT EXISTS spending (day TEXT PRIMARY KEY, amount TEXT NOT NULL);
    `);
    const receiptColumns = db.prepare(`PRAGMA table_info(receipts)`).all() as { name: string }[];
    if (!receiptColumns.some((c) => c.name === "chain_last_step")) {
      // a ledger from before receipt chains (protocol 5): its rows hold one signature per receipt, and no chain
      db.exec(`ALTER TABLE receipts ADD COLUMN chain_last_step TEXT; ALTER TABLE receipts ADD COLUMN chain_head TEXT;`);
    }
    return new Ledger(db);
  }

  addChannel(c: Omit<LedgerChannel, "cumulative" | "signature" | "state">): void {
    this.statement(`INSERT INTO channels VALUES (?, ?, ?, ?, ?, '0', '', 'open')`)
      .run(c.channelId, c.chainId.toString(), c.contract, c.server, c.deposit.toString());
  }

  get(channelId: string): LedgerChannel | undefined {
    const row = this.statement(`SELECT * FROM channels WHERE channel_id = ?`).get(channelId) as Row | undefined;
    return row === undefined ? undefined : fromRow(row);
  }

  /** The wallet's channels on one chain's PaymentChannels contract. */
  list(chainId: bigint, contract: string): LedgerChannel[] {
    const rows = this.statement(`SELECT * FROM channels WHERE chain_id = ? AND contract = ? ORDER BY rowid`).all(chainId.toString(), contract) as unknown as Row[];
    return rows.map(fromRow);
  }

  /** An open channel to `server` with at least `minRemaining` of its deposit unspent, the fullest first. */
  findOpen(chainId: bigint, contract: string, server: string, minRemaining: bigint): LedgerChannel | undefined {
    const open = this.list(chainId, contract).filter((c) => c.server === server && c.state === "open" && c.deposit - c.cumulative >= minRemaining);
    return open.sort((a, b) => (b.deposit - b.cumulative > a.deposit - a.cumulative ? 1 : -1))[0];
  }

  setDeposit(channelId: string, deposit: bigint): void {
    this.statement(`UPDATE channels SET deposit = ? WHERE channel_id = ?`).run(deposit.toString(), channelId);
  }

  setState(channelId: string, state: ChannelState): void {
    this.statement(`UPDATE channels SET state = ? WHERE channel_id = ?`).run(state, channelId);
  }

  /** What the wallet spent on `day` (YYYY-MM-DD, UTC). */
  spentOn(day: string): bigint {
    const row = this.statement(`SELECT amount FROM spending WHERE day = ?`).get(day) as { amount: string } | undefined;
    return BigInt(row?.amount ?? "0");
  }

  /**
   * Signs the next voucher on `channelId`, `amount` above the last one, as one transaction: read the
   * last cumulative amount, check the deposit and the day's limit, sign, write. Returns the voucher.
   */
  signNext(
    channelId: string,
    amount: bigint,
    key: SigningKey,
    domain: TypedDataDomain,
    o: { day: string; maxPerDayWei?: bigint | undefined },
  ): { cumulativeAmount: bigint; signature: string } {
    return this.signNextAll([{ channelId, amount }], key, domain, o)[0]!;
  }

  /**
   * Signs the next voucher on each channel, each `amount` above its last one, in one transaction that
   * waits for the disk once: a step's vouchers to every priced server of its route (an fsync per
   * voucher was ~1.3 ms each here). All or none: a channel without the deposit, or a day's limit
   * broken by the sum, signs nothing. Returns the vouchers in `items`' order.
   */
  signNextAll(
    items: readonly { channelId: string; amount: bigint }[],
    key: SigningKey,
    domain: TypedDataDomain,
    o: { day: string; maxPerDayWei?: bigint | undefined },
  ): { cumulativeAmount: bigint; signature: string }[] {
    for (const { amount } of items) if (amount <= 0n) throw new WalletError("WALLET_INSUFFICIENT_DEPOSIT", `a voucher must add a positive amount, got ${amount}`);
    return writeTransaction(this.db, () => {
      let spent = this.spentOn(o.day);
      const vouchers = items.map(({ channelId, amount }) => {
        const c = this.get(channelId);
        if (c === undefined) throw new WalletError("WALLET_UNKNOWN_CHANNEL", `channel ${channelId} is not in this wallet's ledger`);
        const cumulativeAmount = c.cumulative + amount;
        if (cumulativeAmount > c.deposit) {
          throw new WalletError("WALLET_INSUFFICIENT_DEPOSIT", `channel ${channelId} to ${c.server} has ${c.deposit - c.cumulative} left of its deposit ${c.deposit}, ${amount} is owed: top it up`);
        }
        spent += amount;
        if (o.maxPerDayWei !== undefined && spent > o.maxPerDayWei) {
          throw new WalletError("WALLET_SPENDING_LIMIT", `paying ${amount} would bring ${o.day}'s spending to ${spent}, over the daily limit of ${o.maxPerDayWei}`, { limit: "day", day: o.day });
        }
        const signature = signVoucherSync(key, domain, { channelId, cumulativeAmount });
        this.statement(`UPDATE channels SET cumulative = ?, signature = ? WHERE channel_id = ?`).run(cumulativeAmount.toString(), signature, channelId);
        return { cumulativeAmount, signature };
      });
      this.statement(`INSERT INTO spending VALUES (?, ?) ON CONFLICT(day) DO UPDATE SET amount = excluded.amount`).run(o.day, spent.toString());
      return vouchers;
    });
  }

  /**
   * Keeps a receipt the wallet paid for. Written without waiting for the disk (one per server and
   * step: an fsync each was 0.6 ms of the client's event loop here): it survives the process stopping,
   * but an operating-system crash or power loss may drop the last few. Vouchers and channels are
   * written durably.
   */
  recordReceipt(r: LedgerReceipt): void {
    withSynchronous(this.db, "NORMAL", "FULL", () =>
      this.statement(`INSERT OR IGNORE INTO receipts VALUES (?, ?, ?, ?, ?, ?, ?, ?)`)
        .run(r.sessionId, r.step.toString(), r.server, r.tokens, r.signature, r.receipt, r.chainLastStep.toString(), r.chainHead),
    );
  }

  /** Per server: the receipts paid for (steps) and the tokens they cover. */
  receiptTotals(): Map<string, { steps: number; tokens: number }> {
    const rows = this.statement(`SELECT server, COUNT(*) AS steps, SUM(tokens) AS tokens FROM receipts GROUP BY server`).all() as { server: string; steps: number; tokens: number }[];
    return new Map(rows.map((r) => [r.server, { steps: r.steps, tokens: r.tokens }]));
  }

  receiptCount(): number {
    return (this.statement(`SELECT COUNT(*) AS n FROM receipts`).get() as { n: number }).n;
  }

  close(): void {
    if (this.db.isOpen) this.db.close();
  }
}
