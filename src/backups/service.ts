import type { KeyObject } from 'node:crypto';
import { join } from 'node:path';
import type { Selectable } from 'kysely';
import { type AuditWriter, systemEvent } from '../audit/writer.js';
import type { ServerService } from '../compute/servers.js';
import { BulwarkError, badRequest, conflict, notFound } from '../errors.js';
import type { ApprovalService } from '../governance/approvals.js';
import type { DiskHandle } from '../host/disk-export.js';
import type { HypervisorDriver } from '../host/hypervisor.js';
import type { KeyService } from '../keys/contract.js';
import type { AuthContext } from '../policy/context.js';
import type { Store } from '../store/database.js';
import type { BackupRepositoriesTable, BackupsTable } from '../store/schema.js';
import { nowIso, uuid } from '../util/ids.js';
import { TaskTracker } from '../util/tasks.js';
import type { VolumeService } from '../volumes/volumes.js';
import { parsePublicKey, parseRecoveryKey, publicOf } from './crypto.js';
import { type DiskSource, Repository, type VerifyReport } from './repository.js';
import {
  checkS3Location,
  loadS3Credentials,
  parseS3Target,
  type S3Location,
  S3Target,
  s3TargetString,
} from './s3-target.js';
import { type BackupTarget, LocalTarget } from './target.js';

export type Backup = Selectable<BackupsTable>;

/** What a server backup keeps of its server besides the disks (docs/backups.md). */
export interface ServerDefinition {
  name: string;
  flavor_id: string;
  image_id: string;
  /** The user's metadata (the platform's own keys, such as created_by, are made afresh). */
  metadata: Record<string, string>;
  /** base64, as given at create; delivered again to a restored server. */
  user_data: string | null;
  networks: string[];
  security_groups: string[];
  volumes: { id: string; name: string | null; size: number; type_id: string | null }[];
}

/** Metadata keys the platform writes itself; a restored server gets its own. */
const PLATFORM_METADATA = new Set([
  'created_by',
  'created_at',
  'approved_by',
  'cloned_from',
  'restored_from',
]);
const ROOT_DISK = 'root';
const volumeDisk = (id: string) => `volume:${id}`;
type RepoRow = Selectable<BackupRepositoriesTable>;
type BackupDone = 'volume:backups:create:done' | 'server:backups:create:done';

/** Longest a recovery key stays unlocked in memory. */
export const MAX_UNLOCK_SECONDS = 3600;

/**
 * Backups and restores (docs/backups.md). The daemon can write backups (it
 * holds the recovery *public* key and the chunk-id key) but cannot read
 * them: every restore needs the recovery private key, given with the request
 * or unlocked into memory for a short time by a cloud admin. Nothing is
 * restored before every chunk of the backup has authenticated.
 */
export class BackupService {
  private readonly tasks = new TaskTracker();
  private readonly progress = new Map<string, number>();
  private readonly restoreErrors = new Map<string, string>();
  private recovery: { key: KeyObject; until: number; by: string } | null = null;
  /** Set by platform.ts: servers (whole-server backups) and approvals (restore-in-place). */
  servers: ServerService | null = null;
  approvals: ApprovalService | null = null;
  private repo: { row: RepoRow; repository: Repository } | null = null;

  constructor(
    private readonly store: Store,
    private readonly volumes: VolumeService,
    private readonly driver: HypervisorDriver,
    private readonly keys: KeyService,
    private readonly audit: AuditWriter,
    private readonly opts: {
      dataDir: string;
      adminProjectName: string;
      now?: () => number;
      /** Where S3 credentials are read from (process.env by default). */
      env?: NodeJS.ProcessEnv;
    },
  ) {}

  private get db() {
    return this.store.db;
  }

  private now(): number {
    return this.opts.now?.() ?? Date.now();
  }

  settled(id?: string): Promise<void> {
    return this.tasks.settled(id);
  }

  progressOf(id: string): number | null {
    return this.progress.get(id) ?? null;
  }

  /** Why the last server restore from this backup failed (since the daemon started), or null. */
  restoreErrorOf(id: string): string | null {
    return this.restoreErrors.get(id) ?? null;
  }

  // ---- the repository and its recovery key --------------------------------------------------

  private async repository(): Promise<{ row: RepoRow; repository: Repository }> {
    if (this.repo) return this.repo;
    const row = await this.db
      .selectFrom('backup_repositories')
      .selectAll()
      .where('id', '=', 'default')
      .executeTakeFirst();
    if (!row)
      throw conflict(
        'There is no backup repository yet: a cloud admin creates it with `bulwark backup repository init --recovery-key-out FILE`.',
      );
    this.repo = { row, repository: new Repository(this.openTarget(row.target), row.recipient_public_key) };
    return this.repo;
  }

