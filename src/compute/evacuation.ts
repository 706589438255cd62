import type { Selectable } from 'kysely';
import { conflict, notFound } from '../errors.js';
import type { AuthContext } from '../policy/context.js';
import type { Store } from '../store/database.js';
import type { Schema } from '../store/schema.js';
import { nowIso, uuid } from '../util/ids.js';
import type { ColdMigrationService } from './cold-migration.js';
import type { HostService } from './hosts.js';
import type { ServerService } from './servers.js';

export type Evacuation = Selectable<Schema['host_evacuations']>;

export interface EvacuationResult {
  server_id: string;
  name: string;
  /** live-migration (it ran), migration (it was stopped: cold, then confirmed), or skipped. */
  action: 'live-migration' | 'migration' | 'skipped';
  status: 'pending' | 'done' | 'error' | 'skipped';
  dest_host: string | null;
  error: string | null;
}

/**
 * `bulwark host evacuate` (docs/multi-host.md): takes a host out of
 * scheduling, then moves every server off it one at a time: running ones by
 * live migration over TLS, stopped ones by cold migration, confirmed at once
 * (the source copy goes). Each server's result and the run's progress are
 * kept in `host_evacuations`. A host that is down (its agent not reporting)
 * is refused: its guests' disks live only on that host, so nothing can move
 * them until it is back (docs/multi-host.md explains the choice).
 */
export class EvacuationService {
  constructor(
    private readonly store: Store,
    private readonly servers: ServerService,
    private readonly cold: ColdMigrationService,
    private readonly hosts: HostService,
  ) {}

  private get db() {
    return this.store.db;
  }

  private readonly running = new Map<string, Promise<void>>();

  async start(auth: AuthContext, host: string): Promise<Evacuation> {
    const h = await this.hosts.get(host);
    const on = await this.db
      .selectFrom('servers')
      .select(['id', 'name', 'vm_state', 'task_state'])
      .where('host', '=', host)
      .where('deleted_at', 'is', null)
      .orderBy('created_at')
      .execute();
    if (h.state === 'down' || !this.servers.driverOn(host))
      throw conflict(
        `Host ${host} is ${h.state === 'down' ? 'down (its agent is not reporting)' : 'not connected to this control plane'}; ${
          on.length
            ? `the disks of ${on.map((s) => `${s.name} (${s.id})`).join(', ')} live only on that host, so they cannot be moved or rebuilt elsewhere. Bring the agent back and evacuate again, or restore those servers from their backups (bulwark server backup restore).`
            : 'it has no servers to move.'
        }`,
      );
    if (await this.activeFor(host)) throw conflict(`Host ${host} is already being evacuated.`);
    // First: no new server lands there while its servers leave.
    if (h.state !== 'disabled') await this.hosts.setState(host, 'disabled');
    const results: EvacuationResult[] = on.map((s) => ({
      server_id: s.id,
      name: s.name,
      action: s.vm_state === 'active' ? 'live-migration' : s.vm_state === 'stopped' ? 'migration' : 'skipped',
      status: s.vm_state === 'active' || s.vm_state === 'stopped' ? 'pending' : 'skipped',
      dest_host: null,
      error:
        s.vm_state === 'active' || s.vm_state === 'stopped'
          ? null
          : `it is ${s.vm_state}: only running (live) and stopped (cold) servers are moved; act on it and evacuate again.`,
    }));
    const now = nowIso();
    const row: Evacuation = {
      id: uuid(),
      host,
      status: 'running',
      total: results.length,
      done: results.filter((r) => r.status === 'skipped').length,
      results: JSON.stringify(results),
      requested_by: auth.userId,
      created_at: now,
      updated_at: now,
    };
    await this.db.insertInto('host_evacuations').values(row).execute();
    const work = this.run(auth, row.id, results).finally(() => this.running.delete(row.id));
    this.running.set(row.id, work);
    return row;
  }

  private async activeFor(host: string): Promise<boolean> {
    const r = await this.db
      .selectFrom('host_evacuations')
      .select('id')
      .where('host', '=', host)
      .where('status', '=', 'running')
      .executeTakeFirst();
    return !!r && this.running.has(r.id);
  }

  /** Resolves when evacuation `id` (or every one) has finished: for tests. */
  async settled(id?: string): Promise<void> {
    await Promise.all(id ? [this.running.get(id)] : [...this.running.values()]);
  }

  private async run(auth: AuthContext, id: string, results: EvacuationResult[]): Promise<void> {
    const save = (status = 'running') =>
      this.db
        .updateTable('host_evacuations')
        .set({
          status,
          done: results.filter((r) => r.status !== 'pending').length,
          results: JSON.stringify(results),
          updated_at: nowIso(),
        })
        .where('id', '=', id)
        .execute();
    for (const r of results) {
      if (r.status !== 'pending') continue;
      try {
        r.dest_host = await this.move(auth, r);
        r.status = 'done';
      } catch (err) {
        r.status = 'error';
        r.error = (err as Error).message;
      }
      await save();
    }
    await save(results.some((r) => r.status !== 'done') ? 'failed' : 'completed');
  }

  /** One server off the host; resolves with where it went, or throws why it did not. */
  private async move(auth: AuthContext, r: EvacuationResult): Promise<string> {
    const migrationId =
      r.action === 'live-migration'
        ? await this.servers.liveMigrate(auth, r.server_id, {})
        : await this.cold.migrate(auth, r.server_id, {});
    await this.servers.settled(r.server_id);
    const m = await this.db
      .selectFrom('migrations')
      .select(['status', 'error', 'dest_host'])
      .where('id', '=', migrationId)
      .executeTakeFirstOrThrow();
    if (m.status === 'error') throw new Error(m.error ?? 'the migration failed');
    if (r.action === 'migration') {
      await this.cold.confirm(auth, r.server_id);
      await this.servers.settled(r.server_id);
      const s = await this.servers.get(auth, r.server_id);
      if (s.vm_state === 'resized') throw new Error('moved, but confirming the migration failed');
    }
    return m.dest_host ?? '';
  }

  async get(id: string): Promise<Evacuation> {
    const e = await this.db
      .selectFrom('host_evacuations')
      .selectAll()
      .where('id', '=', id)
      .executeTakeFirst();
    if (!e) throw notFound('evacuation', id);
    return e;
  }
}
