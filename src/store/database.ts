import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import SqliteDatabase from 'better-sqlite3';
import {
  type DatabaseConnection,
  Kysely,
  type Migration,
  type MigrationProvider,
  Migrator,
  PostgresDialect,
  SqliteDialect,
  SqliteDriver,
  sql,
} from 'kysely';
import pg from 'pg';
import * as m0001 from './migrations/0001-foundation.js';
import * as m0002 from './migrations/0002-audit-append-only.js';
import * as m0003 from './migrations/0003-compute.js';
import * as m0004 from './migrations/0004-network.js';
import * as m0005 from './migrations/0005-zones.js';
import * as m0006 from './migrations/0006-routers.js';
import * as m0007 from './migrations/0007-quarantine.js';
import * as m0008 from './migrations/0008-keys.js';
import * as m0009 from './migrations/0009-volumes.js';
import * as m0010 from './migrations/0010-vtpm.js';
import * as m0011 from './migrations/0011-quotas.js';
import * as m0012 from './migrations/0012-rate-limits.js';
import * as m0013 from './migrations/0013-approvals.js';
import * as m0014 from './migrations/0014-server-governance.js';
import * as m0015 from './migrations/0015-guest-agent-grants.js';
import * as m0020 from './migrations/0020-identity-mfa.js';
import * as m0021 from './migrations/0021-application-credentials.js';
import * as m0022 from './migrations/0022-break-glass.js';
import * as m0023 from './migrations/0023-webauthn-recovery.js';
import * as m0030 from './migrations/0030-siem.js';
import * as m0031 from './migrations/0031-console-recordings.js';
import * as m0040 from './migrations/0040-backups.js';
import * as m0041 from './migrations/0041-backup-schedules.js';
import * as m0050 from './migrations/0050-snapshots.js';
import * as m0051 from './migrations/0051-templates.js';
import * as m0060 from './migrations/0060-multihost.js';
import * as m0070 from './migrations/0070-compliance.js';
import * as m0080 from './migrations/0080-server-backups.js';
import * as m0081 from './migrations/0081-dr-drills.js';
import * as m0090 from './migrations/0090-migrations.js';
import * as m0110 from './migrations/0110-server-list-order.js';
import * as m0140 from './migrations/0140-cold-migration.js';
import * as m0160 from './migrations/0160-server-backup-schedules.js';
import * as m0190 from './migrations/0190-audit-rowid.js';
import type { Schema } from './schema.js';
import { checkpointInBackground } from './wal-checkpointer.js';

export type Dialect = 'sqlite' | 'postgres';

export interface StoreConfig {
  /** A file path for SQLite, or a `postgres://` URL used by the running daemon. */
  url: string;
  /**
   * PostgreSQL only: the table owner's URL, used for migrations. When it is a
   * different role from `url`, the runtime role gets SELECT and INSERT on the
   * audit table and nothing more, so the daemon cannot rewrite audit history.
   */
  adminUrl?: string;
}

export interface Store {
  db: Kysely<Schema>;
  dialect: Dialect;
  /**
   * SQLite only: the connection `db` runs on, for a hot path that reuses its
   * prepared statements (the audit writer). Use it only inside
   * `db.connection().execute(...)`, which holds Kysely's lock on it.
   */
  sqlite?: SqliteDatabase.Database;
  /**
   * SQLite only: a value that differs whenever any data in the database may
   * have changed since it was last taken, so a rendered answer tagged with it
   * is still true while it is unchanged (src/api/rendered-cache.ts). It is
   * SQLite's own count of rows written by this connection (every write path:
   * Kysely, the audit writer's prepared statements, triggers; counted when
   * the statement runs, and no read runs inside another's open transaction:
   * Kysely holds the one connection for it) and its data_version (commits by
   * any other connection or process to the file). Absent on PostgreSQL:
   * other replicas write to the same database and nothing here sees their
   * commits.
   */
  changeMark?: () => string;
  close(): Promise<void>;
}

/** Tables on which the runtime role may only read and append. */
const APPEND_ONLY_TABLES = new Set(['audit_events']);