  /** `local:/dir` or `s3:...` (the S3 credentials come from the daemon's environment, not the database). */
  private openTarget(target: string): BackupTarget {
    if (target.startsWith('s3:'))
      return new S3Target(parseS3Target(target), loadS3Credentials(this.opts.env));
    return new LocalTarget(target.replace(/^local:/, ''));
  }

  async showRepository() {
    const { row, repository } = await this.repository();
    const live = await this.db
      .selectFrom('backups')
      .select((eb) => eb.fn.countAll<number>().as('n'))
      .where('deleted_at', 'is', null)
      .executeTakeFirstOrThrow();
    return {
      target: row.target,
      recipient_public_key: row.recipient_public_key,
      created_at: row.created_at,
      created_by: row.created_by,
      backups: Number(live.n),
      stored_bytes: await repository.target.size(),
      unlocked_until: this.unlocked() ? new Date(this.recovery!.until).toISOString() : null,
    };
  }

  /**
   * Creates the repository for `publicKey` (X25519, base64; the private half
   * never reaches the daemon). Its chunk-id key is made in the key manager,
   * owned by the admin project.
   */
  async initRepository(auth: AuthContext, publicKey: string, s3?: S3Location) {
    parsePublicKey(publicKey);
    if (await this.db.selectFrom('backup_repositories').select('id').executeTakeFirst())
      throw conflict('The backup repository exists already; its recovery key cannot be replaced.');
    const project = await this.db
      .selectFrom('projects')
      .select('id')
      .where('name', '=', this.opts.adminProjectName)
      .executeTakeFirstOrThrow();
    const target = s3 ? s3TargetString(checkS3Location(s3)) : `local:${join(this.opts.dataDir, 'backups')}`;
    const store = this.openTarget(target);
    // Reaches the store before anything is made: bad credentials or a repository there already stop here.
    if (await store.has('config'))
      throw conflict(`${store.description} holds a backup repository already; give it its own place.`);
    const secretId = await this.keys.createKey(project.id, {
      name: 'backup repository chunk-id key',
      bits: 256,
      purpose: 'backup-chunk-id',
    });
    const idKey = await this.keys.readKeyFor(project.id, secretId);
    try {
      await new Repository(store, publicKey).init(idKey);
    } finally {
      idKey.fill(0);
    }
    await this.db
      .insertInto('backup_repositories')
      .values({
        id: 'default',
        target,
        recipient_public_key: publicKey,
        id_key_secret_id: secretId,
        id_key_project_id: project.id,
        created_by: auth.userId,
        created_at: nowIso(),
      })
      .execute();
    return this.showRepository();
  }

  private async recoveryKey(pem: string): Promise<KeyObject> {
    const { row } = await this.repository();
    const key = parseRecoveryKey(pem);
    if (publicOf(key) !== row.recipient_public_key)
      throw badRequest('That is not the recovery key of this backup repository.');
    return key;
  }

  /** Holds the recovery key in memory (never on disk) for `seconds`, for restores through the Cinder API. */
  async unlock(auth: AuthContext, pem: string, seconds: number) {
    if (!Number.isSafeInteger(seconds) || seconds < 1 || seconds > MAX_UNLOCK_SECONDS)
      throw badRequest(`The unlock time must be 1 to ${MAX_UNLOCK_SECONDS} seconds.`);
    this.recovery = { key: await this.recoveryKey(pem), until: this.now() + seconds * 1000, by: auth.userId };
    return this.showRepository();
  }

  lock(): void {
    this.recovery = null;
  }

  private unlocked(): KeyObject | null {
    if (this.recovery && this.recovery.until > this.now()) return this.recovery.key;
    this.recovery = null;
    return null;
  }

  private async restoreKey(pem: string | undefined): Promise<KeyObject> {
    if (pem !== undefined) return this.recoveryKey(pem);
    const k = this.unlocked();
    if (!k)
      throw conflict(
        'The backup repository is locked: a restore needs the recovery key (`bulwark backup restore --recovery-key FILE`, or `bulwark backup unlock --recovery-key FILE` first).',
      );
    return k;
  }

  private async idKey(row: RepoRow): Promise<Buffer> {
    return this.keys.readKeyFor(row.id_key_project_id, row.id_key_secret_id);
  }

  // ---- the catalog ------------------------------------------------------------------------

  async list(
    auth: AuthContext,
    f: {
      allProjects?: boolean;
      volumeId?: string | undefined;
      name?: string | undefined;
      status?: string | undefined;
      kind?: 'volume' | 'server';
    },
  ): Promise<Backup[]> {
    let q = this.db
      .selectFrom('backups')
      .selectAll()
      .where('deleted_at', 'is', null)
      .orderBy('created_at', 'desc');
    if (!(auth.isAdmin && f.allProjects)) q = q.where('project_id', '=', auth.projectId ?? '');
    if (f.volumeId !== undefined) q = q.where('source_id', '=', f.volumeId);
    if (f.name !== undefined) q = q.where('name', '=', f.name);
    if (f.status !== undefined) q = q.where('status', '=', f.status);
    if (f.kind !== undefined) q = q.where('kind', '=', f.kind);
    return q.execute();
  }

