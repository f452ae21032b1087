import { DatabaseSync } from "node:sqlite";

/** Outcome prefix of a batch to try again (its server was unreachable). */
export const RETRY = "retry:";

/** What the verifier concluded about one sampled receipt. */
export type ReceiptVerdict = "pass" | "fail" | "withheld";

export interface AuditRecord {
  leaf: string;
  batchId: bigint;
  server: string;
  verdict: ReceiptVerdict;
  reason: string;
  auditedAtMs: number;
}

/** A dispute this verifier takes part in: as the challenger, or as a drawn committee member. */
export interface DisputeRecord {
  disputeId: bigint;
  role: "challenger" | "member";
  batchId: bigint;
  leaf: string;
  /** Members only: the vote re-execution gave, its salt, and how far it got on chain. */
  vote?: { serverAtFault: boolean; salt: string; committed: boolean; revealed: boolean };
  settled: boolean;
}

interface DisputeRow {
  dispute_id: string;
  role: "challenger" | "member";
  batch_id: string;
  leaf: string;
  server_at_fault: number | null;
  salt: string | null;
  committed: number;
  revealed: number;
  settled: number;
}

/**
 * The verifier's durable memory, in SQLite (node:sqlite): the last block whose batches were read,
 * the batches handled, every sampled receipt's verdict (a receipt is never audited twice), and the
 * disputes it opened or sits on, with each vote's salt (lost, a committed vote could never be
 * revealed and its stake would be penalized), and the batches whose passes it recorded on chain
 * (AuditLedger takes one record per verifier and batch).
 */
export class AuditState {
  private constructor(
    private readonly db: DatabaseSync,
    readonly path: string,
  ) {}

  static open(path: string): AuditState {
    const db = new DatabaseSync(path);
    db.exec(`
      PRAGMA journal_mode = WAL;
      PRAGMA synchronous = FULL;
      CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
      CREATE TABLE IF NOT EXISTS batches (batch_id TEXT PRIMARY KEY, server TEXT NOT NULL, outcome TEXT NOT NULL, handled_at_ms INTEGER NOT NULL);
      CREATE TABLE IF NOT EXISTS audits (
        leaf TEXT PRIMARY KEY, batch_id TEXT NOT NULL, server TEXT NOT NULL,
        verdict TEXT NOT NULL, reason TEXT NOT NULL, audited_at_ms INTEGER NOT NULL
      );
      CREATE TABLE IF NOT EXISTS disputes (
        dispute_id TEXT PRIMARY KEY, role TEXT NOT NULL, batch_id TEXT NOT NULL, leaf TEXT NOT NULL,
        server_at_fault INTEGER, salt TEXT, committed INTEGER NOT NULL DEFAULT 0, revealed INTEGER NOT NULL DEFAULT 0,
        settled INTEGER NOT NULL DEFAULT 0
      );
      CREATE TABLE IF NOT EXISTS pass_records (batch_id TEXT PRIMARY KEY, passes INTEGER NOT NULL, reward TEXT NOT NULL);
    `);
    return new AuditState(db, path);
  }

  /** The next block whose events of kind `name` are still to be read (undefined: never read). */
  cursor(name: "batches" | "committees"): number | undefined {
    const row = this.db.prepare("SELECT value FROM meta WHERE key = ?").get(`next:${name}`) as { value: string } | undefined;
    return row === undefined ? undefined : Number(row.value);
  }

  setCursor(name: "batches" | "committees", block: number): void {
    this.db.prepare("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value").run(`next:${name}`, String(block));
  }

  /** Whether the batch is done with (audited or skipped for good; a batch to retry is not). */
  batchHandled(batchId: bigint): boolean {
    const row = this.db.prepare("SELECT outcome FROM batches WHERE batch_id = ?").get(batchId.toString()) as { outcome: string } | undefined;
    return row !== undefined && !row.outcome.startsWith(RETRY);
  }

  /** Batches whose server could not be reached, to try again. */
  batchesToRetry(): bigint[] {
    const rows = this.db.prepare("SELECT batch_id FROM batches WHERE outcome LIKE ? ORDER BY CAST(batch_id AS INTEGER)").all(`${RETRY}%`) as { batch_id: string }[];
    return rows.map((r) => BigInt(r.batch_id));
  }

  /** Marks a batch done: `outcome` says how (audited, skipped and why); one starting with RETRY is tried again. */
  markBatch(batchId: bigint, server: string, outcome: string, nowMs = Date.now()): void {
    this.db.prepare("INSERT OR REPLACE INTO batches (batch_id, server, outcome, handled_at_ms) VALUES (?, ?, ?, ?)").run(batchId.toString(), server, outcome, nowMs);
  }