const migrations = (dialect: Dialect): Record<string, Migration> => ({
  '0001-foundation': { up: m0001.up },
  '0002-audit-append-only': { up: m0002.up(dialect) },
  '0003-compute': { up: m0003.up },
  '0004-network': { up: m0004.up },
  '0005-zones': { up: m0005.up },
  '0006-routers': { up: m0006.up },
  '0007-quarantine': { up: m0007.up },
  '0008-keys': { up: m0008.up },
  '0009-volumes': { up: m0009.up },
  '0010-vtpm': { up: m0010.up },
  '0011-quotas': { up: m0011.up },
  '0012-rate-limits': { up: m0012.up },
  '0013-approvals': { up: m0013.up },
  '0014-server-governance': { up: m0014.up },
  '0015-guest-agent-grants': { up: m0015.up },
  '0020-identity-mfa': { up: m0020.up },
  '0021-application-credentials': { up: m0021.up },
  '0022-break-glass': { up: m0022.up },
  '0023-webauthn-recovery': { up: m0023.up },
  '0030-siem': { up: m0030.up },
  '0031-console-recordings': { up: m0031.up },
  '0040-backups': { up: m0040.up },
  '0041-backup-schedules': { up: m0041.up },
  '0050-snapshots': { up: m0050.up },
  '0051-templates': { up: m0051.up },
  '0060-multihost': { up: m0060.up },
  '0070-compliance': { up: m0070.up },
  '0080-server-backups': { up: m0080.up(dialect) },
  '0081-dr-drills': { up: m0081.up },
  '0090-migrations': { up: m0090.up },
  '0110-server-list-order': { up: m0110.up },
  '0140-cold-migration': { up: m0140.up },
  '0160-server-backup-schedules': { up: m0160.up },
  '0190-audit-rowid': { up: m0190.up(dialect) },
});