  /** A backup the caller may see; `kind`: only of that kind (the other kind's API answers 404). */
  async get(auth: AuthContext, id: string, kind?: 'volume' | 'server'): Promise<Backup> {
    let q = this.db.selectFrom('backups').selectAll().where('id', '=', id).where('deleted_at', 'is', null);
    if (!auth.isAdmin) q = q.where('project_id', '=', auth.projectId ?? '');
    if (kind) q = q.where('kind', '=', kind);
    const b = await q.executeTakeFirst();
    if (!b) throw notFound('backup', id);
    return b;
  }

  private async live(): Promise<{ id: string; sealSha256: string }[]> {
    const rows = await this.db
      .selectFrom('backups')
      .select(['id', 'seal_sha256'])
      .where('deleted_at', 'is', null)
      .where('seal_sha256', 'is not', null)
      .where('status', 'not in', ['deleting', 'deleted'])
      .execute();
    return rows.map((r) => ({ id: r.id, sealSha256: r.seal_sha256 as string }));
  }

  private async set(id: string, fields: Partial<Backup>): Promise<void> {
    await this.db
      .updateTable('backups')
      .set({ ...fields, updated_at: nowIso() })
      .where('id', '=', id)
      .execute();
  }

  private async record(
    auth: AuthContext,
    action: string,
    id: string,
    outcome: 'success' | 'failure',
    reason: string,
  ) {
    await this.audit
      .append(systemEvent({ action, reason, target: { type: 'backup', id }, outcome, actor: auth }))
      .catch(() => undefined);
  }

  // ---- backing up -------------------------------------------------------------------------

  /** The volume a backup or schedule would read, as the caller may see it (404 otherwise). */
  volumeFor(auth: AuthContext, id: string) {
    return this.volumes.get(auth, id);
  }

  /** The server a backup or schedule would read, as the caller may see it (404 otherwise). */
  serverFor(auth: AuthContext, id: string) {
    return this.serverService.get(auth, id);
  }

  /**
   * Cinder's backup create. The volume must be `available`, or `in-use`
   * with `force` (its guest is paused while it is read). `incremental`
   * needs an earlier backup of the volume; every backup only stores the
   * chunks the repository lacks, so each one restores on its own.
   */
  async createVolumeBackup(
    auth: AuthContext,
    input: {
      volumeId: string;
      name?: string | null | undefined;
      description?: string | null | undefined;
      incremental?: boolean;
      force?: boolean;
      scheduleId?: string;
    },
  ): Promise<Backup> {
    const { row } = await this.repository();
    const v = await this.volumes.get(auth, input.volumeId);
    if (v.status === 'in-use' && !input.force)
      throw badRequest(
        'Invalid volume: Volume to be backed up must be available or in-use with --force, but the current status is "in-use".',
      );
    if (v.status !== 'available' && v.status !== 'in-use')
      throw badRequest(
        `Invalid volume: Volume to be backed up must be available or in-use, but the current status is "${v.status}".`,
      );
    const parent =
      (await this.list(auth, { volumeId: v.id, status: 'available', kind: 'volume' }))[0] ?? null;
    if (input.incremental && !parent)
      throw badRequest('Invalid backup: No backups available to do an incremental backup.');
    const held =
      v.status === 'available' ? await this.volumes.hold(v.id, ['available'], 'backing-up') : false;
    if (v.status === 'available' && !held) throw conflict(`Volume ${v.id} is busy; try again.`);
    const b = this.startingBackup(auth, input, parent, {
      project_id: v.project_id,
      kind: 'volume',
      source_id: v.id,
      source_type_id: v.volume_type_id,
      size: v.size,
      schedule_id: input.scheduleId ?? null,
      definition: null,
    });
    await this.db.insertInto('backups').values(b).execute();
    const serverId = (await this.volumes.attachments([v.id]))[0]?.server_id ?? null;
    this.tasks.track(b.id, this.runBackup(auth, b, row, serverId, held));
    return b;
  }

  private async runBackup(
    auth: AuthContext,
    b: Backup,
    row: RepoRow,
    serverId: string | null,
    held: boolean,
  ) {
    const t0 = this.now();
    let disk: DiskHandle | null = null;
    let idKey: Buffer | null = null;
    try {
      const { repository } = await this.repository();
      idKey = await this.idKey(row);
      const key = await this.volumes.keyOf(b.source_id);
      try {
        disk = await this.driver.openVolumeData(b.source_id, key, 'read', serverId);
      } finally {
        key?.fill(0);
      }
      const src = disk;
      await this.storeDisks(
        auth,
        b,
        'volume:backups:create:done',
        t0,
        repository,
        idKey,
        `volume ${b.source_id}`,
        [
          {
            name: 'volume',
            size: src.size,
            read: (o, l) => src.read(o, l),
            ...unchangedOf(b.source_id, src),
          },
        ],
      );
    } catch (err) {
      await this.failBackup(auth, b, 'volume:backups:create:done', t0, err);
    } finally {
      await disk?.close().catch(() => undefined);
      idKey?.fill(0);
      this.progress.delete(b.id);
      if (held) await this.volumes.release(b.source_id, 'available').catch(() => undefined);
    }
  }

