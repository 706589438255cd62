import { type Kysely, sql } from 'kysely';
import type { Dialect } from '../database.js';

const COLUMNS = `seq, id, time, request_id, user_id, user_name, project_id, roles, source_ip, action,
  method, path, target_type, target_id, outcome, status, reason, prev_hash, hash`;

/**
 * SQLite: the audit sequence becomes the table's own row id. Declared
 * `bigint primary key`, `seq` was a separate unique index beside the rowid,
 * one more B-tree written by every append (BENCHMARKS.md, audit); as
 * `INTEGER PRIMARY KEY` it is the rowid itself. The rows, their order and
 * their hashes are copied unchanged, so the chain verifies as before; the
 * append-only triggers are made again on the new table. PostgreSQL has no
 * rowid and keeps its table.
 */
export function up(dialect: Dialect) {
  return async (db: Kysely<unknown>): Promise<void> => {
    if (dialect !== 'sqlite') return;
    const statements = [
      `CREATE TABLE audit_events_new (
        seq INTEGER PRIMARY KEY, id text NOT NULL UNIQUE, time text NOT NULL, request_id text NOT NULL,
        user_id text, user_name text, project_id text, roles text NOT NULL, source_ip text,
        action text NOT NULL, method text NOT NULL, path text NOT NULL, target_type text, target_id text,
        outcome text NOT NULL, status integer NOT NULL, reason text, prev_hash text NOT NULL, hash text NOT NULL)`,
      `INSERT INTO audit_events_new (${COLUMNS}) SELECT ${COLUMNS} FROM audit_events ORDER BY seq`,
      // Dropping the table drops its triggers and index with it, and fires no trigger.
      'DROP TABLE audit_events',
      'ALTER TABLE audit_events_new RENAME TO audit_events',
      'CREATE INDEX audit_events_time ON audit_events (time)',
      ...(['UPDATE', 'DELETE'] as const).map(
        (op) => `CREATE TRIGGER audit_events_no_${op.toLowerCase()} BEFORE ${op} ON audit_events
         BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END`,
      ),
    ];
    for (const s of statements) await sql.raw(s).execute(db);
  };
}