  audit(leaf: string): AuditRecord | undefined {
    const row = this.db.prepare("SELECT * FROM audits WHERE leaf = ?").get(leaf.toLowerCase()) as
      | { leaf: string; batch_id: string; server: string; verdict: ReceiptVerdict; reason: string; audited_at_ms: number }
      | undefined;
    if (row === undefined) return undefined;
    return { leaf: row.leaf, batchId: BigInt(row.batch_id), server: row.server, verdict: row.verdict, reason: row.reason, auditedAtMs: row.audited_at_ms };
  }

  recordAudit(r: AuditRecord): void {
    this.db
      .prepare("INSERT OR IGNORE INTO audits (leaf, batch_id, server, verdict, reason, audited_at_ms) VALUES (?, ?, ?, ?, ?, ?)")
      .run(r.leaf.toLowerCase(), r.batchId.toString(), r.server, r.verdict, r.reason, r.auditedAtMs);
  }

  /** Receipts audited, by verdict. */
  auditCounts(): Record<ReceiptVerdict, number> {
    const counts: Record<ReceiptVerdict, number> = { pass: 0, fail: 0, withheld: 0 };
    for (const row of this.db.prepare("SELECT verdict, COUNT(*) AS n FROM audits GROUP BY verdict").all() as { verdict: ReceiptVerdict; n: number }[]) {
      counts[row.verdict] = row.n;
    }
    return counts;
  }

  /** The passes of batch `batchId` recorded on chain and the reward they earned (undefined: none recorded). */
  passesRecorded(batchId: bigint): { passes: number; reward: bigint } | undefined {
    const row = this.db.prepare("SELECT passes, reward FROM pass_records WHERE batch_id = ?").get(batchId.toString()) as { passes: number; reward: string } | undefined;
    return row === undefined ? undefined : { passes: row.passes, reward: BigInt(row.reward) };
  }

  markPassesRecorded(batchId: bigint, passes: number, reward: bigint): void {
    this.db.prepare("INSERT OR REPLACE INTO pass_records (batch_id, passes, reward) VALUES (?, ?, ?)").run(batchId.toString(), passes, reward.toString());
  }

  dispute(disputeId: bigint): DisputeRecord | undefined {
    const row = this.db.prepare("SELECT * FROM disputes WHERE dispute_id = ?").get(disputeId.toString()) as DisputeRow | undefined;
    return row === undefined ? undefined : fromRow(row);
  }

  /** The dispute this verifier opened or sits on about the receipt `leaf`, if any. */
  disputeOfLeaf(leaf: string): bigint | undefined {
    const row = this.db.prepare("SELECT dispute_id FROM disputes WHERE leaf = ?").get(leaf.toLowerCase()) as { dispute_id: string } | undefined;
    return row === undefined ? undefined : BigInt(row.dispute_id);
  }

  /** Disputes not yet seen settled. */
  openDisputes(): DisputeRecord[] {
    return (this.db.prepare("SELECT * FROM disputes WHERE settled = 0 ORDER BY CAST(dispute_id AS INTEGER)").all() as unknown as DisputeRow[]).map(fromRow);
  }

  recordDispute(d: Pick<DisputeRecord, "disputeId" | "role" | "batchId" | "leaf">): void {
    this.db
      .prepare("INSERT OR IGNORE INTO disputes (dispute_id, role, batch_id, leaf) VALUES (?, ?, ?, ?)")
      .run(d.disputeId.toString(), d.role, d.batchId.toString(), d.leaf.toLowerCase());
  }

  /** Keeps the vote and its salt before the commitment is sent (so a crash after sending can still reveal). */
  recordVote(disputeId: bigint, serverAtFault: boolean, salt: string): void {
    this.db.prepare("UPDATE disputes SET server_at_fault = ?, salt = ? WHERE dispute_id = ?").run(serverAtFault ? 1 : 0, salt, disputeId.toString());
  }

  markVote(disputeId: bigint, step: "committed" | "revealed"): void {
    this.db.prepare(`UPDATE disputes SET ${step} = 1 WHERE dispute_id = ?`).run(disputeId.toString());
  }

  markSettled(disputeId: bigint): void {
    this.db.prepare("UPDATE disputes SET settled = 1 WHERE dispute_id = ?").run(disputeId.toString());
  }

  close(): void {
    this.db.close();
  }
}

function fromRow(row: DisputeRow): DisputeRecord {
  const d: DisputeRecord = { disputeId: BigInt(row.dispute_id), role: row.role, batchId: BigInt(row.batch_id), leaf: row.leaf, settled: row.settled === 1 };
  if (row.server_at_fault !== null && row.salt !== null) {
    d.vote = { serverAtFault: row.server_at_fault === 1, salt: row.salt, committed: row.committed === 1, revealed: row.revealed === 1 };
  }
  return d;
}