  /** A new backup's row: `creating`, nothing read or stored yet, incremental when it has a parent. */
  private startingBackup(
    auth: AuthContext,
    input: { name?: string | null | undefined; description?: string | null | undefined },
    parent: Backup | null,
    source: Pick<
      Backup,
      'project_id' | 'kind' | 'source_id' | 'source_type_id' | 'size' | 'schedule_id' | 'definition'
    >,
  ): Backup {
    const now = new Date(this.now()).toISOString();
    return {
      id: uuid(),
      user_id: auth.userId,
      name: input.name ?? null,
      description: input.description ?? null,
      ...source,
      status: 'creating',
      fault: null,
      is_incremental: parent ? 1 : 0,
      parent_id: parent?.id ?? null,
      seal_sha256: null,
      object_count: 0,
      read_bytes: 0,
      stored_bytes: 0,
      duration_ms: 0,
      data_timestamp: null,
      created_at: now,
      updated_at: now,
      deleted_at: null,
    };
  }

  /** Writes the disks as backup `b` (chunked, sealed), marks it available and audits `action`. */
  private async storeDisks(
    auth: AuthContext,
    b: Backup,
    action: BackupDone,
    t0: number,
    repository: Repository,
    idKey: Buffer,
    what: string,
    disks: Parameters<Repository['backup']>[2],
  ): Promise<void> {
    const at = nowIso();
    const { sealSha256, stats } = await repository.backup(
      b.id,
      idKey,
      disks,
      await this.live(),
      (done, total) => this.progress.set(b.id, total ? Math.floor((done * 100) / total) : 100),
      b.parent_id,
    );
    await this.set(b.id, {
      status: 'available',
      seal_sha256: sealSha256,
      object_count: stats.chunks,
      read_bytes: stats.bytes,
      stored_bytes: stats.storedBytes,
      duration_ms: this.now() - t0,
      data_timestamp: at,
    });
    await this.record(
      auth,
      action,
      b.id,
      'success',
      `${what}: ${stats.bytes} bytes read, ${stats.newChunks} of ${stats.chunks} chunks new, ${stats.storedBytes} bytes stored` +
        stats.disks
          .filter((d) => !d.read)
          .map((d) => `; ${d.name} not read (${d.why}: device, inode, size, mtime and ctime as then)`)
          .join(''),
    );
  }

  /** Marks backup `b` failed with a reason the operator can read, and audits it. */
  private async failBackup(auth: AuthContext, b: Backup, action: BackupDone, t0: number, err: unknown) {
    const msg = err instanceof BulwarkError ? err.message : 'The backup failed; see the daemon log.';
    await this.set(b.id, { status: 'error', fault: msg, duration_ms: this.now() - t0 }).catch(
      () => undefined,
    );
    await this.record(auth, action, b.id, 'failure', msg);
  }

  // ---- verify and restore -----------------------------------------------------------------

  /**
   * Checks every chunk of a backup: present and unaltered against the
   * database's seal; with the recovery key (admins only) also decrypted and
   * each plaintext's HMAC compared with its name. Throws 409 on any fault.
   */
  async verify(auth: AuthContext, id: string, recoveryPem?: string): Promise<VerifyReport> {
    if (recoveryPem !== undefined && !auth.isAdmin)
      throw new BulwarkError('Forbidden', 'Only a cloud admin may use the recovery key.');
    const b = await this.get(auth, id);
    if (!b.seal_sha256)
      throw badRequest(`Backup ${id} is ${b.status}; only a finished backup can be verified.`);
    const { row, repository } = await this.repository();
    if (recoveryPem === undefined) return repository.verify(b.id, b.seal_sha256);
    const idKey = await this.idKey(row);
    try {
      return await repository.verify(b.id, b.seal_sha256, {
        recoveryKey: await this.recoveryKey(recoveryPem),
        idKey,
      });
    } finally {
      idKey.fill(0);
    }
  }

