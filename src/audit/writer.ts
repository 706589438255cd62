import type SqliteDatabase from 'better-sqlite3';
import { sql } from 'kysely';
import { BulwarkError } from '../errors.js';
import type { AuthContext } from '../policy/context.js';
import type { Store } from '../store/database.js';
import { nowIso, uuid } from '../util/ids.js';
import { type ChainedFields, chainHash, FIELD_ORDER } from './chain.js';

export type Outcome = 'success' | 'failure' | 'denied';

export interface AuditEvent {
  requestId: string;
  userId: string | null;
  userName: string | null;
  projectId: string | null;
  roles: readonly string[];
  sourceIp: string | null;
  action: string;
  method: string;
  path: string;
  targetType: string | null;
  targetId: string | null;
  outcome: Outcome;
  status: number;
  reason: string | null;
}

/**
 * An event recorded outside a request's own audit row: a host lockdown, or a
 * step of a multi-step operation (quarantine), attributed to whoever started it.
 */
export function systemEvent(e: {
  action: string;
  reason: string | null;
  target?: { type: string; id: string };
  outcome?: Outcome;
  actor?: AuthContext;
}): AuditEvent {
  return {
    requestId: `system-${uuid()}`,
    userId: e.actor?.userId ?? null,
    userName: e.actor?.userName ?? 'bulwark',
    projectId: e.actor?.projectId ?? null,
    roles: e.actor?.roles ?? [],
    sourceIp: null,
    action: e.action,
    method: 'SYSTEM',
    path: '',
    targetType: e.target?.type ?? null,
    targetId: e.target?.id ?? null,
    outcome: e.outcome ?? 'success',
    status: 0,
    reason: e.reason,
  };
}

/**
 * PostgreSQL text cannot hold U+0000, and a caller chooses some of what is
 * recorded (a login's user name, a library's parse error): replace it, so a
 * crafted request is recorded instead of turning every answer into 503.
 */
const storable = (s: string) => s.replaceAll('\u0000', '\uFFFD');

export type AuditListener = (row: ChainedFields & { hash: string }) => void;

interface Queued {
  event: AuditEvent;
  resolve: (row: ChainedFields & { hash: string }) => void;
  reject: (err: unknown) => void;
}

/** Appends written in one transaction at most (a burst larger than this takes several). */
const MAX_BATCH = 256;

/**
 * The one audit writer. Appends are serialised in-process and, on
 * PostgreSQL, across replicas by locking the chain head row, so the chain
 * never forks. A failed append throws 503: callers fail closed.
 *
 * Group commit: a transaction is written once the event loop's current turn
 * is done, so the appends of the requests answered in that turn go in
 * together, and appends that arrive while one is being written go into the
 * next (in arrival order, each chained to the one before). Every append
 * still resolves only once its own row is committed, and a failed
 * transaction fails every append in it; under concurrent requests this saves
 * a transaction per row (BENCHMARKS.md, audit).
 */
export class AuditWriter {
  private readonly queue: Queued[] = [];
  private writing = false;
  /** Appends in the transaction being written. */
  private inFlight = 0;
  private readonly listeners = new Set<AuditListener>();
  private statements?: {
    head: SqliteDatabase.Statement<[], { seq: number; hash: string }>;
    insert: SqliteDatabase.Statement<ChainedFields & { hash: string }>;
    setHead: SqliteDatabase.Statement<[number, string]>;
  };

  /** Appends waiting for or inside the transaction being written (the audit queue depth metric). */
  get pending(): number {
    return this.queue.length + this.inFlight;
  }

  constructor(private readonly store: Store) {}

