import { DatabaseSync, type StatementSync } from "node:sqlite";
import { computeAddress, getAddress, type SigningKey, type TypedDataDomain } from "ethers";
import { InvalidArgumentError } from "../../protocol/errors.js";
import { statementCache, withSynchronous, writeTransaction } from "../../protocol/sqlite.js";
import { expectedValueScaled, signTicketSync, type Ticket } from "../../protocol/tickets.js";

/** What the wallet has handed one server in tickets on one broker. */
export interface TicketTotals {
  recipient: string;
  tickets: number;
  /** Σ faceValue · P(win), token base units (rounded down; exact for tickets from `ticketTerms`). */
  expectedValue: bigint;
}

/**
 * Sender nonces taken from the file per durable write. A process that stops skips the rest of its
 * block (nonces need only be distinct, not consecutive); one fsync per this many tickets instead of
 * one per ticket, which on this machine was 1.5 ms per priced server and step.
 */
export const NONCE_BLOCK = 256;

/**
 * The wallet's ticket state in SQLite (node:sqlite; the wallet ledger's file works: its own tables):
 * the next free sender nonce per chain, broker and sender, and per server the tickets signed and
 * their expected value.
 *
 * Nonces are reserved in blocks of NONCE_BLOCK, each reservation a write transaction (BEGIN
 * IMMEDIATE) made durable before any nonce of it is used, so two processes sharing a wallet, or one
 * that restarts after a crash or a power loss, never sign two tickets with the same nonce: each
 * ticket hash is distinct, and a server refuses a nonce it has seen. The per-server counts are the
 * wallet's own tally, written per ticket without waiting for the disk: they survive the process
 * stopping, but an operating-system crash or power loss may drop the last few.
 */
export class TicketLedger {
  /** Per "chain|broker|sender": the nonces of the block this handle reserved and has not used yet. */
  private readonly reserved = new Map<string, { next: bigint; end: bigint }>();
  private readonly senders = new WeakMap<SigningKey, string>();
  private readonly statement: (sql: string) => StatementSync;

  private constructor(private readonly db: DatabaseSync) {
    this.statement = statementCache(db);
  }

  static open(path: string): TicketLedger {
    const db = new DatabaseSync(path);
    db.exec(`
      PRAGMA journal_mode = WAL;
      PRAGMA synchronous = NORMAL;
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
   * Takes the next unused nonce of `key`'s address on `domain`'s chain and broker (reserving a new
   * block first when this handle has none left), builds the ticket with it, signs it and counts it.
   * Returns the ticket and its signature; a nonce is used up only once its ticket is signed.
   */
  signNext(key: SigningKey, domain: TypedDataDomain, build: (senderNonce: bigint) => Ticket): { ticket: Ticket; signature: string } {
    const chainId = String(domain.chainId ?? "");
    const broker = String(domain.verifyingContract ?? "");
    if (chainId === "" || broker === "") throw new InvalidArgumentError("the ticket domain must name a chainId and a verifyingContract");
    const block = this.block(chainId, broker.toLowerCase(), this.senderOf(key));
    const ticket = build(block.next);
    const signature = signTicketSync(key, domain, ticket);
    block.next++; // used once the ticket is signed: a build or signature that fails leaves it for the next ticket
    writeTransaction(this.db, () => this.count(chainId, broker.toLowerCase(), getAddress(ticket.recipient), expectedValueScaled(ticket.faceValue, ticket.winProb)));
    return { ticket, signature };
  }

  /** Tickets signed per server on `chainId`'s `broker`. */
  totals(chainId: bigint, broker: string): TicketTotals[] {
    const rows = this.statement("SELECT recipient, tickets, expected_scaled FROM ticket_totals WHERE chain_id = ? AND broker = ? ORDER BY recipient")
      .all(chainId.toString(), broker.toLowerCase()) as unknown as { recipient: string; tickets: number; expected_scaled: string }[];
    return rows.map((r) => ({ recipient: r.recipient, tickets: r.tickets, expectedValue: BigInt(r.expected_scaled) >> 256n }));
  }

  close(): void {
    this.db.close();
  }

  /** The unused nonces this handle holds for the sender, after reserving a new block (durably) if none are left. */
  private block(chainId: string, broker: string, sender: string): { next: bigint; end: bigint } {
    const key = `${chainId}|${broker}|${sender}`;
    const held = this.reserved.get(key);
    if (held !== undefined && held.next < held.end) return held;
    // durable before any nonce of the block is used
    const fresh = withSynchronous(this.db, "FULL", "NORMAL", () =>
      writeTransaction(this.db, () => {
        const row = this.statement("SELECT next_nonce FROM ticket_nonces WHERE chain_id = ? AND broker = ? AND sender = ?").get(chainId, broker, sender) as
          | { next_nonce: string }
          | undefined;
        const next = row === undefined ? 1n : BigInt(row.next_nonce);
        const end = next + BigInt(NONCE_BLOCK);
        this.statement(
          "INSERT INTO ticket_nonces (chain_id, broker, sender, next_nonce) VALUES (?, ?, ?, ?) ON CONFLICT (chain_id, broker, sender) DO UPDATE SET next_nonce = excluded.next_nonce",
        ).run(chainId, broker, sender, end.toString());
        return { next, end };
      }),
    );
    this.reserved.set(key, fresh);
    return fresh;
  }

  private senderOf(key: SigningKey): string {
    let sender = this.senders.get(key);
    if (sender === undefined) this.senders.set(key, (sender = computeAddress(key.publicKey)));
    return sender;
  }

  private count(chainId: string, broker: string, recipient: string, scaled: bigint): void {
    const row = this.statement("SELECT tickets, expected_scaled FROM ticket_totals WHERE chain_id = ? AND broker = ? AND recipient = ?").get(chainId, broker, recipient) as
      | { tickets: number; expected_scaled: string }
      | undefined;
    this.statement(
      "INSERT INTO ticket_totals (chain_id, broker, recipient, tickets, expected_scaled) VALUES (?, ?, ?, ?, ?) ON CONFLICT (chain_id, broker, recipient) DO UPDATE SET tickets = excluded.tickets, expected_scaled = excluded.expected_scaled",
    ).run(chainId, broker, recipient, (row?.tickets ?? 0) + 1, ((row === undefined ? 0n : BigInt(row.expected_scaled)) + scaled).toString());
  }
}
