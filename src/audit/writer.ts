import { sql } from 'kysely';
import { BulwarkError } from '../errors.js';
import type { AuthContext } from '../policy/context.js';
import type { Store } from '../store/database.js';
import { nowIso, uuid } from '../util/ids.js';
import { type ChainedFields, chainHash } from './chain.js';

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

/**
 * The one audit writer. Appends are serialised in-process and, on
 * PostgreSQL, across replicas by locking the chain head row, so the chain
 * never forks. A failed append throws 503: callers fail closed.
 */
export class AuditWriter {
  private tail: Promise<unknown> = Promise.resolve();
  private readonly listeners = new Set<AuditListener>();
  private waiting = 0;

  /** Appends queued behind the one being written (the audit queue depth metric). */
  get pending(): number {
    return this.waiting;
  }

  constructor(private readonly store: Store) {}

  /** Subscribe to appended rows (SIEM forwarding, metrics). */
  onAppend(listener: AuditListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  append(event: AuditEvent): Promise<ChainedFields & { hash: string }> {
    this.waiting += 1;
    const run = this.tail
      .then(() => this.write(event))
      .finally(() => {
        this.waiting -= 1;
      });
    this.tail = run.catch(() => undefined);
    return run;
  }

  private async write(e: AuditEvent): Promise<ChainedFields & { hash: string }> {
    try {
      const row = await this.store.db.transaction().execute(async (tx) => {
        const head =
          this.store.dialect === 'postgres'
            ? (
                await sql<{
                  seq: number;
                  hash: string;
                }>`select seq, hash from audit_head where id = 1 for update`.execute(tx)
              ).rows[0]
            : await tx
                .selectFrom('audit_head')
                .select(['seq', 'hash'])
                .where('id', '=', 1)
                .executeTakeFirst();
        if (!head) throw new Error('audit head row is missing');
        const fields: ChainedFields = {
          seq: Number(head.seq) + 1,
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
          prev_hash: head.hash,
        };
        const full = { ...fields, hash: chainHash(fields) };
        await tx.insertInto('audit_events').values(full).execute();
        await tx
          .updateTable('audit_head')
          .set({ seq: full.seq, hash: full.hash })
          .where('id', '=', 1)
          .execute();
        return full;
      });
      for (const l of this.listeners) l(row);
      return row;
    } catch (err) {
      throw new BulwarkError(
        'Unavailable',
        'The audit log could not be written; the request was refused. Check the database.',
        {
          cause: err,
        },
      );
    }
  }
}
