import { DatabaseSync, type StatementSync } from "node:sqlite";
import { statementCache, writeTransaction } from "../../protocol/sqlite.js";

/** A payment channel as this server keeps it: what the chain said, what it is owed, the best voucher it holds. */
export interface ChannelRecord {
  channelId: string;
  client: string;
  deposit: bigint;
  /** Everything this server did on the channel, at its price (all sessions, all restarts). */
  owed: bigint;
  /** The highest cumulative amount of an accepted voucher (0: none yet). */
  covered: bigint;
  /** That voucher's signature ("" when none). */
  signature: string;
  /** The cumulative amount redeemed on chain so far. */
  redeemed: bigint;
  /** When the client started closing it (unix seconds; 0: not closing). */
  closeReadyAt: number;
}

interface Row {
  channel_id: string;
  client: string;
  deposit: string;
  owed: string;
  covered: string;
  signature: string;
  redeemed: string;
  close_ready_at: number;
}

const fromRow = (r: Row): ChannelRecord => ({
  channelId: r.channel_id,
  client: r.client,
  deposit: BigInt(r.deposit),
  owed: BigInt(r.owed),
  covered: BigInt(r.covered),
  signature: r.signature,
  redeemed: BigInt(r.redeemed),
  closeReadyAt: r.close_ready_at,
});

/**
 * The server's durable record of payments, in SQLite (node:sqlite), beside its receipts (the same
 * file works: its own tables): per channel what it is owed and the best voucher it accepted, and a
 * log of every voucher accepted. A voucher is written before the client hears it was accepted, so a
 * restart never loses money the server was promised. Amounts are decimal strings (u256).
 */
export class VoucherStore {
  private closed = false;

  private readonly statement: (sql: string) => StatementSync;

  private constructor(private readonly db: DatabaseSync) {
    this.statement = statementCache(db);
  }

  static open(path: string): VoucherStore {
    const db = new DatabaseSync(path);
    db.exec(`
      PRAGMA journal_mode = WAL;
      PRAGMA synchronous = NORMAL;
      PRAGMA busy_timeout = 5000;
      CREATE TABLE IF NOT EXISTS payment_channels (
        channel_id TEXT PRIMARY KEY, client TEXT NOT NULL, deposit TEXT NOT NULL, owed TEXT NOT NULL,
        covered TEXT NOT NULL, signature TEXT NOT NULL, redeemed TEXT NOT NULL, close_ready_at INTEGER NOT NULL
      );
      CREATE TABLE IF NOT EXISTS payment_vouchers (
        channel_id TEXT NOT NULL, cumulative TEXT NOT NULL, signature TEXT NOT NULL, accepted_at_ms INTEGER NOT NULL,
        PRIMARY KEY (channel_id, cumulative)
      );
    `);
    return new VoucherStore(db);
  }

  get(channelId: string): ChannelRecord | undefined {
    const row = this.statement(`SELECT * FROM payment_channels WHERE channel_id = ?`).get(channelId) as Row | undefined;
    return row === undefined ? undefined : fromRow(row);
  }

  /** Records a channel first seen (its chain state), keeping what is already known of it. */
  track(channelId: string, client: string, deposit: bigint, redeemed: bigint, closeReadyAt: number): ChannelRecord {
    this.statement(`INSERT INTO payment_channels VALUES (?, ?, ?, '0', '0', '', ?, ?)
         ON CONFLICT(channel_id) DO UPDATE SET deposit = excluded.deposit, close_ready_at = excluded.close_ready_at`)
      .run(channelId, client, deposit.toString(), redeemed.toString(), closeReadyAt);
    return this.get(channelId)!;
  }

  setOwed(channelId: string, owed: bigint): void {
    this.statement(`UPDATE payment_channels SET owed = ? WHERE channel_id = ?`).run(owed.toString(), channelId);
  }

  /** Stores an accepted voucher (the caller checked it covers more than before). */
  accept(channelId: string, cumulative: bigint, signature: string, nowMs: number): void {
    writeTransaction(this.db, () => {
      this.statement(`UPDATE payment_channels SET covered = ?, signature = ? WHERE channel_id = ?`).run(cumulative.toString(), signature, channelId);
      this.statement(`INSERT OR IGNORE INTO payment_vouchers VALUES (?, ?, ?, ?)`).run(channelId, cumulative.toString(), signature, nowMs);
    });
  }

  markRedeemed(channelId: string, redeemed: bigint): void {
    this.statement(`UPDATE payment_channels SET redeemed = ? WHERE channel_id = ?`).run(redeemed.toString(), channelId);
  }

  markClosing(channelId: string, closeReadyAt: number): void {
    this.statement(`UPDATE payment_channels SET close_ready_at = ? WHERE channel_id = ?`).run(closeReadyAt, channelId);
  }

  /** Channels holding a voucher not yet redeemed in full. */
  unredeemed(): ChannelRecord[] {
    const rows = this.statement(`SELECT * FROM payment_channels WHERE signature != ''`).all() as unknown as Row[];
    return rows.map(fromRow).filter((c) => c.covered > c.redeemed);
  }

  /** Every voucher accepted on `channelId`, oldest first. */
  vouchers(channelId: string): { cumulative: bigint; signature: string }[] {
    const rows = this.statement(`SELECT cumulative, signature FROM payment_vouchers WHERE channel_id = ?`).all(channelId) as { cumulative: string; signature: string }[];
    return rows.map((r) => ({ cumulative: BigInt(r.cumulative), signature: r.signature })).sort((a, b) => (a.cumulative < b.cumulative ? -1 : 1));
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.db.close();
  }
}
