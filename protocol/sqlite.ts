import type { DatabaseSync, StatementSync } from "node:sqlite";

/**
 * Prepared statements of one database, each SQL text compiled once: compiling costs about as much as
 * the small insert or lookup a store makes per step. Only for fixed SQL texts: one built from values
 * would make the cache grow without bound. Statements end with their database.
 */
export function statementCache(db: DatabaseSync): (sql: string) => StatementSync {
  const prepared = new Map<string, StatementSync>();
  return (sql) => {
    let statement = prepared.get(sql);
    if (statement === undefined) prepared.set(sql, (statement = db.prepare(sql)));
    return statement;
  };
}

/**
 * Runs `fn` in a write transaction (BEGIN IMMEDIATE: processes sharing the file take turns, and what
 * `fn` reads cannot change before it writes); commits its result, or rolls back and rethrows.
 */
export function writeTransaction<T>(db: DatabaseSync, fn: () => T): T {
  db.exec("BEGIN IMMEDIATE");
  try {
    const result = fn();
    db.exec("COMMIT");
    return result;
  } catch (err) {
    db.exec("ROLLBACK");
    throw err;
  }
}

/** SQLite's `synchronous` settings used here: FULL waits for the disk at every commit, NORMAL (in WAL mode) does not. */
export type Synchronous = "FULL" | "NORMAL";

/**
 * Runs `fn` with the connection's commits at `during`, then sets them back to `after` (the
 * connection's usual setting): a store that is mostly one kind writes its few other writes this way.
 */
export function withSynchronous<T>(db: DatabaseSync, during: Synchronous, after: Synchronous, fn: () => T): T {
  db.exec(`PRAGMA synchronous = ${during}`);
  try {
    return fn();
  } finally {
    db.exec(`PRAGMA synchronous = ${after}`);
  }
}
