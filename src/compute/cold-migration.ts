import type { Selectable } from 'kysely';
import { BulwarkError, badRequest, conflict } from '../errors.js';
import type { GuestSpec } from '../host/hypervisor.js';
import type { AuthContext } from '../policy/context.js';
import type { Store } from '../store/database.js';
import type { Schema } from '../store/schema.js';
import { nowIso, uuid } from '../util/ids.js';
import { POWER } from './server-states.js';
import type { Server, ServerService } from './servers.js';

type Migration = Selectable<Schema['migrations']>;

/** What moves a stopped guest between hosts (host/agent/hub.ts implements it). */
export interface ColdMover {
  /** Whether `host` can take part (an agent host whose channel is open). */
  canHost(host: string): boolean;
  /**
   * Defines the guest on `to` and copies the stopped guest's files there from
   * `from` (its encrypted overlay, UEFI variables and encrypted vTPM state, as
   * they lie at rest); the destination checks every file before it is used.
   */
  copy(o: {
    serverId: string;
    spec: GuestSpec;
    from: string;
    to: string;
    onProgress: (done: number, total: number) => Promise<void>;
  }): Promise<void>;
  /** The guest leaves `host`: processes, files, TPM state; its user too unless `other` shares the machine. */
  release(host: string, serverId: string, other: string): Promise<void>;
  /** After the server's record changed host: `host`'s firewall is recompiled (its port's rules come or go). */
  moved(host: string): Promise<void>;
}

const cannot = (action: string, s: Server) =>
  conflict(
    `Cannot '${action}' instance ${s.id} while it is in vm_state ${s.vm_state}${s.task_state ? ` and task_state ${s.task_state}` : ''}.`,
  );

/**
 * Nova's cold migration (docs/multi-host.md): `migrate` stops the guest,
 * moves its disk, vTPM state and definition to a host the scheduler picks
 * (never its own; its group's policy kept) and leaves it VERIFY_RESIZE there;
 * `confirmResize` cleans the source, `revertResize` brings it back. The
 * source's resources stay held (a placement row keyed by the migration, as
 * Nova's migration allocation) until then, so a revert always fits.
 */
export class ColdMigrationService {
  /** Set by the daemon when agents can be driven; null: migrate is refused. */
  mover: ColdMover | null = null;

  constructor(
    private readonly store: Store,
    private readonly servers: ServerService,
  ) {
    servers.beforeDestroy = (id) => this.dropPending(id);
  }

  private get db() {
    return this.store.db;
  }

  private mark(id: string, set: Partial<Migration>) {
    return this.db
      .updateTable('migrations')
      .set({ ...set, updated_at: nowIso() })
      .where('id', '=', id)
      .execute();
  }

  private setServer(id: string, set: Partial<Server>) {
    return this.db
      .updateTable('servers')
      .set({ ...set, updated_at: nowIso() })
      .where('id', '=', id)
      .execute();
  }

  /** The cold migration waiting for confirm or revert. */
  private pending(serverId: string): Promise<Migration | undefined> {
    return this.db
      .selectFrom('migrations')
      .selectAll()
      .where('server_id', '=', serverId)
      .where('migration_type', '=', 'migration')
      .where('status', '=', 'finished')
      .executeTakeFirst();
  }

  /**
   * Starts a cold migration (admin). No host can take it (filters, its group's
   * policy): 400 with Nova's "No valid host", nothing changed. Answers at once;
   * the move runs in the background (status RESIZE).
   */
  async migrate(auth: AuthContext, id: string, opts: { host?: string | null }): Promise<string> {
    const s = await this.servers.getUnquarantined(auth, id);
    if (!this.mover)
      throw new BulwarkError('Unavailable', 'Migration needs agent hosts (bulwark serve --agent-listen).');
    if ((s.vm_state !== 'active' && s.vm_state !== 'stopped') || s.task_state !== null)
      throw cannot('migrate', s);
    const from = s.host;
    if (!from || !this.servers.driverOn(from))
      throw new BulwarkError(
        'Unavailable',
        `Server ${s.id} is on host ${from ?? '(none)'}, which has no hypervisor connected to this control plane.`,
      );
    if (!this.mover.canHost(from))
      throw conflict(
        `Server ${s.id} is on host ${from}, which is not an agent host; only servers on agent hosts can be migrated.`,
      );
    if (opts.host && opts.host === from)
      throw badRequest(`The server is already on host ${from}; choose another host.`);
    const volumes = await this.db
      .selectFrom('volume_attachments')
      .select('volume_id')
      .where('server_id', '=', s.id)
      .execute();
    if (volumes.length)
      throw conflict(
        `Server ${s.id} has volumes attached (${volumes.map((v) => v.volume_id).join(', ')}); volumes live on the control plane's host, so detach them before migrating.`,
      );
    const migrationId = uuid();
    const to = await this.servers.claimMoveOf(s, {
      host: opts.host,
      mover: this.mover,
      busy: { task: 'resize_prep', status: 'RESIZE' },
      migration: { id: migrationId, type: 'migration', status: 'pre-migrating', oldVmState: s.vm_state },
      // The source stays claimed for the server until confirm or revert (Nova's migration allocation).
      also: async (tx, resources) => {
        await tx
          .insertInto('placements')
          .values({
            server_id: migrationId,
            host: from,
            vcpus: resources.vcpus,
            ram_mib: resources.ramMiB,
            disk_gib: resources.diskGiB,
            created_at: nowIso(),
          })
          .execute();
      },
    });
    await this.servers.recordChange(s, auth, 'action:migrate', { host: { from, to } });
    this.servers.track(s.id, this.run(s, from, to, migrationId));
    return migrationId;
  }