  /** Subscribe to appended rows (SIEM forwarding, metrics). */
  onAppend(listener: AuditListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  append(event: AuditEvent): Promise<ChainedFields & { hash: string }> {
    return new Promise((resolve, reject) => {
      this.queue.push({ event, resolve, reject });
      if (this.writing) return;
      // Written once this turn of the event loop is done, so the appends of requests answered in the
      // same turn share a transaction.
      this.writing = true;
      setImmediate(() => void this.drain());
    });
  }

  private async drain(): Promise<void> {
    try {
      while (this.queue.length > 0) {
        const batch = this.queue.splice(0, MAX_BATCH);
        this.inFlight = batch.length;
        let rows: (ChainedFields & { hash: string })[];
        try {
          rows = await this.write(batch.map((q) => q.event));
        } catch (err) {
          for (const q of batch) q.reject(err);
          continue;
        } finally {
          this.inFlight = 0;
        }
        rows.forEach((row, i) => {
          const q = batch[i] as Queued;
          try {
            for (const l of this.listeners) l(row);
            q.resolve(row);
          } catch (err) {
            q.reject(unavailable(err));
          }
        });
      }
    } finally {
      this.writing = false;
    }
  }

  private async write(events: readonly AuditEvent[]): Promise<(ChainedFields & { hash: string })[]> {
    try {
      if (this.store.sqlite) return await this.writeSqlite(this.store.sqlite, events);
      return await this.store.db.transaction().execute(async (tx) => {
        const head = (
          await sql<{
            seq: number;
            hash: string;
          }>`select seq, hash from audit_head where id = 1 for update`.execute(tx)
        ).rows[0];
        if (!head) throw new Error('audit head row is missing');
        const rows = chained(events, head);
        const last = rows.at(-1) as ChainedFields & { hash: string };
        await tx.insertInto('audit_events').values(rows).execute();
        await tx
          .updateTable('audit_head')
          .set({ seq: last.seq, hash: last.hash })
          .where('id', '=', 1)
          .execute();
        return rows;
      });
    } catch (err) {
      throw unavailable(err);
    }
  }

  private sqliteStatements(raw: SqliteDatabase.Database) {
    if (!this.statements)
      this.statements = {
        head: raw.prepare<[], { seq: number; hash: string }>('select seq, hash from audit_head where id = 1'),
        insert: raw.prepare<ChainedFields & { hash: string }>(
          `insert into audit_events (${AUDIT_COLUMNS.join(', ')}) values (${AUDIT_COLUMNS.map((c) => `@${c}`).join(', ')})`,
        ),
        setHead: raw.prepare<[number, string]>('update audit_head set seq = ?, hash = ? where id = 1'),
      };
    return this.statements;
  }

  /**
   * SQLite: the same transaction, on statements prepared once and run in one
   * synchronous call (Kysely compiled and prepared each of its four statements
   * on every append: BENCHMARKS.md, audit), so no other query of this process
   * can run inside it. When no transaction is open on the connection it runs
   * at once, without queueing for Kysely's lock behind the other requests'
   * queries (the lock only orders async work; this call is never split). When
   * one is open it waits for that lock, so it never lands inside a
   * transaction that may roll back. BEGIN IMMEDIATE takes the database's write
   * lock first, so another process's writer waits its turn (busy_timeout)
   * instead of forking the chain.
   */
  private async writeSqlite(raw: SqliteDatabase.Database, events: readonly AuditEvent[]) {
    if (!raw.inTransaction) return this.appendSqlite(raw, events);
    return this.store.db.connection().execute(async () => {
      if (raw.inTransaction) throw new Error('the SQLite connection is inside another transaction');
      return this.appendSqlite(raw, events);
    });
  }

  private appendSqlite(raw: SqliteDatabase.Database, events: readonly AuditEvent[]) {
    const st = this.sqliteStatements(raw);
    return raw
      .transaction(() => {
        const head = st.head.get();
        if (!head) throw new Error('audit head row is missing');
        const rows = chained(events, head);
        for (const r of rows) st.insert.run(r);
        const last = rows.at(-1) as ChainedFields & { hash: string };
        st.setHead.run(last.seq, last.hash);
        return rows;
      })
      .immediate();
  }
}

/** The audit table's columns, in the chain's field order, then the row's hash. */
const AUDIT_COLUMNS = [...FIELD_ORDER, 'hash'] as const;

/** The events as rows chained onto `head`, in order. */
function chained(
  events: readonly AuditEvent[],
  head: { seq: number | string; hash: string },
): (ChainedFields & { hash: string })[] {
  let seq = Number(head.seq);
  let prev = head.hash;
  return events.map((e) => {
    const fields: ChainedFields = {
      seq: ++seq,
      id: uuid(),
      time: nowIso(),
      request_id: e.requestId,
      user_id: e.userId,
      user_name: e.userName === null ? null : storable(e.userName),
      project_id: e.projectId,
      roles: e.roles.join(','),
      source_ip: e.sourceIp,
      action: e.action,
      method: e.method,
      path: e.path,
      target_type: e.targetType,
      target_id: e.targetId,
      outcome: e.outcome,
      status: e.status,
      reason: e.reason === null ? null : storable(e.reason).slice(0, 2000),
      prev_hash: prev,
    };
    const full = { ...fields, hash: chainHash(fields) };
    prev = full.hash;
    return full;
  });
}

const unavailable = (cause: unknown) =>
  new BulwarkError(
    'Unavailable',
    'The audit log could not be written; the request was refused. Check the database.',
    { cause },
  );