  /**
   * Cinder's restore: to a new volume (in the backup's project, of the
   * source's type, so encrypted under a new key) unless `volumeId` names an
   * existing, available volume to overwrite (the CLI asks for `--force`).
   * The whole backup is verified before any volume is made or opened.
   */
  async restore(
    auth: AuthContext,
    id: string,
    to: { volumeId?: string | null | undefined; name?: string | null | undefined },
    recoveryPem?: string,
    approval?: { id: string; approvedBy: string },
  ): Promise<{ backup_id: string; volume_id: string; volume_name: string | null }> {
    const b = await this.get(auth, id);
    if (b.kind !== 'volume')
      throw badRequest(
        `Backup ${b.id} is a server backup; restore it with \`bulwark server backup restore\`.`,
      );
    const { recoveryKey, idKey } = await this.verified(b, recoveryPem);
    if (to.volumeId && !approval) {
      const v = await this.volumes.get(auth, to.volumeId).catch((err: unknown) => {
        idKey.fill(0);
        throw err;
      });
      await this.holdInPlace(
        auth,
        idKey,
        { kind: 'volume', backupId: b.id, volumeId: v.id },
        `volume ${v.name ?? v.id}`,
      );
    }
    let volumeId: string;
    let volumeName: string | null;
    let fresh = false;
    try {
      if (to.volumeId) {
        const v = await this.volumes.get(auth, to.volumeId);
        if (v.size < b.size)
          throw badRequest(
            `Invalid volume: volume ${v.id} (${v.size} GiB) is smaller than the backup (${b.size} GiB).`,
          );
        if (!(await this.volumes.hold(v.id, ['available'], 'restoring-backup')))
          throw badRequest(
            `Invalid volume: Volume to be restored to must be available, but it is ${v.status}.`,
          );
        volumeId = v.id;
        volumeName = v.name;
      } else {
        const v = await this.volumes.create(
          { ...auth, projectId: b.project_id },
          { name: to.name ?? `restore-${b.id}`, size: b.size, volumeType: b.source_type_id },
        );
        volumeId = v.id;
        volumeName = v.name;
        fresh = true;
      }
    } catch (err) {
      idKey.fill(0);
      throw err;
    }
    await this.set(b.id, { status: 'restoring' });
    this.tasks.track(b.id, this.runRestore(auth, b, volumeId, fresh, recoveryKey, idKey));
    return { backup_id: b.id, volume_id: volumeId, volume_name: volumeName };
  }

  /**
   * The backup, checked whole (every chunk decrypted and hashed) before
   * anything is made or opened; returns the keys the restore needs (the
   * caller wipes `idKey`).
   */
  private async verified(b: Backup, recoveryPem: string | undefined) {
    if (b.status !== 'available' || !b.seal_sha256)
      throw badRequest(`Invalid backup: Backup status must be available, but it is ${b.status}.`);
    const recoveryKey = await this.restoreKey(recoveryPem);
    const { row, repository } = await this.repository();
    const idKey = await this.idKey(row);
    try {
      // Everything authenticates first, or nothing is touched (the error says what failed).
      await repository.verify(b.id, b.seal_sha256, { recoveryKey, idKey });
    } catch (err) {
      idKey.fill(0);
      throw err;
    }
    return { recoveryKey, idKey };
  }

  /**
   * The `restore-in-place` trigger (docs/approvals.md): overwriting a disk
   * that exists waits for a second admin. The recovery key is never stored
   * with the request: when approved it runs with the repository unlocked.
   */
  private async holdInPlace(
    auth: AuthContext,
    idKey: Buffer,
    payload: { kind: 'volume' | 'server'; backupId: string; volumeId?: string; serverId?: string },
    what: string,
  ): Promise<void> {
    if (!(await this.approvals?.applies('restore-in-place'))) return;
    idKey.fill(0);
    await this.approvals?.hold(
      auth,
      'restore-in-place',
      payload,
      `restore backup ${payload.backupId} over ${what}`,
    );
  }

  private async runRestore(
    auth: AuthContext,
    b: Backup,
    volumeId: string,
    fresh: boolean,
    recoveryKey: KeyObject,
    idKey: Buffer,
  ) {
    let disk: DiskHandle | null = null;
    try {
      const { repository } = await this.repository();
      if (fresh) {
        await this.volumes.settled(volumeId);
        if (!(await this.volumes.hold(volumeId, ['available'], 'restoring-backup')))
          throw new BulwarkError('Unavailable', 'The new volume could not be created.');
      }
      const key = await this.volumes.keyOf(volumeId);
      try {
        disk = await this.driver.openVolumeData(volumeId, key, 'write');
      } finally {
        key?.fill(0);
      }
      const sink = disk;
      await repository.restore(
        b.id,
        b.seal_sha256 as string,
        recoveryKey,
        idKey,
        async () => ({ write: (o, d) => sink.write(o, d), close: async () => undefined }),
        {
          sparse: fresh,
          progress: (done, total) => this.progress.set(b.id, total ? Math.floor((done * 100) / total) : 100),
        },
      );
      await disk.close();
      disk = null;
      await this.volumes.release(volumeId, 'available');
      await this.record(
        auth,
        'volume:backups:restore:done',
        b.id,
        'success',
        `restored to volume ${volumeId}${fresh ? ' (new)' : ' (in place)'}`,
      );
    } catch (err) {
      const msg = err instanceof BulwarkError ? err.message : 'The restore failed; see the daemon log.';
      await this.volumes.release(volumeId, 'error_restoring', msg).catch(() => undefined);
      await this.record(auth, 'volume:backups:restore:done', b.id, 'failure', `volume ${volumeId}: ${msg}`);
    } finally {
      await disk?.close().catch(() => undefined);
      idKey.fill(0);
      this.progress.delete(b.id);
      await this.set(b.id, { status: 'available' }).catch(() => undefined);
    }
  }