  private async run(s: Server, from: string, to: string, migrationId: string): Promise<void> {
    const wasActive = s.vm_state === 'active';
    const mover = this.mover;
    let placedThere = false;
    try {
      const src = this.servers.driverOn(from);
      if (!mover || !src) throw new BulwarkError('Unavailable', `host ${from} is not connected`);
      if (wasActive) {
        await this.setServer(s.id, { task_state: 'resize_migrating' });
        await src.shutdown(s.id, { timeoutMs: 10_000 });
      }
      await this.mark(migrationId, { status: 'migrating' });
      await this.setServer(s.id, { task_state: 'resize_migrating', power_state: POWER.SHUTDOWN });
      await mover.copy({
        serverId: s.id,
        spec: await this.servers.specFor(s),
        from,
        to,
        onProgress: async (done, total) => {
          await this.mark(migrationId, { disk_total_bytes: total, disk_processed_bytes: done });
        },
      });
      await this.mark(migrationId, { status: 'post-migrating' });
      // The record names the destination now: keys and firewall rules follow it there, not back.
      await this.setServer(s.id, { host: to, task_state: 'resize_finish' });
      placedThere = true;
      if (wasActive) await this.servers.driverOn(to)?.start(s.id);
      await this.setServer(s.id, {
        vm_state: 'resized',
        status: 'VERIFY_RESIZE',
        power_state: wasActive ? POWER.RUNNING : POWER.SHUTDOWN,
        task_state: null,
        fault: null,
      });
      await this.mark(migrationId, { status: 'finished' });
      await mover.moved(from).catch(() => undefined);
    } catch (err) {
      await this.failBack(s, { from, to, migrationId, wasActive, placedThere }, err);
    }
  }

  /** Fail closed: the destination's copy goes, the server is on its source as it was (or ERROR), with the reason. */
  private async failBack(
    s: Server,
    m: { from: string; to: string; migrationId: string; wasActive: boolean; placedThere: boolean },
    err: unknown,
  ): Promise<void> {
    const why = (err instanceof Error ? err.message : String(err))
      .replace(/[^\x20-\x7e\n]/g, '?')
      .slice(0, 2000);
    let cleaned = true;
    await this.mover?.release(m.to, s.id, m.from).catch(() => {
      cleaned = false;
    });
    await this.db.transaction().execute(async (tx) => {
      await tx.updateTable('servers').set({ host: m.from }).where('id', '=', s.id).execute();
      await tx.updateTable('placements').set({ host: m.from }).where('server_id', '=', s.id).execute();
      await tx.deleteFrom('placements').where('server_id', '=', m.migrationId).execute();
    });
    if (m.placedThere) await this.mover?.moved(m.to).catch(() => undefined);
    let back = !m.wasActive;
    if (m.wasActive)
      back =
        (await this.servers
          .driverOn(m.from)
          ?.start(s.id)
          .then(() => true)
          .catch(() => false)) ?? false;
    const fault = JSON.stringify({
      code: 500,
      message: `The migration to ${m.to} failed and the server stayed on ${m.from}: ${why}${cleaned ? '' : ` (the copy on ${m.to} could not be removed; its agent removes it when it reconnects)`}`,
      created: nowIso(),
    });
    const state = back ? (m.wasActive ? 'active' : 'stopped') : 'error';
    await this.setServer(s.id, {
      vm_state: state,
      status: state === 'active' ? 'ACTIVE' : state === 'stopped' ? 'SHUTOFF' : 'ERROR',
      power_state: state === 'active' ? POWER.RUNNING : POWER.SHUTDOWN,
      task_state: null,
      fault,
    });
    await this.mark(m.migrationId, { status: 'error', error: why });
  }

