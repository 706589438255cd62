import { type Kysely, sql } from 'kysely';
import type { Dialect } from '../database.js';

/**
 * Refuse UPDATE and DELETE on the audit table inside the database itself, so
 * no code path of ours can rewrite history by mistake. A tamperer with raw
 * file access can drop a trigger; the hash chain is what catches that.
 */
export function up(dialect: Dialect) {
  return async (db: Kysely<unknown>): Promise<void> => {
    if (dialect === 'sqlite') {
      for (const op of ['UPDATE', 'DELETE'] as const) {
        await sql
          .raw(
            `CREATE TRIGGER audit_events_no_${op.toLowerCase()} BEFORE ${op} ON audit_events
             BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END`,
          )
          .execute(db);
      }
      return;
    }
    await sql
      .raw(
        `CREATE FUNCTION bulwark_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN RAISE EXCEPTION 'audit log is append-only'; END $$`,
      )
      .execute(db);
    await sql
      .raw(
        `CREATE TRIGGER audit_events_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON audit_events
         FOR EACH STATEMENT EXECUTE FUNCTION bulwark_audit_append_only()`,
      )
      .execute(db);
  };
}