export const dialectOf = (url: string): Dialect => (/^postgres(ql)?:\/\//.test(url) ? 'postgres' : 'sqlite');

// bigint (int8) columns hold sequence numbers well inside 2^53: read them as numbers.
pg.types.setTypeParser(20, (v) => Number.parseInt(v, 10));

function connect(url: string): {
  db: Kysely<Schema>;
  sqlite?: SqliteDatabase.Database;
  changeMark?: () => string;
  stopCheckpoints?: () => Promise<void>;
} {
  if (dialectOf(url) === 'postgres') {
    const pool = new pg.Pool({ connectionString: url, max: 10 });
    // An idle client dropped by the server (restart, failover) must not crash the daemon; the pool reconnects.
    pool.on('error', () => undefined);
    return { db: new Kysely<Schema>({ dialect: new PostgresDialect({ pool }) }) };
  }
  mkdirSync(dirname(url), { recursive: true });
  const raw = new SqliteDatabase(url);
  raw.pragma('journal_mode = WAL');
  raw.pragma('foreign_keys = ON');
  raw.pragma('busy_timeout = 5000');
  raw.pragma('synchronous = NORMAL');
  const marks = raw.prepare('select total_changes() as c, data_version as v from pragma_data_version');
  const changeMark = () => {
    const m = marks.get() as { c: number; v: number };
    return `${m.c}.${m.v}`;
  };
  return {
    db: new Kysely<Schema>({ dialect: new SqliteDialectKeepingCause(raw) }),
    sqlite: raw,
    changeMark,
    ...(raw.memory ? {} : { stopCheckpoints: checkpointInBackground(raw, url).stop }),
  };
}

/** Statements kept for reuse (SQL texts differ mostly by the length of `in (...)` lists). */
const KEPT_STATEMENTS = 500;

/**
 * Kysely prepares every query anew, and preparing was a tenth of a request's
 * CPU time in the API benches (`Statement` in BENCHMARKS.md's profiles): the
 * same SQL text reuses its prepared statement, least recently used out first.
 * Safe because every query runs to completion in one synchronous call (no
 * query streams a cursor), so a statement is never in use twice at once.
 */
function reusingStatements(raw: SqliteDatabase.Database) {
  const kept = new Map<string, SqliteDatabase.Statement>();
  return {
    close: () => raw.close(),
    prepare(text: string) {
      let st = kept.get(text);
      if (st) kept.delete(text);
      else st = raw.prepare(text);
      kept.set(text, st);
      if (kept.size > KEPT_STATEMENTS) kept.delete(kept.keys().next().value as string);
      return st;
    },
  };
}

/**
 * SQLite ends a transaction by itself on some errors (SQLITE_FULL when the
 * disk is full, SQLITE_IOERR): Kysely's ROLLBACK then fails with "no
 * transaction is active", and that error would replace the one that says
 * what is wrong (src/api/error-map.ts turns a full disk into a clear 503).
 */
class SqliteDialectKeepingCause extends SqliteDialect {
  private readonly database: ReturnType<typeof reusingStatements>;

  constructor(private readonly raw: SqliteDatabase.Database) {
    const database = reusingStatements(raw);
    super({ database });
    this.database = database;
  }

  override createDriver() {
    const raw = this.raw;
    return new (class extends SqliteDriver {
      override async rollbackTransaction(connection: DatabaseConnection): Promise<void> {
        if (raw.inTransaction) await super.rollbackTransaction(connection);
      }
    })({ database: this.database });
  }
}

class StaticProvider implements MigrationProvider {
  constructor(private readonly all: Record<string, Migration>) {}
  async getMigrations(): Promise<Record<string, Migration>> {
    return this.all;
  }
}

async function migrate(db: Kysely<Schema>, dialect: Dialect): Promise<void> {
  const migrator = new Migrator({ db, provider: new StaticProvider(migrations(dialect)) });
  const { error, results } = await migrator.migrateToLatest();
  if (error) {
    const failed = results?.find((r) => r.status === 'Error')?.migrationName ?? 'unknown';
    throw new Error(`database migration ${failed} failed: ${String(error)}`, { cause: error });
  }
}

async function grantRuntimeRole(admin: Kysely<Schema>, runtimeUrl: string): Promise<void> {
  const role = decodeURIComponent(new URL(runtimeUrl).username);
  const owner = await sql<{ u: string }>`select current_user as u`.execute(admin);
  if (!role || owner.rows[0]?.u === role) return;
  const tables = await sql<{ tablename: string }>`
    select tablename from pg_tables where schemaname = current_schema()`.execute(admin);
  const ident = (s: string) => `"${s.replaceAll('"', '""')}"`;
  for (const { tablename } of tables.rows) {
    const privileges = APPEND_ONLY_TABLES.has(tablename)
      ? 'SELECT, INSERT'
      : 'SELECT, INSERT, UPDATE, DELETE';
    await sql.raw(`REVOKE ALL ON ${ident(tablename)} FROM ${ident(role)}`).execute(admin);
    await sql.raw(`GRANT ${privileges} ON ${ident(tablename)} TO ${ident(role)}`).execute(admin);
  }
}

/** Opens the store, bringing its schema to the latest version first. */
export async function openStore(config: StoreConfig): Promise<Store> {
  const dialect = dialectOf(config.url);
  if (dialect === 'postgres' && config.adminUrl && config.adminUrl !== config.url) {
    const { db: admin } = connect(config.adminUrl);
    try {
      await migrate(admin, dialect);
      await grantRuntimeRole(admin, config.url);
    } finally {
      await admin.destroy();
    }
  }
  const { db, sqlite, changeMark, stopCheckpoints } = connect(config.url);
  if (dialect === 'sqlite' || !config.adminUrl || config.adminUrl === config.url) {
    try {
      await migrate(db, dialect);
    } catch (err) {
      await stopCheckpoints?.();
      await db.destroy();
      throw err;
    }
  }
  return {
    db,
    dialect,
    ...(sqlite ? { sqlite } : {}),
    ...(changeMark ? { changeMark } : {}),
    close: async () => {
      await stopCheckpoints?.();
      await db.destroy();
    },
  };
}
