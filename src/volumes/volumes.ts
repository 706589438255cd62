import type { Selectable } from 'kysely';
import { BulwarkError, badRequest, conflict, notFound } from '../errors.js';
import type { StorageGate } from '../governance/storage-thresholds.js';
import type { HypervisorDriver } from '../host/hypervisor.js';
import type { KeyService } from '../keys/contract.js';
import type { AuthContext } from '../policy/context.js';
import { type QuotaGate, withQuota } from '../quotas/service.js';
import type { Store } from '../store/database.js';
import type { ServersTable, VolumeAttachmentsTable, VolumesTable } from '../store/schema.js';
import { nowIso, uuid } from '../util/ids.js';
import { TaskTracker } from '../util/tasks.js';
import type { VolumeTypeService } from './types.js';

export type Volume = Selectable<VolumesTable>;
export type Attachment = Selectable<VolumeAttachmentsTable>;

const GiB = 1024 ** 3;
/** Largest volume, GiB (qcow2 files grow as written; this caps what one request can promise). */
export const MAX_VOLUME_GIB = 1024;

/** Server states a volume may be attached to or detached from (Nova's). */
const ATTACHABLE = new Set(['active', 'stopped', 'paused']);

export interface CreateVolumeInput {
  name?: string | null | undefined;
  description?: string | null | undefined;
  size: number;
  volumeType?: string | null | undefined;
  metadata?: Record<string, string> | undefined;
}

/**
 * Cinder volumes on this host's driver. An encrypted type's volume gets a
 * new key in the key manager (owned by the volume's project) at creation;
 * the volume row holds only the key's id. Without a working key manager an
 * encrypted volume goes to `error`: there is never an unencrypted volume of
 * an encrypted type. Every query is scoped to the caller's project unless
 * the caller is a cloud admin; other projects' volumes are 404.
 */
export class VolumeService {
  private readonly tasks = new TaskTracker();

  constructor(
    private readonly store: Store,
    private readonly types: VolumeTypeService,
    private readonly driver: HypervisorDriver,
    /** The key manager (src/keys); null: encrypted volumes cannot be made (they fail closed). */
    private readonly keys: KeyService | null,
    /** Acts for the platform itself when reaping attachments of deleted servers. */
    private readonly serverOf: (auth: AuthContext, id: string) => Promise<Selectable<ServersTable>>,
  ) {
    driver.setVolumeKeySource((volumeId) => this.keyFor(volumeId));
  }

  /** Quotas (src/quotas); null: none enforced. Set by platform.ts. */
  quotas: QuotaGate | null = null;

  /** Storage thresholds (governance/storage-thresholds.ts); null: none. Set by platform.ts. */
  storage: StorageGate | null = null;

  private get db() {
    return this.store.db;
  }

  /** The driver's key source: only for a live, encrypted volume; fails closed. */
  private async keyFor(volumeId: string): Promise<Buffer | null> {
    const v = await this.db
      .selectFrom('volumes')
      .selectAll()
      .where('id', '=', volumeId)
      .where('deleted_at', 'is', null)
      .executeTakeFirst();
    if (!v) throw notFound('volume', volumeId);
    if (v.encrypted !== 1) return null;
    if (!this.keys || !v.key_secret_id)
      throw new BulwarkError(
        'Unavailable',
        'The key manager is not available; the encrypted volume stays locked.',
      );
    return this.keys.readKeyFor(v.project_id, v.key_secret_id);
  }

  /** Resolves when the volume's background work (create, extend, delete) is done. */
  settled(id?: string): Promise<void> {
    return this.tasks.settled(id);
  }

  async list(
    auth: AuthContext,
    filter: { allProjects?: boolean; name?: string | undefined; status?: string | undefined },
  ) {
    await this.reapDeletedServers();
    let q = this.db
      .selectFrom('volumes')
      .selectAll()
      .where('deleted_at', 'is', null)
      .orderBy('created_at', 'desc');
    if (!(auth.isAdmin && filter.allProjects)) q = q.where('project_id', '=', auth.projectId ?? '');
    if (filter.name !== undefined) q = q.where('name', '=', filter.name);
    if (filter.status !== undefined) q = q.where('status', '=', filter.status);
    return q.execute();
  }