  // ---- whole servers ----------------------------------------------------------------------

  private get serverService(): ServerService {
    if (!this.servers) throw new BulwarkError('Internal', 'Server backups are not wired.');
    return this.servers;
  }

  /** The server's definition as a restore needs it: what it was made from and what it is attached to. */
  private async definitionOf(auth: AuthContext, serverId: string): Promise<ServerDefinition> {
    const s = await this.serverService.get(auth, serverId);
    const guest = JSON.parse(s.guest) as { userData?: string | null };
    const ports = await this.db
      .selectFrom('ports')
      .select(['id', 'network_id'])
      .where('device_id', '=', s.id)
      .execute();
    const groups = ports.length
      ? await this.db
          .selectFrom('port_security_groups')
          .select('security_group_id')
          .where(
            'port_id',
            'in',
            ports.map((p) => p.id),
          )
          .execute()
      : [];
    const attached = await this.volumes.listAttachments(auth, s.id);
    const vols = [];
    for (const a of attached) {
      const v = await this.volumes.get(auth, a.volume_id);
      vols.push({ id: v.id, name: v.name, size: v.size, type_id: v.volume_type_id });
    }
    return {
      name: s.name,
      flavor_id: s.flavor_id,
      image_id: s.image_id,
      metadata: Object.fromEntries(
        Object.entries(JSON.parse(s.metadata) as Record<string, string>).filter(
          ([k]) => !PLATFORM_METADATA.has(k),
        ),
      ),
      user_data: guest.userData ?? null,
      networks: [...new Set(ports.map((p) => p.network_id))],
      security_groups: [...new Set(groups.map((g) => g.security_group_id))],
      volumes: vols,
    };
  }

  /**
   * Backs a whole server up: its root disk as the guest sees it, every
   * attached volume, and its definition. A running guest is paused (QMP
   * `stop`) once for all its disks, so they are consistent with each other.
   */
  async createServerBackup(
    auth: AuthContext,
    input: {
      serverId: string;
      name?: string | undefined;
      description?: string | undefined;
      incremental?: boolean;
      scheduleId?: string;
    },
  ): Promise<Backup> {
    const { row } = await this.repository();
    const s = await this.serverService.get(auth, input.serverId);
    if (!['active', 'stopped', 'paused'].includes(s.vm_state) || s.task_state !== null)
      throw conflict(
        `Server ${s.name} is ${s.vm_state}${s.task_state ? ` (${s.task_state})` : ''}; it can be backed up when active, paused or stopped.`,
      );
    const def = await this.definitionOf(auth, s.id);
    const parent =
      (await this.list(auth, { volumeId: s.id, status: 'available', kind: 'server' }))[0] ?? null;
    if (input.incremental && !parent)
      throw badRequest(
        'Invalid backup: No backups of this server are available to do an incremental backup.',
      );
    const flavor = JSON.parse(s.flavor) as { disk: number };
    const b = this.startingBackup(auth, input, parent, {
      project_id: s.project_id,
      kind: 'server',
      source_id: s.id,
      source_type_id: null,
      size: flavor.disk + def.volumes.reduce((n, v) => n + v.size, 0),
      schedule_id: input.scheduleId ?? null,
      definition: JSON.stringify(def),
    });
    await this.db.insertInto('backups').values(b).execute();
    this.tasks.track(b.id, this.runServerBackup(auth, b, row, def));
    return b;
  }

  private async runServerBackup(auth: AuthContext, b: Backup, row: RepoRow, def: ServerDefinition) {
    const t0 = this.now();
    const open: DiskHandle[] = [];
    let idKey: Buffer | null = null;
    try {
      const { repository } = await this.repository();
      idKey = await this.idKey(row);
      // The root disk first: opening it pauses a running guest, so the volumes read after it match.
      const root = await this.driver.openRootDisk(b.source_id, 'read');
      open.push(root);
      const disks = [{ name: ROOT_DISK, size: root.size, read: (o: number, l: number) => root.read(o, l) }];
      for (const v of def.volumes) {
        const key = await this.volumes.keyOf(v.id);
        let h: DiskHandle;
        try {
          h = await this.driver.openVolumeData(v.id, key, 'read', b.source_id);
        } finally {
          key?.fill(0);
        }
        open.push(h);
        disks.push({
          name: volumeDisk(v.id),
          size: h.size,
          read: (o, l) => h.read(o, l),
          ...unchangedOf(v.id, h),
        });
      }
      const what = `server ${b.source_id} (root disk and ${def.volumes.length} volumes)`;
      await this.storeDisks(auth, b, 'server:backups:create:done', t0, repository, idKey, what, disks);
    } catch (err) {
      await this.failBackup(auth, b, 'server:backups:create:done', t0, err);
    } finally {
      // Volumes first, the root disk last: closing it continues the guest.
      for (const h of open.reverse()) await h.close().catch(() => undefined);
      idKey?.fill(0);
      this.progress.delete(b.id);
    }
  }

