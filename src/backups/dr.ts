import type { Selectable } from 'kysely';
import { type AuditWriter, systemEvent } from '../audit/writer.js';
import type { ServerService } from '../compute/servers.js';
import { BulwarkError, badRequest, notFound } from '../errors.js';
import type { NetworkService } from '../network/networks.js';
import type { SecurityGroupService } from '../network/security-groups.js';
import type { AuthContext } from '../policy/context.js';
import type { Store } from '../store/database.js';
import type { DrDrillsTable, DrPoliciesTable } from '../store/schema.js';
import { nowIso, uuid } from '../util/ids.js';
import { TaskTracker } from '../util/tasks.js';
import type { VolumeService } from '../volumes/volumes.js';
import type { BackupService } from './service.js';

export type DrPolicy = Selectable<DrPoliciesTable>;
export type DrDrill = Selectable<DrDrillsTable>;

/** What the test guests print once up; a site sets its own per server (`--boot-marker`). */
export const DEFAULT_BOOT_MARKER = 'login:';
const POLL_MS = 2000;

/**
 * Disaster-recovery drills (guide 19, docs/dr.md): for each protected
 * server (one with a DR policy), the newest finished server backup is
 * restored into a fresh ISOLATED network (no router, no gateway, no other
 * port on it) behind a fresh security group with no rules at all (nothing
 * in, nothing out), booted, and watched until its console shows the boot
 * marker. Achieved RPO (drill start − backup time) and RTO (drill start →
 * booted) are stored against the targets with a verdict; the drill server,
 * its volumes, the group and the network are deleted afterwards, pass or fail.
 */
export class DrService {
  private readonly tasks = new TaskTracker();

