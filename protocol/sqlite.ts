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