  /**
   * Restores a server backup (admin): verified whole first, then by default
   * to a NEW server made from the definition (fresh disk keys, new volumes
   * of the same types, reattached once it runs). `inPlace` overwrites the
   * source server's root disk and its backed-up volumes instead: it must be
   * stopped, and the `restore-in-place` trigger holds it for a second admin.
   * `networks` and `securityGroups` replace the definition's (the DR drill's isolated network).
   */
  async restoreServer(
    auth: AuthContext,
    id: string,
    to: { name?: string | undefined; inPlace?: boolean; networks?: string[]; securityGroups?: string[] },
    recoveryPem?: string,
    approval?: { id: string; approvedBy: string },
  ): Promise<{ backup_id: string; server_id: string; in_place: boolean }> {
    const b = await this.get(auth, id);
    if (b.kind !== 'server' || !b.definition)
      throw badRequest(`Backup ${b.id} is a volume backup; restore it with \`bulwark backup restore\`.`);
    const def = JSON.parse(b.definition) as ServerDefinition;
    const { recoveryKey, idKey } = await this.verified(b, recoveryPem);
    try {
      if (to.inPlace) {
        const s = await this.serverService.get(auth, b.source_id).catch(() => {
          throw badRequest(`Server ${b.source_id} is gone; restore backup ${b.id} to a new server instead.`);
        });
        if (!approval)
          await this.holdInPlace(
            auth,
            idKey,
            { kind: 'server', backupId: b.id, serverId: s.id },
            `server ${s.name}`,
          );
        if (s.vm_state !== 'stopped' || s.task_state !== null)
          throw conflict(`Server ${s.name} is ${s.vm_state}; stop it before restoring over its disks.`);
        const attached = new Set((await this.volumes.listAttachments(auth, s.id)).map((a) => a.volume_id));
        const missing = def.volumes.filter((v) => !attached.has(v.id));
        if (missing.length)
          throw conflict(
            `Volume ${missing.map((v) => v.id).join(', ')} of the backup is no longer attached to ${s.name}; restore to a new server instead.`,
          );
        await this.set(b.id, { status: 'restoring' });
        this.tasks.track(b.id, this.runServerRestore(auth, b, s.id, null, recoveryKey, idKey));
        return { backup_id: b.id, server_id: s.id, in_place: true };
      }
      const owner = { ...auth, projectId: b.project_id };
      const name = to.name ?? `${def.name}-restored`;
      const nets = to.networks ?? def.networks;
      const { repository } = await this.repository();
      const s = await this.serverService.create(
        owner,
        {
          name,
          imageRef: def.image_id,
          flavorRef: def.flavor_id,
          metadata: { ...def.metadata, restored_from: b.id },
          hints: {},
          userData: def.user_data ?? undefined,
          networks: nets.length ? nets.map((uuid) => ({ uuid })) : 'none',
          securityGroups: to.networks
            ? undefined
            : def.security_groups.length
              ? def.security_groups
              : undefined,
        },
        undefined,
        undefined,
        // The new server's root disk is written before its first start, under its own new key.
        async (driver, serverId) => {
          const disk = await driver.openRootDisk(serverId, 'write');
          await repository.restore(
            b.id,
            b.seal_sha256 as string,
            recoveryKey,
            idKey,
            async (d) =>
              d.name === ROOT_DISK ? { write: (o, x) => disk.write(o, x), close: () => disk.close() } : null,
            {
              sparse: false,
              progress: (done, total) => this.progress.set(b.id, Math.floor((done * 50) / total)),
            },
          );
        },
      );
      const volumeIds = new Map<string, string>();
      for (const v of def.volumes) {
        const nv = await this.volumes.create(owner, {
          name: `${name}-${v.name ?? v.id.slice(0, 8)}`,
          size: v.size,
          volumeType: v.type_id,
        });
        volumeIds.set(v.id, nv.id);
      }
      await this.set(b.id, { status: 'restoring' });
      this.tasks.track(b.id, this.runServerRestore(owner, b, s.id, volumeIds, recoveryKey, idKey));
      return { backup_id: b.id, server_id: s.id, in_place: false };
    } catch (err) {
      idKey.fill(0);
      throw err;
    }
  }