  constructor(
    private readonly store: Store,
    private readonly backups: BackupService,
    private readonly servers: ServerService,
    private readonly volumes: VolumeService,
    private readonly networks: NetworkService,
    private readonly groups: SecurityGroupService,
    private readonly audit: AuditWriter,
    private readonly opts: { bootTimeoutMs?: number; now?: () => number } = {},
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

  // ---- policies ---------------------------------------------------------------------------

  /** Protects a server: its RPO/RTO targets (seconds) and the console text that says it is up. */
  async setPolicy(
    auth: AuthContext,
    serverId: string,
    p: { rpoS: number; rtoS: number; bootMarker?: string | undefined },
  ): Promise<DrPolicy> {
    const s = await this.servers.get(auth, serverId);
    for (const [k, v] of [
      ['RPO', p.rpoS],
      ['RTO', p.rtoS],
    ] as const)
      if (!Number.isSafeInteger(v) || v < 1)
        throw badRequest(`The ${k} target must be a whole number of seconds ≥ 1.`);
    const row: DrPolicy = {
      server_id: s.id,
      project_id: s.project_id,
      rpo_target_s: p.rpoS,
      rto_target_s: p.rtoS,
      boot_marker: p.bootMarker ?? DEFAULT_BOOT_MARKER,
      set_by: auth.userName,
      updated_at: nowIso(),
    };
    const { server_id: _, ...change } = row;
    await this.db
      .insertInto('dr_policies')
      .values(row)
      .onConflict((oc) => oc.column('server_id').doUpdateSet(change))
      .execute();
    return row;
  }

  async listPolicies(auth: AuthContext): Promise<DrPolicy[]> {
    let q = this.db.selectFrom('dr_policies').selectAll().orderBy('server_id');
    if (!auth.isAdmin) q = q.where('project_id', '=', auth.projectId ?? '');
    return q.execute();
  }

  async deletePolicy(auth: AuthContext, serverId: string): Promise<void> {
    let q = this.db.deleteFrom('dr_policies').where('server_id', '=', serverId);
    if (!auth.isAdmin) q = q.where('project_id', '=', auth.projectId ?? '');
    const r = await q.executeTakeFirst();
    if (Number(r.numDeletedRows) !== 1) throw notFound('DR policy', serverId);
  }

  // ---- drills -----------------------------------------------------------------------------

  async listDrills(auth: AuthContext, f: { runId?: string | undefined; serverId?: string | undefined }) {
    let q = this.db.selectFrom('dr_drills').selectAll().orderBy('started_at', 'desc');
    if (!auth.isAdmin) q = q.where('project_id', '=', auth.projectId ?? '');
    if (f.runId) q = q.where('run_id', '=', f.runId);
    if (f.serverId) q = q.where('server_id', '=', f.serverId);
    return q.execute();
  }

  async getDrill(auth: AuthContext, id: string): Promise<DrDrill> {
    let q = this.db.selectFrom('dr_drills').selectAll().where('id', '=', id);
    if (!auth.isAdmin) q = q.where('project_id', '=', auth.projectId ?? '');
    const d = await q.executeTakeFirst();
    if (!d) throw notFound('DR drill', id);
    return d;
  }

  /**
   * Starts a drill of every protected server (or of `serverIds`, which must
   * be protected): answers at once with one row per server; each runs in the
   * background, one after another (restores share the repository).
   */
  async drill(
    auth: AuthContext,
    serverIds?: string[],
    /** The recovery key for the restores (kept in memory for the drill only); else the repository must be unlocked. */
    recoveryPem?: string,
  ): Promise<{ run_id: string; drills: DrDrill[] }> {
    let policies = await this.listPolicies(auth);
    if (serverIds?.length) {
      const unknown = serverIds.filter((id) => !policies.some((p) => p.server_id === id));
      if (unknown.length)
        throw badRequest(
          `Server ${unknown.join(', ')} has no DR policy; set one with \`bulwark dr target set\`.`,
        );
      policies = policies.filter((p) => serverIds.includes(p.server_id));
    }
    if (!policies.length)
      throw badRequest(
        'No server is protected: set a DR target first (`bulwark dr target set SERVER --rpo S --rto S`).',
      );
    const runId = uuid();
    const drills: DrDrill[] = [];
    for (const p of policies) {
      const d: DrDrill = {
        id: uuid(),
        run_id: runId,
        server_id: p.server_id,
        project_id: p.project_id,
        backup_id: null,
        status: 'running',
        step: 'queued',
        started_at: nowIso(),
        finished_at: null,
        rpo_s: null,
        rto_s: null,
        rpo_target_s: p.rpo_target_s,
        rto_target_s: p.rto_target_s,
        verdict: null,
        reason: null,
        started_by: auth.userName,
      };
      await this.db.insertInto('dr_drills').values(d).execute();
      drills.push(d);
    }
    this.tasks.track(
      runId,
      (async () => {
        for (const [i, d] of drills.entries()) await this.runOne(auth, d, policies[i]!, recoveryPem);
      })(),
    );
    return { run_id: runId, drills };
  }

  private async step(id: string, step: string, more: Partial<DrDrill> = {}) {
    await this.db
      .updateTable('dr_drills')
      .set({ step, ...more })
      .where('id', '=', id)
      .execute();
  }

  private async runOne(auth: AuthContext, d: DrDrill, p: DrPolicy, recoveryPem?: string): Promise<void> {
    const t0 = this.now();
    // The drill acts in the protected server's project, with the caller's (admin) rights.
    const owner = { ...auth, projectId: d.project_id };
    const made: { server?: string; network?: string; group?: string } = {};
    let outcome: { verdict: 'pass' | 'fail'; reason: string; rpo?: number; rto?: number };
    try {
      const b = (
        await this.backups.list(owner, { volumeId: d.server_id, status: 'available', kind: 'server' })
      )[0];
      if (!b?.data_timestamp)
        throw new BulwarkError('Conflict', `Server ${d.server_id} has no finished server backup to restore.`);
      const rpo = Math.max(0, Math.round((t0 - Date.parse(b.data_timestamp)) / 1000));
      await this.step(d.id, 'isolating', { backup_id: b.id, rpo_s: rpo });
      const tag = d.id.slice(0, 8);
      const net = await this.networks.createNetwork(owner, {
        name: `dr-drill-${tag}`,
        description: `DR drill ${d.id}: isolated`,
      });
      made.network = net.id;
      // No gateway, no router: nothing on it can route anywhere.
      await this.networks.createSubnet(owner, {
        name: `dr-drill-${tag}`,
        networkId: net.id,
        ipVersion: 4,
        cidr: '10.254.254.0/24',
        gatewayIp: null,
      });
      const group = await this.groups.create(owner, {
        name: `dr-drill-${tag}`,
        description: `DR drill ${d.id}: no traffic`,
      });
      made.group = group.id;
      // A new group may send anywhere (Neutron's template): take its egress rules away too.
      for (const r of await this.groups.listRules(owner, { groupId: group.id }))
        await this.groups.deleteRule(owner, r.id);
      await this.step(d.id, 'restoring');
      const r = await this.backups.restoreServer(
        owner,
        b.id,
        {
          name: `dr-drill-${tag}`,
          networks: [net.id],
          securityGroups: [group.id],
        },
        recoveryPem,
      );
      made.server = r.server_id;
      await this.backups.settled(b.id);
      const why = this.backups.restoreErrorOf(b.id);
      if (why) throw new BulwarkError('Conflict', `The restore failed: ${why}`);
      await this.step(d.id, 'booting');
      const deadline = t0 + (this.opts.bootTimeoutMs ?? 600_000);
      let up = false;
      while (!up && this.now() < deadline) {
        const log = await this.servers.consoleOutput(owner, r.server_id, 400).catch((e) => {
          console.log('DBG console err', e.message);
          return '';
        });
        console.log('DBG console', JSON.stringify(log).slice(0, 200));
        up = log.includes(p.boot_marker);
        if (!up) await new Promise((res) => setTimeout(res, POLL_MS));
      }
      const rto = Math.round((this.now() - t0) / 1000);
      if (!up)
        throw Object.assign(
          new BulwarkError(
            'Conflict',
            `The restored server did not show "${p.boot_marker}" on its console in time.`,
          ),
          { rpo, rto },
        );
      const misses = [
        ...(rpo > p.rpo_target_s ? [`RPO ${rpo}s is above the target ${p.rpo_target_s}s`] : []),
        ...(rto > p.rto_target_s ? [`RTO ${rto}s is above the target ${p.rto_target_s}s`] : []),
      ];
      outcome = misses.length
        ? { verdict: 'fail', reason: misses.join('; '), rpo, rto }
        : { verdict: 'pass', reason: `booted from backup ${b.id} in the isolated network`, rpo, rto };
    } catch (err) {
      const e = err as { rpo?: number; rto?: number };
      outcome = {
        verdict: 'fail',
        reason: err instanceof BulwarkError ? err.message : 'The drill failed; see the daemon log.',
        ...(e.rpo !== undefined ? { rpo: e.rpo } : {}),
        ...(e.rto !== undefined ? { rto: e.rto } : {}),
      };
    }
    await this.step(d.id, 'cleaning up');
    const leftovers = await this.cleanUp(owner, made);
    await this.db
      .updateTable('dr_drills')
      .set({
        status: 'done',
        step: null,
        finished_at: nowIso(),
        verdict: outcome.verdict,
        reason: leftovers ? `${outcome.reason}; cleanup: ${leftovers}` : outcome.reason,
        ...(outcome.rpo !== undefined ? { rpo_s: outcome.rpo } : {}),
        ...(outcome.rto !== undefined ? { rto_s: outcome.rto } : {}),
      })
      .where('id', '=', d.id)
      .execute();
    await this.audit
      .append(
        systemEvent({
          action: 'dr:drill:done',
          reason: `server ${d.server_id}: ${outcome.verdict} (${outcome.reason}; RPO ${outcome.rpo ?? '-'}s/${d.rpo_target_s}s, RTO ${outcome.rto ?? '-'}s/${d.rto_target_s}s)`,
          target: { type: 'dr_drill', id: d.id },
          outcome: outcome.verdict === 'pass' ? 'success' : 'failure',
          actor: auth,
        }),
      )
      .catch(() => undefined);
  }

  /** Deletes what the drill made (server, its restored volumes, group, network); says what could not go. */
  private async cleanUp(auth: AuthContext, made: { server?: string; network?: string; group?: string }) {
    const failed: string[] = [];
    const attempt = async (what: string, fn: () => Promise<unknown>) => {
      try {
        await fn();
      } catch (err) {
        failed.push(`${what}: ${err instanceof BulwarkError ? err.message : 'failed'}`);
      }
    };
    if (made.server) {
      const id = made.server;
      const vols = await this.volumes.listAttachments(auth, id).catch(() => []);
      await attempt(`server ${id}`, async () => {
        await this.servers.delete(auth, id);
        await this.servers.settled(id);
      });
      await this.volumes.settled();
      for (const a of vols)
        await attempt(`volume ${a.volume_id}`, () => this.volumes.delete(auth, a.volume_id));
      await this.volumes.settled();
    }
    if (made.network) {
      const id = made.network;
      await attempt(`network ${id}`, () => this.networks.deleteNetwork(auth, id));
    }
    if (made.group) {
      const id = made.group;
      await attempt(`security group ${id}`, () => this.groups.delete(auth, id));
    }
    return failed.join('; ');
  }
}