  async get(auth: AuthContext, id: string): Promise<Volume> {
    await this.reapDeletedServers();
    let q = this.db.selectFrom('volumes').selectAll().where('id', '=', id).where('deleted_at', 'is', null);
    if (!auth.isAdmin) q = q.where('project_id', '=', auth.projectId ?? '');
    const v = await q.executeTakeFirst();
    if (!v) throw notFound('volume', id);
    return v;
  }

  async attachments(volumeIds: string[]): Promise<Attachment[]> {
    if (!volumeIds.length) return [];
    return this.db.selectFrom('volume_attachments').selectAll().where('volume_id', 'in', volumeIds).execute();
  }

  async typeName(typeId: string | null): Promise<string | null> {
    if (!typeId) return null;
    return (await this.types.get(typeId).catch(() => null))?.name ?? null;
  }

  async create(auth: AuthContext, input: CreateVolumeInput): Promise<Volume> {
    if (!auth.projectId) throw badRequest('A project-scoped token is needed to create a volume.');
    if (!Number.isSafeInteger(input.size) || input.size < 1 || input.size > MAX_VOLUME_GIB)
      throw badRequest(`Volume size must be a whole number of GiB from 1 to ${MAX_VOLUME_GIB}.`);
    const type = input.volumeType
      ? await this.types.get(input.volumeType).catch(() => {
          throw notFound('volume type', String(input.volumeType));
        })
      : null;
    const enc = type ? await this.types.encryption(type.id) : null;
    await this.storage?.check('volumes', 'volume', auth);
    const now = nowIso();
    const row: Volume = {
      id: uuid(),
      name: input.name ?? null,
      description: input.description ?? null,
      project_id: auth.projectId,
      user_id: auth.userId,
      size: input.size,
      status: 'creating',
      volume_type_id: type?.id ?? null,
      encrypted: enc ? 1 : 0,
      key_secret_id: null,
      fault: null,
      metadata: JSON.stringify(input.metadata ?? {}),
      created_at: now,
      updated_at: now,
      deleted_at: null,
    };
    // Quota (src/quotas): checked and inserted in one transaction under the project's lock.
    await withQuota(
      this.quotas,
      this.db,
      { projectId: auth.projectId, userId: auth.userId },
      { volumes: 1, gigabytes: input.size },
      'cinder',
      (tx) => tx.insertInto('volumes').values(row).execute(),
    );
    this.tasks.track(row.id, this.build(row, enc?.key_size === 512 ? 512 : 256));
    return row;
  }

  private async setStatus(
    id: string,
    status: string,
    fault: string | null = null,
    more: Partial<Volume> = {},
  ) {
    await this.db
      .updateTable('volumes')
      .set({ status, fault, updated_at: nowIso(), ...more })
      .where('id', '=', id)
      .execute();
  }

  private async build(v: Volume, bits: 256 | 512): Promise<void> {
    let key: Buffer | null = null;
    try {
      if (v.encrypted === 1) {
        if (!this.keys)
          throw new BulwarkError(
            'Unavailable',
            'The key manager is not available; an encrypted volume cannot be created.',
          );
        // A build resumed after a restart keeps the key it already made.
        const secretId =
          v.key_secret_id ??
          (await this.keys.createKey(v.project_id, {
            name: `volume ${v.id}`,
            bits,
            purpose: 'volume-encryption',
          }));
        await this.db
          .updateTable('volumes')
          .set({ key_secret_id: secretId })
          .where('id', '=', v.id)
          .execute();
        key = await this.keys.readKeyFor(v.project_id, secretId);
        if (key.length * 8 !== bits)
          throw new BulwarkError('Unavailable', 'The key manager returned a key of the wrong size.');
      }
      await this.driver.createVolume(v.id, v.size * GiB, key);
      await this.setStatus(v.id, 'available');
    } catch (err) {
      const msg =
        err instanceof BulwarkError ? err.message : 'The volume could not be created; see the daemon log.';
      await this.setStatus(v.id, 'error', msg).catch(() => undefined);
    } finally {
      key?.fill(0);
    }
  }

