import type { Selectable } from 'kysely';
import { BulwarkError, badRequest, conflict } from '../errors.js';
import { DEFAULT_DOMAIN_ID } from '../identity/config.js';
import type { IdentityService } from '../identity/service.js';
import type { AuthContext } from '../policy/context.js';
import type { Store } from '../store/database.js';
import type { BackupSchedulesTable } from '../store/schema.js';
import { nowIso, randomSecret, uuid } from '../util/ids.js';
import { retained } from './retention.js';
import type { BackupService } from './service.js';

export type BackupSchedule = Selectable<BackupSchedulesTable>;

/** The dedicated identity scheduled backups run as (a user of the admin project with backup-operator only). */
export const BACKUP_USER = 'bulwark-backup';

/** What a schedule backs up: a volume (Cinder backups) or a whole server (root disk, volumes, definition). */
export type ScheduleKind = 'volume' | 'server';

export interface ScheduleInput {
  kind?: ScheduleKind | undefined;
  /** The volume or server, as the caller may see it (another project's: 404). */
  sourceId: string;
  name?: string | undefined;
  intervalMinutes: number;
  keepLast?: number | undefined;
  keepDaily?: number | undefined;
  keepWeekly?: number | undefined;
  keepMonthly?: number | undefined;
}

/**
 * Scheduled backups (docs/backups.md): each due schedule's volume or server
 * is backed up as the backup identity (`bulwark-backup`, role backup-operator; it has
 * no password anyone knows and acts only inside the daemon), then the
 * schedule's own backups are pruned to its keep-last/daily/weekly/monthly
 * policy. Every backup and prune is audited under that identity.
 */
export class BackupScheduler {
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<void> | null = null;
  private identityId: string | null = null;

  constructor(
    private readonly store: Store,
    private readonly identity: IdentityService,
    private readonly backups: BackupService,
    private readonly now: () => number = Date.now,
  ) {}

  private get db() {
    return this.store.db;
  }

  /** The backup identity's user id, made on first use (random password, never shown or stored in clear). */
  async identityUser(): Promise<string> {
    if (this.identityId) return this.identityId;
    const found = (await this.identity.listUsers({ name: BACKUP_USER, domainId: DEFAULT_DOMAIN_ID }))[0];
    const user =
      found ??
      (await this.identity.createUser({
        name: BACKUP_USER,
        domainId: DEFAULT_DOMAIN_ID,
        password: randomSecret(32),
      }));
    const project = (await this.identity.listProjects({ name: this.identity.config.adminProjectName }))[0];
    const role = (await this.identity.listRoles({ name: 'backup-operator' }))[0];
    if (!project || !role)
      throw new BulwarkError(
        'Unavailable',
        'The backup identity cannot be set up (no admin project or role).',
      );
    if (!found) await this.identity.grant(project.id, user.id, role.id);
    this.identityId = user.id;
    return user.id;
  }

  /** The backup identity acting on one project: backup-operator there, nothing else. */
  private async actor(projectId: string): Promise<AuthContext> {
    return {
      userId: await this.identityUser(),
      userName: BACKUP_USER,
      userDomainId: DEFAULT_DOMAIN_ID,
      projectId,
      projectName: null,
      projectDomainId: DEFAULT_DOMAIN_ID,
      roles: ['backup-operator', 'reader'],
      isAdmin: false,
      methods: [],
      tokenHash: '',
      auditId: '',
      issuedAt: '',
      expiresAt: '',
    };
  }

  async create(auth: AuthContext, input: ScheduleInput): Promise<BackupSchedule> {
    const kind = input.kind ?? 'volume';
    const source =
      kind === 'server'
        ? await this.backups.serverFor(auth, input.sourceId)
        : await this.backups.volumeFor(auth, input.sourceId);
    const keep = [input.keepLast ?? 7, input.keepDaily ?? 7, input.keepWeekly ?? 4, input.keepMonthly ?? 6];
    if (keep.every((k) => k === 0)) throw badRequest('A schedule must keep at least one backup.');
    const now = nowIso();
    const s: BackupSchedule = {
      id: uuid(),
      project_id: source.project_id,
      kind,
      source_id: source.id,
      name: input.name ?? null,
      interval_minutes: input.intervalMinutes,
      keep_last: keep[0]!,
      keep_daily: keep[1]!,
      keep_weekly: keep[2]!,
      keep_monthly: keep[3]!,
      next_run_at: new Date(this.now()).toISOString(),
      last_run_at: null,
      last_error: null,
      created_by: auth.userId,
      created_at: now,
    };
    await this.db.insertInto('backup_schedules').values(s).execute();
    await this.identityUser();
    return s;
  }

