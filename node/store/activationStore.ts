import { DatabaseSync, type StatementSync } from "node:sqlite";
import { statementCache } from "../../protocol/sqlite.js";
import type { EncodedActivations, ActivationEncoding } from "../../protocol/activations.js";
import { MerkleTree } from "../../protocol/merkle.js";
import { receiptLeaf, type Receipt } from "../../protocol/receipt.js";

/** A step as the server keeps it for the challenge window: its receipt and the bytes behind it. */
export interface StoredStep {
  receipt: Receipt;
  input: EncodedActivations;
  output: EncodedActivations;
  createdAtMs: number;
  /** The posted batch holding this receipt, once committed. */
  batchId?: number;
}

export interface StoreOptions {
  /**
   * Steps older than this are dropped (the challenge window plus the longest dispute), unless their
   * posted batch is still protected (see `markCommitted`).
   */
  retentionMs: number;
  /** Activation bytes kept at most; the oldest unprotected steps go first. Past it, with nothing left to drop, the store is full. */
  maxBytes: number;
}

interface Row {
  leaf: string;
  session_id: string;
  step: string;
  first_layer: number;
  last_layer: number;
  variant_id: string;
  input_hash: string;
  output_hash: string;
  tokens: number;
  server: string;
  input_encoding: string;
  input_rows: number;
  input_cols: number;
  input: Uint8Array;
  output_encoding: string;
  output_rows: number;
  output_cols: number;
  output: Uint8Array;
  created_at_ms: number;
  batch_id: number | null;
}

/**
 * The server's durable record of every step it computed, in SQLite (node:sqlite): receipts and the
 * activations behind them, kept for the challenge window and bounded in bytes. A step is written
 * before a signature over it (its session's receipt chain) leaves the server, so a restart never
 * loses a step a client holds signed evidence of.
 */
export class ActivationStore {
  private readonly db: DatabaseSync;
  /** Activation bytes held, kept up to date by put and prune (summed once at open). */
  private heldBytes: number;
  private closed = false;
  /** Per-step statements, prepared once. */
  private readonly statement: (sql: string) => StatementSync;

  private constructor(
    db: DatabaseSync,
    readonly path: string,
    readonly options: StoreOptions,
  ) {
    this.db = db;
    this.statement = statementCache(db);
    this.heldBytes = (db.prepare(`SELECT COALESCE(SUM(LENGTH(input) + LENGTH(output)), 0) AS b FROM steps`).get() as { b: number }).b;
  }

  static open(path: string, options: StoreOptions): ActivationStore {
    const db = new DatabaseSync(path);
    db.exec(`
      PRAGMA journal_mode = WAL;
      PRAGMA synchronous = NORMAL;
      CREATE TABLE IF NOT EXISTS steps (
        leaf TEXT PRIMARY KEY,
        session_id TEXT NOT NULL, step TEXT NOT NULL,
        first_layer INTEGER NOT NULL, last_layer INTEGER NOT NULL, variant_id TEXT NOT NULL,
        input_hash TEXT NOT NULL, output_hash TEXT NOT NULL, tokens INTEGER NOT NULL, server TEXT NOT NULL,
        -- each receipt's signature, in stores written before receipts were signed as chains (protocol 5): now ''
        signature TEXT NOT NULL,
        input_encoding TEXT NOT NULL, input_rows INTEGER NOT NULL, input_cols INTEGER NOT NULL, input BLOB NOT NULL,
        output_encoding TEXT NOT NULL, output_rows INTEGER NOT NULL, output_cols INTEGER NOT NULL, output BLOB NOT NULL,
        created_at_ms INTEGER NOT NULL,
        batch_id INTEGER
      );
      CREATE INDEX IF NOT EXISTS steps_created ON steps (created_at_ms);
      CREATE INDEX IF NOT EXISTS steps_uncommitted ON steps (batch_id, created_at_ms);
      CREATE INDEX IF NOT EXISTS steps_session ON steps (session_id, step);
      CREATE TABLE IF NOT EXISTS batches (
        batch_id INTEGER PRIMARY KEY, root TEXT NOT NULL, posted_at_ms INTEGER NOT NULL, leaves TEXT NOT NULL,
        protect_until_ms INTEGER NOT NULL DEFAULT 0
      );
      CREATE TABLE IF NOT EXISTS session_keys (
        session_id TEXT PRIMARY KEY, forward_key TEXT NOT NULL, created_at_ms INTEGER NOT NULL
      );
    `);
    const batchColumns = db.prepare(`PRAGMA table_info(batches)`).all() as { name: string }[];
    if (!batchColumns.some((c) => c.name === "protect_until_ms")) {
      db.exec(`ALTER TABLE batches ADD COLUMN protect_until_ms INTEGER NOT NULL DEFAULT 0`); // a store from before protection
    }
    return new ActivationStore(db, path, options);
  }

