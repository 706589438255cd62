import type { Selectable } from 'kysely';
import type { AuditWriter } from '../audit/writer.js';
import { systemEvent } from '../audit/writer.js';
import type { ServerService } from '../compute/servers.js';
import { BulwarkError, badRequest, conflict, notFound } from '../errors.js';
import type { HypervisorDriver } from '../host/hypervisor.js';
import { KeyedMutex } from '../host/run.js';
import type { AuthContext } from '../policy/context.js';
import type { Store } from '../store/database.js';
import type { SnapshotsTable } from '../store/schema.js';
import { uuid } from '../util/ids.js';
import { TaskTracker } from '../util/tasks.js';
import type { VolumeService } from '../volumes/volumes.js';
import { type Existing, planCreate, planPrune } from './lifecycle.js';
import { purposeOf, requiredDescription, snapshotName } from './naming.js';
import type { SnapshotPolicyService } from './policies.js';

export type Snapshot = Selectable<SnapshotsTable>;
export type SnapshotKind = 'volume' | 'server';

export interface CreateSnapshotInput {
  /** The purpose; the platform appends the UTC time (naming.ts). */
  name: string | null | undefined;
  description: string | null | undefined;
  /** Server snapshots: RAM and device state too (the guest must run). */
  memory?: boolean | undefined;
  /** Volume snapshots: allow an in-use volume (Cinder's `force`). */
  force?: boolean | undefined;
  metadata?: Record<string, string> | undefined;
}

/** Server states a snapshot may be taken in (no task running); memory needs the guest running. */
const SNAPSHOTTABLE = new Set(['active', 'stopped', 'paused', 'suspended']);
const RUNNING = new Set(['active', 'paused']);
/** Statuses that count against a policy (an error snapshot holds nothing). */
const LIVE = ['creating', 'available', 'deleting'];

/**
 * Snapshots of volumes (Cinder) and of servers' root disks (Bulwark): each
 * is an internal qcow2 snapshot in its source's own file, so it is encrypted
 * like it (docs/snapshots.md). Every snapshot needs a description; its name
 * is `<purpose>-<UTC time>`. Lifecycle policies (policies.ts) bound how many
 * a server or volume keeps and for how long: creating past the count prunes
 * the oldest (audited as the platform) or is refused, and `prune()` (the
 * daemon's scheduler) removes what is past the age or the count.
 */
export class SnapshotService {
  private readonly tasks = new TaskTracker();
  /** One create or prune at a time per resource, so two requests cannot both pass the count. */
  private readonly perResource = new KeyedMutex();

  constructor(
    private readonly store: Store,
    private readonly driver: HypervisorDriver,
    private readonly audit: AuditWriter,
    private readonly policies: SnapshotPolicyService,
    private readonly volumes: VolumeService,
    private readonly servers: ServerService,
    /** The clock; tests move it to age snapshots. */
    private readonly now: () => Date = () => new Date(),
  ) {}

  private get db() {
    return this.store.db;
  }

  /** Resolves when the snapshot's background work (create, delete) is done. */
  settled(id?: string): Promise<void> {
    return this.tasks.settled(id);
  }

  private async liveOf(kind: SnapshotKind, resourceId: string): Promise<Snapshot[]> {
    return this.db
      .selectFrom('snapshots')
      .selectAll()
      .where('kind', '=', kind)
      .where('resource_id', '=', resourceId)
      .where('deleted_at', 'is', null)
      .where('status', 'in', LIVE)
      .orderBy('created_at')
      .execute();
  }

  /** The volume or server, as the caller may see it (another project's: 404), and its project. */
  private async resource(auth: AuthContext, kind: SnapshotKind, id: string, input: CreateSnapshotInput) {
    if (kind === 'volume') {
      const v = await this.volumes.get(auth, id);
      if (input.memory) throw badRequest('Volume snapshots have no memory; drop "memory".');
      if (!(v.status === 'available' || (v.status === 'in-use' && input.force === true)))
        throw badRequest(
          `Invalid volume: Volume ${v.id} status must be available${v.status === 'in-use' ? ' (or in-use with --force)' : ''}, but current status is: ${v.status}.`,
        );
      return { projectId: v.project_id, size: v.size, what: `Volume ${v.id}` };
    }
    const s = await this.servers.get(auth, id);
    if (s.quarantine !== null && !auth.isAdmin)
      throw conflict(`Server ${s.id} is quarantined; only an administrator can act on it.`);
    if (!SNAPSHOTTABLE.has(s.vm_state) || s.task_state !== null)
      throw conflict(`Cannot snapshot server ${s.id} while it is in vm_state ${s.vm_state}.`);
    if (input.memory && !RUNNING.has(s.vm_state))
      throw conflict(`Server ${s.id} is ${s.vm_state}; a memory snapshot needs it running.`);
    return { projectId: s.project_id, size: 0, what: `Server ${s.id}` };
  }