  /** Nova's confirmResize: the source's copy goes (files, vTPM state, user, rules); the server stays here. */
  async confirm(auth: AuthContext, id: string): Promise<void> {
    const { s, m } = await this.claimPending(auth, id, 'confirmResize', 'resize_confirming');
    await this.servers.recordChange(s, auth, 'action:confirmResize', {
      host: { from: m.source_host, to: s.host },
    });
    this.servers.track(s.id, this.finish(s, m, 'confirmed'));
  }

  /** Nova's revertResize: the destination's copy goes; the server is back on its source as it was before. */
  async revert(auth: AuthContext, id: string): Promise<void> {
    const { s, m } = await this.claimPending(auth, id, 'revertResize', 'resize_reverting');
    await this.servers.recordChange(s, auth, 'action:revertResize', {
      host: { from: s.host, to: m.source_host },
    });
    this.servers.track(s.id, this.finish(s, m, 'reverted'));
  }

  private async claimPending(auth: AuthContext, id: string, action: string, task: string) {
    const s = await this.servers.getUnquarantined(auth, id);
    const m = s.vm_state === 'resized' && s.task_state === null ? await this.pending(s.id) : undefined;
    if (!m?.dest_host) throw cannot(action, s);
    const claimed = await this.db
      .updateTable('servers')
      .set({ task_state: task, updated_at: nowIso() })
      .where('id', '=', s.id)
      .where('vm_state', '=', 'resized')
      .where('task_state', 'is', null)
      .executeTakeFirst();
    if (Number(claimed.numUpdatedRows) !== 1) throw cannot(action, s);
    return { s, m: m as Migration & { dest_host: string } };
  }

  private async finish(s: Server, m: Migration & { dest_host: string }, outcome: 'confirmed' | 'reverted') {
    const src = m.source_host;
    const dst = m.dest_host;
    const wasActive = m.old_vm_state === 'active';
    try {
      if (!this.mover) throw new BulwarkError('Unavailable', 'no mover');
      if (outcome === 'confirmed') {
        await this.mover.release(src, s.id, dst);
        await this.db.deleteFrom('placements').where('server_id', '=', m.id).execute();
        const running = (await this.servers.driverOn(dst)?.state(s.id)) === 'running';
        await this.setServer(s.id, {
          vm_state: running ? 'active' : 'stopped',
          status: running ? 'ACTIVE' : 'SHUTOFF',
          power_state: running ? POWER.RUNNING : POWER.SHUTDOWN,
          task_state: null,
        });
      } else {
        await this.mover.release(dst, s.id, src);
        await this.db.transaction().execute(async (tx) => {
          await tx.updateTable('servers').set({ host: src }).where('id', '=', s.id).execute();
          await tx.updateTable('placements').set({ host: src }).where('server_id', '=', s.id).execute();
          await tx.deleteFrom('placements').where('server_id', '=', m.id).execute();
        });
        await this.mover.moved(dst).catch(() => undefined);
        await this.mover.moved(src).catch(() => undefined);
        if (wasActive) await this.servers.driverOn(src)?.start(s.id);
        await this.setServer(s.id, {
          vm_state: wasActive ? 'active' : 'stopped',
          status: wasActive ? 'ACTIVE' : 'SHUTOFF',
          power_state: wasActive ? POWER.RUNNING : POWER.SHUTDOWN,
          task_state: null,
        });
      }
      await this.mark(m.id, { status: outcome });
    } catch (err) {
      // Still VERIFY_RESIZE (the copies it had are kept): the admin can try again.
      await this.setServer(s.id, {
        task_state: null,
        fault: JSON.stringify({
          code: 500,
          message: `${outcome === 'confirmed' ? 'confirmResize' : 'revertResize'} did not finish: ${(err as Error).message}; try it again.`,
          created: nowIso(),
        }),
      });
    }
  }

  /** A server deleted while VERIFY_RESIZE: its source copy and the source's hold go with it. */
  private async dropPending(serverId: string): Promise<void> {
    const m = await this.pending(serverId);
    if (!m) return;
    if (m.dest_host) await this.mover?.release(m.source_host, serverId, m.dest_host);
    await this.db.deleteFrom('placements').where('server_id', '=', m.id).execute();
    await this.mark(m.id, { status: 'cancelled' });
  }
}