  /** Whether another step of `bytes` activation bytes fits under the byte budget. */
  hasRoomFor(bytes: number): boolean {
    return this.heldBytes + bytes <= this.options.maxBytes;
  }

  /**
   * Records a session's forwarding key, which its owner uses to fetch the session's steps later;
   * refuses a session id this store has seen (a session id names one session forever).
   */
  putSessionKey(sessionId: string, forwardKey: string, nowMs: number): boolean {
    const result = this.statement(`INSERT OR IGNORE INTO session_keys VALUES (?, ?, ?)`).run(sessionId, forwardKey, nowMs);
    return Number(result.changes) === 1;
  }

  sessionKey(sessionId: string): string | undefined {
    const row = this.statement(`SELECT forward_key FROM session_keys WHERE session_id = ?`).get(sessionId) as { forward_key: string } | undefined;
    return row?.forward_key;
  }

  /** Records steps in one transaction (one commit for a run of steps); `leaves` are their receipt leaves, if the caller has them. */
  putAll(steps: readonly StoredStep[], leaves?: readonly string[]): void {
    if (steps.length === 1) {
      this.put(steps[0]!, leaves?.[0]);
      return;
    }
    const held = this.heldBytes;
    this.db.exec("BEGIN");
    try {
      steps.forEach((s, i) => this.put(s, leaves?.[i]));
      this.db.exec("COMMIT");
    } catch (err) {
      this.db.exec("ROLLBACK");
      this.heldBytes = held;
      throw err;
    }
  }

  /** Records a step; returns its receipt leaf (`leaf`, when the caller computed it). */
  put(s: StoredStep, leaf = receiptLeaf(s.receipt)): string {
    const r = s.receipt;
    this.statement(`INSERT INTO steps VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL)`).run(
        leaf,
        r.sessionId,
        r.step.toString(),
        r.firstLayer,
        r.lastLayer,
        r.variantId,
        r.inputHash,
        r.outputHash,
        r.tokens,
        r.server,
        "",
        s.input.encoding,
        s.input.rows,
        s.input.cols,
        s.input.payload,
        s.output.encoding,
        s.output.rows,
        s.output.cols,
        s.output.payload,
        s.createdAtMs,
      );
    this.heldBytes += s.input.payload.byteLength + s.output.payload.byteLength;
    return leaf;
  }

  get(leaf: string): StoredStep | undefined {
    const row = this.statement(`SELECT * FROM steps WHERE leaf = ?`).get(leaf) as Row | undefined;
    return row === undefined ? undefined : fromRow(row);
  }

  /** Step `step` of session `sessionId`, as computed here. */
  getBySession(sessionId: string, step: bigint): StoredStep | undefined {
    const row = this.statement(`SELECT * FROM steps WHERE session_id = ? AND step = ?`).get(sessionId, step.toString()) as Row | undefined;
    return row === undefined ? undefined : fromRow(row);
  }

  /** Steps not yet in a posted batch, oldest first. */
  uncommitted(limit: number): StoredStep[] {
    const rows = this.db.prepare(`SELECT * FROM steps WHERE batch_id IS NULL ORDER BY created_at_ms, rowid LIMIT ?`).all(limit) as unknown as Row[];
    return rows.map(fromRow);
  }

  /**
   * Records that `leaves` (in tree order) were posted on chain as batch `batchId` with `root`. Their
   * steps are kept until `protectUntilMs` (the batch's challenge deadline plus the longest dispute;
   * default: retention from now) whatever the retention or byte budget say: that data is what the
   * server must be able to show a verifier.
   */
  markCommitted(batchId: number, root: string, leaves: readonly string[], nowMs: number, protectUntilMs = nowMs + this.options.retentionMs): void {
    const update = this.statement(`UPDATE steps SET batch_id = ? WHERE leaf = ?`);
    this.db.exec("BEGIN");
    try {
      for (const leaf of leaves) update.run(batchId, leaf);
      this.db.prepare(`INSERT INTO batches VALUES (?, ?, ?, ?, ?)`).run(batchId, root, nowMs, JSON.stringify(leaves), protectUntilMs);
      this.db.exec("COMMIT");
    } catch (err) {
      this.db.exec("ROLLBACK");
      throw err;
    }
  }