  async create(
    auth: AuthContext,
    kind: SnapshotKind,
    resourceId: string,
    input: CreateSnapshotInput,
  ): Promise<{ snapshot: Snapshot; warning: string | null }> {
    // Checked before anything is looked at or made: a refused request changes nothing.
    const description = requiredDescription(input.description);
    const purpose = purposeOf(input.name);
    const res = await this.resource(auth, kind, resourceId, input);
    return this.perResource.run(`${kind}:${resourceId}`, async () => {
      const existing = await this.liveOf(kind, resourceId);
      const policy = await this.policies.effective(res.projectId, kind, resourceId);
      const plan = planCreate(existing.map(toExisting), policy, res.what);
      for (const id of plan.prune) {
        const old = existing.find((s) => s.id === id) as Snapshot;
        await this.removeAsPlatform(
          old,
          `over the lifecycle policy's maximum count (${policy.maxCount}) to make room`,
        );
      }
      const at = this.now();
      const id = uuid();
      const row: Snapshot = {
        id,
        kind,
        resource_id: resourceId,
        project_id: res.projectId,
        user_id: auth.userId,
        name: snapshotName(purpose, at),
        purpose,
        description,
        tag: `bw-${id}`,
        memory: input.memory ? 1 : 0,
        size: res.size,
        status: 'creating',
        fault: null,
        metadata: JSON.stringify(input.metadata ?? {}),
        created_at: at.toISOString(),
        updated_at: at.toISOString(),
        deleted_at: null,
      };
      await this.db.insertInto('snapshots').values(row).execute();
      if (plan.warning)
        await this.audit.append(
          systemEvent({
            action: 'snapshot:policy_warning',
            reason: plan.warning,
            target: { type: kind, id: resourceId },
            actor: auth,
          }),
        );
      this.tasks.track(row.id, this.take(row));
      return { snapshot: row, warning: plan.warning };
    });
  }

  private async attachedTo(volumeId: string): Promise<string | null> {
    return (await this.volumes.attachments([volumeId]))[0]?.server_id ?? null;
  }

  private async take(s: Snapshot): Promise<void> {
    try {
      if (s.kind === 'volume')
        await this.driver.snapshotVolume(s.resource_id, s.tag, await this.attachedTo(s.resource_id));
      else await this.driver.snapshotServer(s.resource_id, s.tag, { memory: s.memory === 1 });
      await this.setStatus(s.id, 'available');
    } catch (err) {
      const msg =
        err instanceof BulwarkError ? err.message : 'The snapshot could not be taken; see the daemon log.';
      await this.setStatus(s.id, 'error', msg).catch(() => undefined);
    }
  }

  private async setStatus(id: string, status: string, fault: string | null = null, deleted = false) {
    const at = this.now().toISOString();
    await this.db
      .updateTable('snapshots')
      .set({ status, fault, updated_at: at, ...(deleted ? { deleted_at: at } : {}) })
      .where('id', '=', id)
      .execute();
  }

  /** Removes the snapshot from its file, then its record. */
  private async destroy(s: Snapshot): Promise<void> {
    if (s.kind === 'volume')
      await this.driver.deleteVolumeSnapshot(s.resource_id, s.tag, await this.attachedTo(s.resource_id));
    else await this.driver.deleteServerSnapshot(s.resource_id, s.tag);
    await this.setStatus(s.id, 'deleted', null, true);
  }

  /** Lifecycle pruning: the platform acts, and says why in the audit log. */
  private async removeAsPlatform(s: Snapshot, why: string): Promise<void> {
    let outcome: 'success' | 'failure' = 'success';
    let reason = `pruned ${s.name} of ${s.kind} ${s.resource_id}: ${why}`;
    try {
      await this.setStatus(s.id, 'deleting');
      await this.destroy(s);
    } catch (err) {
      outcome = 'failure';
      reason += `; failed: ${(err as Error).message}`;
      await this.setStatus(s.id, 'error_deleting', (err as Error).message).catch(() => undefined);
    }
    await this.audit.append(
      systemEvent({ action: 'snapshot:prune', reason, target: { type: 'snapshot', id: s.id }, outcome }),
    );
    if (outcome === 'failure') throw new BulwarkError('Unavailable', `Pruning snapshot ${s.id} failed.`);
  }

