import { DatabaseSync } from "node:sqlite";
import { computeAddress, getAddress, type SigningKey, type TypedDataDomain } from "ethers";
import { InvalidArgumentError } from "../../protocol/errors.js";
import { expectedValueScaled, signTicketSync, type Ticket } from "../../protocol/tickets.js";

/** What the wallet has handed one server in tickets on one broker. */
export interface TicketTotals {
  recipient: string;
  tickets: number;
  /** Σ faceValue · P(win), token base units (rounded down; exact for tickets from `ticketTerms`). */
  expectedValue: bigint;
}

/**
 * The wallet's ticket state in SQLite (node:sqlite; the wallet ledger's file works: its own tables):
 * the next sender nonce per chain, broker and sender, and per server the tickets signed and their
 * expected value. Reserving a nonce, signing and counting happen in one write transaction (BEGIN
 * IMMEDIATE), so two processes sharing a wallet never sign two tickets with the same nonce: each
 * ticket hash is distinct, and a server refuses a nonce it has seen.
 */
export class TicketLedger {
  private constructor(private readonly db: DatabaseSync) {}

  static open(path: string): TicketLedger {
    const db = new DatabaseSync(path);
    db.exec(`
      PRAGMA journal_mode = WAL;
      PRAGMA synchronous = FULL;
      PRAGMA busy_timeout = 10000;
      CREATE TABLE IF NOT EXISTS ticket_nonces (
        chain_id TEXT NOT NULL, broker TEXT NOT NULL, sender TEXT NOT NULL, next_nonce TEXT NOT NULL,
        PRIMARY KEY (chain_id, broker, sender)
      );
      CREATE TABLE IF NOT EXISTS ticket_totals (
        chain_id TEXT NOT NULL, broker TEXT NOT NULL, recipient TEXT NOT NULL, tickets INTEGER NOT NULL, expected_scaled TEXT NOT NULL,
        PRIMARY KEY (chain_id, broker, recipient)
      );
    `);
    return new TicketLedger(db);
  }

  /**
   * Takes the next nonce of `key`'s address on `domain`'s chain and broker, builds the ticket with it,
   * signs it and counts it, atomically. Returns the ticket and its signature.
   */
  signNext(key: SigningKey, domain: TypedDataDomain, build: (senderNonce: bigint) => Ticket): { ticket: Ticket; signature: string } {
    const chainId = String(domain.chainId ?? "");
    const broker = String(domain.verifyingContract ?? "");
    if (chainId === "" || broker === "") throw new InvalidArgumentError("the ticket domain must name a chainId and a verifyingContract");
    this.db.exec("BEGIN IMMEDIATE");
    try {
      const ticket = build(this.reserveNonce(chainId, broker.toLowerCase(), key));
      const signature = signTicketSync(key, domain, ticket);
      this.count(chainId, broker.toLowerCase(), getAddress(ticket.recipient), expectedValueScaled(ticket.faceValue, ticket.winProb));
      this.db.exec("COMMIT");
      return { ticket, signature };
    } catch (err) {
      this.db.exec("ROLLBACK");
      throw err;
    }
  }

  /** Tickets signed per server on `chainId`'s `broker`. */
  totals(chainId: bigint, broker: string): TicketTotals[] {
    const rows = this.db
      .prepare("SELECT recipient, tickets, expected_scaled FROM ticket_totals WHERE chain_id = ? AND broker = ? ORDER BY recipient")
      .all(chainId.toString(), broker.toLowerCase()) as unknown as { recipient: string; tickets: number; expected_scaled: string }[];
    return rows.map((r) => ({ recipient: r.recipient, tickets: r.tickets, expectedValue: BigInt(r.expected_scaled) >> 256n }));
  }

  close(): void {
    this.db.close();
  }

  private reserveNonce(chainId: string, broker: string, key: SigningKey): bigint {
    const sender = computeAddress(key.publicKey);
    const row = this.db.prepare("SELECT next_nonce FROM ticket_nonces WHERE chain_id = ? AND broker = ? AND sender = ?").get(chainId, broker, sender) as
      | { next_nonce: string }
      | undefined;
    const nonce = row === undefined ? 1n : BigInt(row.next_nonce);
    this.db
      .prepare("INSERT INTO ticket_nonces (chain_id, broker, sender, next_nonce) VALUES (?, ?, ?, ?) ON CONFLICT (chain_id, broker, sender) DO UPDATE SET next_nonce = excluded.next_nonce")
      .run(chainId, broker, sender, (nonce + 1n).toString());
    return nonce;
  }

  private count(chainId: string, broker: string, recipient: string, scaled: bigint): void {
    const row = this.db.prepare("SELECT tickets, expected_scaled FROM ticket_totals WHERE chain_id = ? AND broker = ? AND recipient = ?").get(chainId, broker, recipient) as
      | { tickets: number; expected_scaled: string }
      | undefined;
    this.db
      .prepare(
        "INSERT INTO ticket_totals (chain_id, broker, recipient, tickets, expected_scaled) VALUES (?, ?, ?, ?, ?) ON CONFLICT (chain_id, broker, recipient) DO UPDATE SET tickets = excluded.tickets, expected_scaled = excluded.expected_scaled",
      )
      .run(chainId, broker, recipient, (row?.tickets ?? 0) + 1, ((row === undefined ? 0n : BigInt(row.expected_scaled)) + scaled).toString());
  }
}