  async update(
    auth: AuthContext,
    id: string,
    input: {
      name?: string | null | undefined;
      description?: string | null | undefined;
      metadata?: Record<string, string> | undefined;
    },
  ) {
    const v = await this.get(auth, id);
    const set: Partial<Volume> = { updated_at: nowIso() };
    if (input.name !== undefined) set.name = input.name;
    if (input.description !== undefined) set.description = input.description;
    if (input.metadata !== undefined) set.metadata = JSON.stringify(input.metadata);
    await this.db.updateTable('volumes').set(set).where('id', '=', v.id).execute();
    return this.get(auth, v.id);
  }

  /**
   * For backups (src/backups): moves the volume from one of `from` to `to`
   * (one request wins a race), and back with `release`.
   */
  async hold(id: string, from: string[], to: string): Promise<boolean> {
    return this.claim(id, from, to);
  }

  async release(id: string, status: string, fault: string | null = null): Promise<void> {
    await this.setStatus(id, status, fault);
  }

  /** The volume's key (null: unencrypted), read on its owner's behalf; for backups and restores. */
  keyOf(volumeId: string): Promise<Buffer | null> {
    return this.keyFor(volumeId);
  }

  /** Moves `from` → `to` only if the volume is still in `from` (one request wins a race). */
  private async claim(id: string, from: string[], to: string, db = this.db): Promise<boolean> {
    const r = await db
      .updateTable('volumes')
      .set({ status: to, updated_at: nowIso() })
      .where('id', '=', id)
      .where('status', 'in', from)
      .where('deleted_at', 'is', null)
      .executeTakeFirst();
    return Number(r.numUpdatedRows) === 1;
  }

  async extend(auth: AuthContext, id: string, newSize: number): Promise<void> {
    const v = await this.get(auth, id);
    if (!Number.isSafeInteger(newSize) || newSize <= v.size || newSize > MAX_VOLUME_GIB)
      throw badRequest(
        `New size for extend must be greater than current size (${v.size} GiB) and at most ${MAX_VOLUME_GIB}.`,
      );
    const claimed = await withQuota(
      this.quotas,
      this.db,
      { projectId: v.project_id, userId: auth.userId },
      { gigabytes: newSize - v.size },
      'cinder',
      (tx) => this.claim(v.id, ['available'], 'extending', tx),
    );
    if (!claimed)
      throw badRequest(`Volume status must be available to extend, but current status is: ${v.status}.`);
    this.tasks.track(
      v.id,
      (async () => {
        let key: Buffer | null = null;
        try {
          key = await this.keyFor(v.id);
          await this.driver.resizeVolume(v.id, newSize * GiB, key);
          await this.setStatus(v.id, 'available', null, { size: newSize });
        } catch (err) {
          const msg = err instanceof BulwarkError ? err.message : 'The volume could not be extended.';
          await this.setStatus(v.id, 'available', `extend failed: ${msg}`).catch(() => undefined);
        } finally {
          key?.fill(0);
        }
      })(),
    );
  }

  async delete(auth: AuthContext, id: string): Promise<void> {
    const v = await this.get(auth, id);
    // Cinder's rule: a volume with snapshots is not deleted (its snapshots live inside its file).
    const snaps = await this.db
      .selectFrom('snapshots')
      .select('id')
      .where('kind', '=', 'volume')
      .where('resource_id', '=', v.id)
      .where('deleted_at', 'is', null)
      .execute();
    if (snaps.length)
      throw badRequest(
        `Invalid volume: Volume ${v.id} has ${snaps.length} snapshot(s); delete them first (openstack volume snapshot delete).`,
      );
    if (!(await this.claim(v.id, ['available', 'error', 'error_deleting'], 'deleting')))
      throw badRequest(
        `Invalid volume: Volume status must be available or error or error_restoring or error_extending or error_managing and must not be migrating, attached, belong to a group, have snapshots, awaiting a transfer, or be disassociated from snapshots after volume transfer. (status ${v.status})`,
      );
    this.tasks.track(v.id, this.remove(v));
  }