  /**
   * The scheduler's tick: every server's and volume's snapshots past its
   * policy's maximum age, then the oldest beyond its maximum count, are
   * removed (each audited as `snapshot:prune`). Returns the pruned ids.
   */
  async prune(): Promise<string[]> {
    await this.reapDeleted();
    const groups = await this.db
      .selectFrom('snapshots')
      .select(['kind', 'resource_id', 'project_id'])
      .where('deleted_at', 'is', null)
      .where('status', '=', 'available')
      .groupBy(['kind', 'resource_id', 'project_id'])
      .execute();
    const pruned: string[] = [];
    for (const g of groups) {
      const kind = g.kind as SnapshotKind;
      await this.perResource.run(`${kind}:${g.resource_id}`, async () => {
        const live = (await this.liveOf(kind, g.resource_id)).filter((s) => s.status === 'available');
        const policy = await this.policies.effective(g.project_id, kind, g.resource_id);
        const plan = planPrune(live.map(toExisting), policy, this.now());
        const why = new Map<string, string>([
          ...plan.expired.map(
            (id) => [id, `past the lifecycle policy's maximum age (${policy.maxAgeDays} days)`] as const,
          ),
          ...plan.overCount.map(
            (id) => [id, `over the lifecycle policy's maximum count (${policy.maxCount})`] as const,
          ),
        ]);
        for (const [id, reason] of why) {
          const s = live.find((x) => x.id === id) as Snapshot;
          await this.removeAsPlatform(s, reason).then(
            () => pruned.push(id),
            () => undefined, // audited as a failure; tried again next tick
          );
        }
      });
    }
    return pruned;
  }

  /** Snapshots of a deleted server went with its overlay: their records follow. */
  private async reapDeleted(): Promise<void> {
    const gone = await this.db
      .selectFrom('snapshots as s')
      .innerJoin('servers as v', 'v.id', 's.resource_id')
      .select('s.id')
      .where('s.kind', '=', 'server')
      .where('s.deleted_at', 'is', null)
      .where('v.deleted_at', 'is not', null)
      .execute();
    for (const g of gone) await this.setStatus(g.id, 'deleted', null, true);
  }

  async list(
    auth: AuthContext,
    filter: {
      kind?: SnapshotKind | undefined;
      resourceId?: string | undefined;
      allProjects?: boolean | undefined;
      name?: string | undefined;
      status?: string | undefined;
    },
  ): Promise<Snapshot[]> {
    await this.reapDeleted();
    let q = this.db
      .selectFrom('snapshots')
      .selectAll()
      .where('deleted_at', 'is', null)
      .orderBy('created_at', 'desc');
    if (!(auth.isAdmin && filter.allProjects)) q = q.where('project_id', '=', auth.projectId ?? '');
    if (filter.kind) q = q.where('kind', '=', filter.kind);
    if (filter.resourceId) q = q.where('resource_id', '=', filter.resourceId);
    if (filter.name !== undefined) q = q.where('name', '=', filter.name);
    if (filter.status !== undefined) q = q.where('status', '=', filter.status);
    return q.execute();
  }

  async get(auth: AuthContext, id: string, kind?: SnapshotKind): Promise<Snapshot> {
    await this.reapDeleted();
    let q = this.db.selectFrom('snapshots').selectAll().where('id', '=', id).where('deleted_at', 'is', null);
    if (!auth.isAdmin) q = q.where('project_id', '=', auth.projectId ?? '');
    if (kind) q = q.where('kind', '=', kind);
    const s = await q.executeTakeFirst();
    if (!s) throw notFound(kind === 'volume' ? 'snapshot' : 'server snapshot', id);
    return s;
  }

  async delete(auth: AuthContext, id: string, kind?: SnapshotKind): Promise<void> {
    const s = await this.get(auth, id, kind);
    if (s.kind === 'server' && !auth.isAdmin) {
      const server = await this.servers.get(auth, s.resource_id).catch(() => null);
      if (server?.quarantine != null)
        throw conflict(`Server ${server.id} is quarantined; only an administrator can act on it.`);
    }
    const r = await this.db
      .updateTable('snapshots')
      .set({ status: 'deleting', updated_at: this.now().toISOString() })
      .where('id', '=', s.id)
      .where('status', 'in', ['available', 'error', 'error_deleting'])
      .executeTakeFirst();
    if (Number(r.numUpdatedRows) !== 1)
      throw badRequest(`Invalid snapshot: Snapshot status must be available or error, but is ${s.status}.`);
    this.tasks.track(
      s.id,
      this.destroy(s).catch(async (err) => {
        const msg = err instanceof BulwarkError ? err.message : 'The snapshot could not be deleted.';
        await this.setStatus(s.id, 'error_deleting', msg).catch(() => undefined);
      }),
    );
  }
}

const toExisting = (s: Snapshot): Existing => ({ id: s.id, createdAt: s.created_at });
