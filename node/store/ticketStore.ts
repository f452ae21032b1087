import { DatabaseSync } from "node:sqlite";
import type { Ticket } from "../../protocol/tickets.js";

/** A winning ticket the server holds: what it needs to redeem it, and where redemption stands. */
export interface WinningTicket {
  ticket: Ticket;
  signature: string;
  /** The server's secret the ticket wins with (revealed on chain by the redemption). */
  recipientRand: bigint;
}

export type WinnerState = "pending" | "redeemed" | "failed";

export interface StoredWinner extends WinningTicket {
  /** The ticket hash (EIP-712 digest). */
  hash: string;
  state: WinnerState;
  attempts: number;
  /** The last failure, decoded ("" when none). */
  lastError: string;
}

interface Row {
  hash: string;
  body: string;
  state: WinnerState;
  attempts: number;
  last_error: string;
}

const toJson = (w: WinningTicket): string =>
  JSON.stringify({ ...w, recipientRand: w.recipientRand.toString(), ticket: Object.fromEntries(Object.entries(w.ticket).map(([k, v]) => [k, typeof v === "bigint" ? v.toString() : v])) });

const fromRow = (r: Row): StoredWinner => {
  const b = JSON.parse(r.body) as { ticket: Record<string, string>; signature: string; recipientRand: string };
  const t = b.ticket;
  const ticket: Ticket = {
    recipient: t.recipient!,
    sender: t.sender!,
    faceValue: BigInt(t.faceValue!),
    winProb: BigInt(t.winProb!),
    senderNonce: BigInt(t.senderNonce!),
    recipientRandHash: t.recipientRandHash!,
    expiration: BigInt(t.expiration!),
    auxData: t.auxData!,
  };
  return { hash: r.hash, ticket, signature: b.signature, recipientRand: BigInt(b.recipientRand), state: r.state, attempts: r.attempts, lastError: r.last_error };
};

/**
 * The server's durable list of winning tickets, in SQLite (node:sqlite; the voucher store's file
 * works too: its own table). A winner is written before the client hears its ticket was accepted, so
 * a restart never loses one; the redeemer marks each redeemed, or failed for good with the reason.
 */
export class TicketStore {
  private constructor(private readonly db: DatabaseSync) {}

  static open(path: string): TicketStore {
    const db = new DatabaseSync(path);
    db.exec(`
      PRAGMA journal_mode = WAL;
      PRAGMA synchronous = NORMAL;
      PRAGMA busy_timeout = 5000;
      CREATE TABLE IF NOT EXISTS winning_tickets (
        hash TEXT PRIMARY KEY, body TEXT NOT NULL, state TEXT NOT NULL, attempts INTEGER NOT NULL, last_error TEXT NOT NULL
      );
    `);
    return new TicketStore(db);
  }

  /** Records a winner (again: no change). */
  add(hash: string, w: WinningTicket): void {
    this.db.prepare("INSERT OR IGNORE INTO winning_tickets (hash, body, state, attempts, last_error) VALUES (?, ?, 'pending', 0, '')").run(hash, toJson(w));
  }

  get(hash: string): StoredWinner | undefined {
    const r = this.db.prepare("SELECT * FROM winning_tickets WHERE hash = ?").get(hash) as Row | undefined;
    return r === undefined ? undefined : fromRow(r);
  }

  pending(): StoredWinner[] {
    return (this.db.prepare("SELECT * FROM winning_tickets WHERE state = 'pending' ORDER BY rowid").all() as unknown as Row[]).map(fromRow);
  }

  all(): StoredWinner[] {
    return (this.db.prepare("SELECT * FROM winning_tickets ORDER BY rowid").all() as unknown as Row[]).map(fromRow);
  }

  markRedeemed(hash: string): void {
    this.db.prepare("UPDATE winning_tickets SET state = 'redeemed', last_error = '' WHERE hash = ?").run(hash);
  }

  /** One more failed attempt; `final` marks the ticket failed for good. */
  markFailed(hash: string, error: string, final: boolean): void {
    this.db.prepare("UPDATE winning_tickets SET attempts = attempts + 1, last_error = ?, state = ? WHERE hash = ?").run(error, final ? "failed" : "pending", hash);
  }

  close(): void {
    this.db.close();
  }
}