  /** The schedules of one kind (each kind has its own API); the caller's project unless an admin asks for all. */
  async list(auth: AuthContext, kind: ScheduleKind, allProjects = false): Promise<BackupSchedule[]> {
    let q = this.db.selectFrom('backup_schedules').selectAll().where('kind', '=', kind).orderBy('created_at');
    if (!(auth.isAdmin && allProjects)) q = q.where('project_id', '=', auth.projectId ?? '');
    return q.execute();
  }

  /** Deletes a schedule of `kind` (the other kind's route answers 404); its backups stay. */
  async delete(auth: AuthContext, kind: ScheduleKind, id: string): Promise<void> {
    let q = this.db.deleteFrom('backup_schedules').where('id', '=', id).where('kind', '=', kind);
    if (!auth.isAdmin) q = q.where('project_id', '=', auth.projectId ?? '');
    const r = await q.executeTakeFirst();
    if (Number(r.numDeletedRows) !== 1)
      throw new BulwarkError('NotFound', `Could not find backup schedule: ${id}.`);
  }

  /** Runs every due schedule once (one tick at a time); resolves when their backups and prunes are done. */
  tick(): Promise<void> {
    this.running ??= this.runDue().finally(() => {
      this.running = null;
    });
    return this.running;
  }

  private async runDue(): Promise<void> {
    const now = new Date(this.now()).toISOString();
    const due = await this.db
      .selectFrom('backup_schedules')
      .selectAll()
      .where('next_run_at', '<=', now)
      .execute();
    for (const s of due) {
      const next = new Date(this.now() + s.interval_minutes * 60_000).toISOString();
      await this.db
        .updateTable('backup_schedules')
        .set({ next_run_at: next, last_run_at: now })
        .where('id', '=', s.id)
        .execute();
      const auth = await this.actor(s.project_id);
      try {
        const name = `${s.name ?? 'scheduled'}-${now}`;
        const b =
          s.kind === 'server'
            ? await this.backups.createServerBackup(auth, { serverId: s.source_id, name, scheduleId: s.id })
            : await this.backups.createVolumeBackup(auth, {
                volumeId: s.source_id,
                name,
                force: true,
                scheduleId: s.id,
              });
        await this.backups.settled(b.id);
        // A backup that failed while it ran is the schedule's error too (its row says why).
        const done = await this.backups.get(auth, b.id);
        if (done.status !== 'available')
          throw conflict(done.fault ?? `The scheduled backup ended ${done.status}.`);
        await this.prune(auth, s);
        await this.db
          .updateTable('backup_schedules')
          .set({ last_error: null })
          .where('id', '=', s.id)
          .execute();
      } catch (err) {
        const msg = err instanceof BulwarkError ? err.message : 'The scheduled backup failed.';
        await this.db
          .updateTable('backup_schedules')
          .set({ last_error: msg })
          .where('id', '=', s.id)
          .execute();
      }
    }
  }

  /** Deletes the schedule's finished backups its policy does not keep. */
  private async prune(auth: AuthContext, s: BackupSchedule): Promise<void> {
    const mine = (
      await this.backups.list(auth, {
        volumeId: s.source_id,
        status: 'available',
        kind: s.kind === 'server' ? 'server' : 'volume',
      })
    ).filter((b) => b.schedule_id === s.id);
    const keep = retained(mine, {
      last: s.keep_last,
      daily: s.keep_daily,
      weekly: s.keep_weekly,
      monthly: s.keep_monthly,
    });
    for (const b of mine) if (!keep.has(b.id)) await this.backups.delete(auth, b.id, 'retention');
    await this.backups.settled();
  }

  start(everyMs = 30_000): void {
    this.timer ??= setInterval(() => void this.tick().catch(() => undefined), everyMs);
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    await this.running;
  }
}