  /** The Merkle proof of `leaf` within its posted batch, or undefined while it is uncommitted. */
  proofOf(leaf: string): { batchId: number; proof: string[] } | undefined {
    const step = this.get(leaf);
    if (step?.batchId === undefined) return undefined;
    const leaves = this.batchLeaves(step.batchId)!;
    return { batchId: step.batchId, proof: new MerkleTree(leaves).proof(leaves.indexOf(leaf)) };
  }

  /** The leaves of batch `batchId` in tree order, to rebuild its Merkle proofs. */
  batchLeaves(batchId: number): string[] | undefined {
    const row = this.db.prepare(`SELECT leaves FROM batches WHERE batch_id = ?`).get(batchId) as { leaves: string } | undefined;
    return row === undefined ? undefined : (JSON.parse(row.leaves) as string[]);
  }

  /** Receipts of batch `batchId` in tree order from `offset`, and how many it has; undefined for an unknown batch. */
  batchReceipts(batchId: number, offset: number, limit: number): { total: number; receipts: Receipt[] } | undefined {
    const leaves = this.batchLeaves(batchId);
    if (leaves === undefined) return undefined;
    const receipts = leaves.slice(offset, offset + limit).flatMap((leaf) => {
      const s = this.get(leaf);
      return s === undefined ? [] : [s.receipt];
    });
    return { total: leaves.length, receipts };
  }

  count(): number {
    return (this.db.prepare(`SELECT COUNT(*) AS n FROM steps`).get() as { n: number }).n;
  }

  /** Activation bytes held. */
  bytes(): number {
    return this.heldBytes;
  }

  /**
   * Drops steps past the retention time, then the oldest until within the byte budget — never a
   * step of a posted batch still inside its protection (challenge window plus dispute). Returns how
   * many went. Session keys go with retention too.
   */
  prune(nowMs: number): number {
    const unprotected = `(batch_id IS NULL OR batch_id IN (SELECT batch_id FROM batches WHERE protect_until_ms <= ?))`;
    const sizes = `LENGTH(input) + LENGTH(output) AS size`;
    const cutoff = nowMs - this.options.retentionMs;
    let dropped = this.deleteSteps(`DELETE FROM steps WHERE created_at_ms < ? AND ${unprotected} RETURNING ${sizes}`, cutoff, nowMs);
    while (this.heldBytes > this.options.maxBytes) {
      // the oldest unprotected steps, just enough of them to get back under the budget
      const oldest = this.db
        .prepare(`SELECT rowid AS id, ${sizes} FROM steps WHERE ${unprotected} ORDER BY created_at_ms, rowid LIMIT 256`)
        .all(nowMs) as { id: number; size: number }[];
      const victims: number[] = [];
      let freed = 0;
      for (const row of oldest) {
        if (this.heldBytes - freed <= this.options.maxBytes) break;
        victims.push(row.id);
        freed += row.size;
      }
      if (victims.length === 0) break; // only protected steps are left: the store is full until their protection ends
      dropped += this.deleteSteps(`DELETE FROM steps WHERE rowid IN (${victims.join(",")}) RETURNING ${sizes}`);
    }
    this.db.prepare(`DELETE FROM session_keys WHERE created_at_ms < ?`).run(cutoff);
    this.db.prepare(`DELETE FROM batches WHERE protect_until_ms <= ? AND batch_id NOT IN (SELECT DISTINCT batch_id FROM steps WHERE batch_id IS NOT NULL)`).run(nowMs);
    return dropped;
  }

  private deleteSteps(sql: string, ...params: number[]): number {
    const rows = this.db.prepare(sql).all(...params) as { size: number }[];
    for (const r of rows) this.heldBytes -= r.size;
    return rows.length;
  }

  /** Closes the database; closing twice is harmless. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.db.close();
  }
}

function fromRow(row: Row): StoredStep {
  return {
    receipt: {
      sessionId: row.session_id,
      step: BigInt(row.step),
      firstLayer: row.first_layer,
      lastLayer: row.last_layer,
      variantId: row.variant_id,
      inputHash: row.input_hash,
      outputHash: row.output_hash,
      tokens: row.tokens,
      server: row.server,
    },
    input: { encoding: row.input_encoding as ActivationEncoding, rows: row.input_rows, cols: row.input_cols, payload: new Uint8Array(row.input) },
    output: { encoding: row.output_encoding as ActivationEncoding, rows: row.output_rows, cols: row.output_cols, payload: new Uint8Array(row.output) },
    createdAtMs: row.created_at_ms,
    ...(row.batch_id === null ? {} : { batchId: row.batch_id }),
  };
}
