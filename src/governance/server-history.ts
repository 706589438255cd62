import type { Kysely } from 'kysely';
import { notFound } from '../errors.js';
import type { AuthContext } from '../policy/context.js';
import type { Store } from '../store/database.js';
import type { Schema } from '../store/schema.js';
import { nowIso, uuid } from '../util/ids.js';
import type { Diff } from './server-metadata.js';

export interface ServerChange {
  id: string;
  at: string;
  user_id: string | null;
  user_name: string | null;
  change: string;
  diff: Diff;
}

/**
 * Per-server change history (guide 14, docs/metadata.md): who changed what,
 * when, with the diff. Written in the transaction of the change itself, so a
 * change and its history row commit or fail together.
 */
export class ServerHistory {
  constructor(private readonly store: Store) {}

  async record(
    db: Kysely<Schema>,
    server: { id: string; project_id: string },
    who: AuthContext | null,
    change: string,
    diff: Diff,
  ): Promise<void> {
    await db
      .insertInto('server_changes')
      .values({
        // Sorts after every earlier change from this process, so two changes in one millisecond keep their order.
        id: `${String(process.hrtime.bigint()).padStart(20, '0')}-${uuid()}`,
        server_id: server.id,
        project_id: server.project_id,
        at: nowIso(),
        user_id: who?.userId ?? null,
        user_name: who?.userName ?? null,
        change,
        diff: JSON.stringify(diff),
      })
      .execute();
  }

  /** Oldest first; a deleted server's history stays readable. Another project's server is 404. */
  async list(auth: AuthContext, serverId: string): Promise<ServerChange[]> {
    let q = this.store.db.selectFrom('servers').select('id').where('id', '=', serverId);
    if (!auth.isAdmin) q = q.where('project_id', '=', auth.projectId ?? '');
    if (!(await q.executeTakeFirst())) throw notFound('server', serverId);
    const rows = await this.store.db
      .selectFrom('server_changes')
      .selectAll()
      .where('server_id', '=', serverId)
      .orderBy('at')
      .orderBy('id')
      .execute();
    return rows.map((r) => ({
      id: r.id,
      at: r.at,
      user_id: r.user_id,
      user_name: r.user_name,
      change: r.change,
      diff: JSON.parse(r.diff) as Diff,
    }));
  }
}