  /**
   * The volumes of a server restore (new ones, or in place with the root
   * disk too), then, for a new server, waits for it to run and attaches them.
   * `volumeIds`: backed-up volume -> new volume; null: in place.
   */
  private async runServerRestore(
    auth: AuthContext,
    b: Backup,
    serverId: string,
    volumeIds: Map<string, string> | null,
    recoveryKey: KeyObject,
    idKey: Buffer,
  ) {
    const servers = this.serverService;
    const held: string[] = [];
    this.restoreErrors.delete(b.id);
    try {
      const { repository } = await this.repository();
      const def = JSON.parse(b.definition as string) as ServerDefinition;
      const targets = new Map(def.volumes.map((v) => [volumeDisk(v.id), volumeIds?.get(v.id) ?? v.id]));
      for (const id of targets.values()) {
        if (volumeIds) await this.volumes.settled(id);
        if (!(await this.volumes.hold(id, volumeIds ? ['available'] : ['in-use'], 'restoring-backup')))
          throw new BulwarkError('Conflict', `Volume ${id} is busy; the restore did not start.`);
        held.push(id);
      }
      const open: DiskHandle[] = [];
      try {
        await repository.restore(
          b.id,
          b.seal_sha256 as string,
          recoveryKey,
          idKey,
          async (d) => {
            const target =
              d.name === ROOT_DISK ? (volumeIds ? null : serverId) : (targets.get(d.name) ?? null);
            if (!target) return null;
            let h: DiskHandle;
            if (d.name === ROOT_DISK) h = await this.driver.openRootDisk(serverId, 'write');
            else {
              const key = await this.volumes.keyOf(target);
              try {
                h = await this.driver.openVolumeData(target, key, 'write', volumeIds ? null : serverId);
              } finally {
                key?.fill(0);
              }
            }
            open.push(h);
            return { write: (o, x) => h.write(o, x), close: () => h.close() };
          },
          // New volumes are zero-filled; a disk overwritten in place gets every byte.
          {
            sparse: volumeIds !== null,
            progress: (done, total) => this.progress.set(b.id, Math.floor((done * 100) / total)),
          },
        );
      } finally {
        for (const h of open) await h.close().catch(() => undefined);
      }
      for (const id of held.splice(0)) await this.volumes.release(id, volumeIds ? 'available' : 'in-use');
      if (volumeIds) {
        await servers.settled(serverId);
        const s = await servers.get(auth, serverId);
        if (s.vm_state !== 'active')
          throw new BulwarkError(
            'Conflict',
            `The restored server ${serverId} did not start (${s.vm_state}).`,
          );
        for (const id of volumeIds.values()) await this.volumes.attach(auth, serverId, id);
      }
      await this.record(
        auth,
        'server:backups:restore:done',
        b.id,
        'success',
        `restored to server ${serverId}${volumeIds ? ` (new; volumes ${[...volumeIds.values()].join(', ') || 'none'})` : ' (in place)'}`,
      );
    } catch (err) {
      const msg = err instanceof BulwarkError ? err.message : 'The restore failed; see the daemon log.';
      this.restoreErrors.set(b.id, msg);
      for (const id of held) await this.volumes.release(id, 'error_restoring', msg).catch(() => undefined);
      await this.record(auth, 'server:backups:restore:done', b.id, 'failure', `server ${serverId}: ${msg}`);
    } finally {
      // The new server's own build writes its root disk with these keys: wipe them only after it.
      if (volumeIds) await servers.settled(serverId).catch(() => undefined);
      idKey.fill(0);
      this.progress.delete(b.id);
      await this.set(b.id, { status: 'available' }).catch(() => undefined);
    }
  }

  // ---- delete -----------------------------------------------------------------------------

  /** Deletes a backup; `why` (e.g. retention) is audited when the platform deletes on its own. */
  async delete(auth: AuthContext, id: string, why?: string): Promise<void> {
    const b = await this.get(auth, id);
    const r = await this.db
      .updateTable('backups')
      .set({ status: 'deleting', updated_at: nowIso() })
      .where('id', '=', b.id)
      .where('status', 'in', ['available', 'error'])
      .executeTakeFirst();
    if (Number(r.numUpdatedRows) !== 1)
      throw badRequest(`Invalid backup: Backup status must be available or error, but it is ${b.status}.`);
    this.tasks.track(
      b.id,
      (async () => {
        try {
          const { repository } = await this.repository();
          await repository.remove(b.id, b.seal_sha256, async () =>
            (await this.live()).filter((x) => x.id !== b.id),
          );
          await this.set(b.id, { status: 'deleted', deleted_at: nowIso() });
          if (why) await this.record(auth, 'volume:backups:delete', b.id, 'success', why);
        } catch (err) {
          const msg = err instanceof BulwarkError ? err.message : 'The backup could not be deleted.';
          await this.set(b.id, { status: 'error', fault: msg }).catch(() => undefined);
        }
      })(),
    );
  }
}

/** A disk's file stamp, when its host gives one (a local volume): an unchanged file is not read again. */
function unchangedOf(source: string, h: DiskHandle): Pick<DiskSource, 'unchanged'> {
  const stamp = h.stamp?.bind(h);
  return stamp ? { unchanged: { source, stamp } } : {};
}