  private async remove(v: Volume): Promise<void> {
    try {
      // The key first: once it is gone the data is unreadable, even if removing the file failed.
      if (v.key_secret_id) {
        if (!this.keys) throw new BulwarkError('Unavailable', 'The key manager is not available.');
        await this.keys.deleteKeyFor(v.project_id, v.key_secret_id);
      }
      await this.driver.deleteVolume(v.id);
      await this.setStatus(v.id, 'deleted', null, { deleted_at: nowIso() });
    } catch (err) {
      const msg = err instanceof BulwarkError ? err.message : 'The volume could not be deleted.';
      await this.setStatus(v.id, 'error_deleting', msg).catch(() => undefined);
    }
  }

  // ---- attachments (Nova's os-volume_attachments) ----------------------------------------------

  private async serverFor(auth: AuthContext, serverId: string) {
    const s = await this.serverOf(auth, serverId);
    if (s.quarantine !== null && !auth.isAdmin)
      throw conflict(`Server ${s.id} is quarantined; only an administrator can act on it.`);
    return s;
  }

  async listAttachments(auth: AuthContext, serverId: string): Promise<Attachment[]> {
    const s = await this.serverOf(auth, serverId);
    await this.reapDeletedServers();
    return this.db
      .selectFrom('volume_attachments')
      .selectAll()
      .where('server_id', '=', s.id)
      .orderBy('attached_at')
      .execute();
  }

  async getAttachment(auth: AuthContext, serverId: string, volumeId: string): Promise<Attachment> {
    const a = (await this.listAttachments(auth, serverId)).find((x) => x.volume_id === volumeId);
    if (!a) throw notFound('volume attachment', volumeId);
    return a;
  }

  async attach(auth: AuthContext, serverId: string, volumeId: string): Promise<Attachment> {
    const s = await this.serverFor(auth, serverId);
    // The volume must be the server's project's own (an admin acting across projects too).
    const v = await this.get(auth, volumeId).catch(() => {
      throw notFound('volume', volumeId);
    });
    if (v.project_id !== s.project_id) throw notFound('volume', volumeId);
    if (!ATTACHABLE.has(s.vm_state) || s.task_state !== null)
      throw conflict(`Cannot 'attach_volume' instance ${s.id} while it is in vm_state ${s.vm_state}.`);
    if (!(await this.claim(v.id, ['available'], 'attaching')))
      throw badRequest(
        `Invalid volume: volume ${v.id} status must be available to attach (it is ${v.status}).`,
      );
    try {
      const { device } = await this.driver.attachVolume(s.id, v.id);
      const a: Attachment = { volume_id: v.id, id: uuid(), server_id: s.id, device, attached_at: nowIso() };
      await this.db.insertInto('volume_attachments').values(a).execute();
      await this.setStatus(v.id, 'in-use');
      return a;
    } catch (err) {
      await this.driver.detachVolume(s.id, v.id).catch(() => undefined);
      await this.setStatus(
        v.id,
        'available',
        err instanceof BulwarkError ? `attach failed: ${err.message}` : null,
      );
      throw err;
    }
  }

  async detach(auth: AuthContext, serverId: string, volumeId: string): Promise<void> {
    const s = await this.serverFor(auth, serverId);
    const a = await this.getAttachment(auth, s.id, volumeId);
    if (!(await this.claim(a.volume_id, ['in-use'], 'detaching')))
      throw conflict(`Volume ${volumeId} is busy; try again.`);
    try {
      await this.driver.detachVolume(s.id, a.volume_id);
    } catch (err) {
      await this.setStatus(a.volume_id, 'in-use');
      throw err;
    }
    await this.db.deleteFrom('volume_attachments').where('volume_id', '=', a.volume_id).execute();
    await this.setStatus(a.volume_id, 'available');
  }

  /**
   * Attachments whose server has been deleted: the driver already unlinked
   * the file and gave it back to root when it removed the guest; here the
   * record follows and the volume is available again.
   */
  async reapDeletedServers(): Promise<void> {
    const stale = await this.db
      .selectFrom('volume_attachments as a')
      .leftJoin('servers as s', 's.id', 'a.server_id')
      .select(['a.volume_id', 'a.server_id'])
      .where((eb) => eb.or([eb('s.id', 'is', null), eb('s.deleted_at', 'is not', null)]))
      .execute();
    for (const a of stale) {
      await this.driver.detachVolume(a.server_id, a.volume_id).catch(() => undefined);
      await this.db.deleteFrom('volume_attachments').where('volume_id', '=', a.volume_id).execute();
      await this.setStatus(a.volume_id, 'available');
    }
  }

  /**
   * After a daemon restart, before the API serves (docs/reliability.md): no
   * volume stays in a state whose task died with the old process. Creates
   * and deletes are resumed; an interrupted attach is undone (the guest may
   * have it plugged, the record does not) and an interrupted detach is done
   * again; interrupted extends and backups give the volume back as it was,
   * saying so in its fault; an interrupted restore is an error (its data is
   * partly written). `servers` are this host's undeleted servers, whose
   * guests an interrupted attach may have reached.
   */
  async reconcile(servers: string[]): Promise<Record<string, string[]>> {
    const stuck = await this.db
      .selectFrom('volumes')
      .selectAll()
      .where('deleted_at', 'is', null)
      .where('status', 'in', [...INTERRUPTIBLE])
      .execute();
    const done: Record<string, string[]> = {};
    for (const v of stuck) {
      done[v.status] = [...(done[v.status] ?? []), v.id];
      const attached = await this.db
        .selectFrom('volume_attachments')
        .select('server_id')
        .where('volume_id', '=', v.id)
        .executeTakeFirst();
      const restarted = `The daemon restarted during the volume's ${v.status}`;
      switch (v.status) {
        case 'creating': {
          // A file the old build finished is made again; an unfinished one is thrown away by createVolume.
          await this.driver.deleteVolume(v.id).catch(() => undefined);
          const type = v.volume_type_id
            ? await this.types.encryption(v.volume_type_id).catch(() => null)
            : null;
          this.tasks.track(v.id, this.build(v, type?.key_size === 512 ? 512 : 256));
          break;
        }
        case 'deleting':
          this.tasks.track(v.id, this.remove(v));
          break;
        case 'attaching':
          if (attached) await this.setStatus(v.id, 'in-use');
          else {
            for (const s of servers) await this.driver.detachVolume(s, v.id).catch(() => undefined);
            await this.setStatus(v.id, 'available', `${restarted}; it was not attached, attach it again.`);
          }
          break;
        case 'detaching':
          if (!attached) await this.setStatus(v.id, 'available');
          else
            await this.driver.detachVolume(attached.server_id, v.id).then(
              async () => {
                await this.db.deleteFrom('volume_attachments').where('volume_id', '=', v.id).execute();
                await this.setStatus(v.id, 'available');
              },
              (err: Error) =>
                this.setStatus(v.id, 'in-use', `${restarted}; detaching again failed: ${err.message}`),
            );
          break;
        case 'extending':
        case 'backing-up':
          await this.setStatus(
            v.id,
            attached ? 'in-use' : 'available',
            `${restarted}; it was not finished, try again.`,
          );
          break;
        default:
          await this.setStatus(
            v.id,
            'error_restoring',
            `${restarted}; its data is incomplete, restore it again.`,
          );
      }
    }
    return done;
  }
}

/** States a background task holds a volume in; a restart leaves them with no task (see reconcile). */
const INTERRUPTIBLE = [
  'creating',
  'deleting',
  'attaching',
  'detaching',
  'extending',
  'backing-up',
  'restoring-backup',
];
