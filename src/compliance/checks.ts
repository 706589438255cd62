import type { SiemStatus } from '../audit/siem.js';
import { verifyAuditChain } from '../audit/verify.js';
import {
  type PassthroughConfig,
  type PassthroughPlan,
  vendorProduct,
} from '../compute/passthrough-policy.js';
import type { HostCapabilities } from '../compute/properties.js';
import type { ApprovalService } from '../governance/approvals.js';
import type { MetadataRuleService } from '../governance/metadata-rules.js';
import type { StoragePools, Thresholds } from '../governance/storage-thresholds.js';
import type { HypervisorDriver } from '../host/hypervisor.js';
import { accessReview } from '../identity/access-review.js';
import type { IdentityService } from '../identity/service.js';
import { POLICY } from '../policy/rules.js';
import type { Store } from '../store/database.js';
import { byOffenders, type Evidence, notApplicable, type Offender, type Verdict } from './verdict.js';

/**
 * The platform's live checks (docs/compliance.md): each reads the running
 * platform's store and configuration and names what fails. One per platform
 * control in catalogue.ts; host controls are in host-checks.ts.
 */

/** What the daemon was started with, as far as the checks need it. */
export interface PostureSettings {
  dataDir: string;
  localHost: string;
  capabilities: HostCapabilities;
  serverCreateRate: number;
  /** API rate limits (`--api-rate`, `--api-address-rate`); null: the API runs without a limiter. */
  apiRate: { perToken: number; perAddress: number } | null;
  consoleRetentionDays: number;
  storageThresholds: Thresholds;
  passthrough: PassthroughConfig;
  defaultGroupAllowsSameGroup: boolean;
}

export interface CheckDeps {
  store: Store;
  identity: IdentityService;
  storage: StoragePools;
  approvals: ApprovalService;
  metadataRules: MetadataRuleService;
  driver: HypervisorDriver;
  settings: PostureSettings;
  /** The SIEM forwarder's status; null when no SIEM is configured. */
  siem: (() => Promise<SiemStatus>) | null;
  /** A guest process's uid, seccomp mode and cgroup from /proc (host/hardening.ts). */
  confinement: (
    pid: number,
  ) => Promise<{ uid: number | null; seccomp: number | null; cgroup: string | null } | null>;
  now: () => Date;
}

export type CheckOutcome = { verdict: Verdict } & Evidence;
type Check = (d: CheckDeps) => Promise<CheckOutcome>;

const setting = (id: string, detail: string): Offender => ({ type: 'setting', id, detail });
const DAY = 86_400_000;
const WORLD = new Set(['0.0.0.0/0', '::/0']);
const ADMIN_PORTS = [22, 3389];
/** How old the oldest undelivered audit event may be before the SIEM counts as lagging. */
export const SIEM_MAX_LAG_SECONDS = 300;

const liveServers = (d: CheckDeps) =>
  d.store.db.selectFrom('servers').selectAll().where('deleted_at', 'is', null).orderBy('name').execute();

/** Ingress rules whose source is anyone: 0.0.0.0/0, ::/0, or neither a prefix nor a remote group. */
async function worldIngress(d: CheckDeps) {
  const rules = await d.store.db
    .selectFrom('security_group_rules as r')
    .innerJoin('security_groups as g', 'g.id', 'r.security_group_id')
    .select([
      'r.id',
      'g.name as group_name',
      'g.id as group_id',
      'r.project_id',
      'r.protocol',
      'r.port_range_min',
      'r.port_range_max',
      'r.remote_ip_prefix',
      'r.remote_group_id',
      'r.ethertype',
    ])
    .where('r.direction', '=', 'ingress')
    .orderBy('r.created_at')
    .execute();
  return rules.filter((r) =>
    r.remote_ip_prefix === null ? r.remote_group_id === null : WORLD.has(r.remote_ip_prefix),
  );
}
type WorldRule = Awaited<ReturnType<typeof worldIngress>>[number];
const source = (r: WorldRule) => r.remote_ip_prefix ?? (r.ethertype === 'IPv6' ? '::/0' : '0.0.0.0/0');
/** Whether a rule lets TCP to `port` through (no protocol or no range means all). */
const opensTcp = (r: WorldRule, port: number) =>
  (r.protocol === null || ['tcp', '6', 'any'].includes(r.protocol)) &&
  (r.port_range_min === null || (r.port_range_min <= port && (r.port_range_max ?? r.port_range_min) >= port));
const allPorts = (r: WorldRule) =>
  r.protocol === null ||
  r.protocol === 'any' ||
  (['tcp', 'udp', '6', '17'].includes(r.protocol) &&
    (r.port_range_min === null || (r.port_range_min <= 1 && (r.port_range_max ?? 0) >= 65535)));

export const PLATFORM_CHECKS: Record<string, Check> = {
  async 'disk-encryption'(d) {
    const servers = (await liveServers(d)).filter((s) => s.status !== 'BUILD' && s.status !== 'ERROR');
    const volumes = await d.store.db
      .selectFrom('volumes')
      .select(['id', 'name', 'encrypted', 'project_id'])
      .where('deleted_at', 'is', null)
      .orderBy('created_at')
      .execute();
    const offenders: Offender[] = [
      ...servers
        .filter((s) => !s.root_key_secret_id)
        .map((s) => ({ type: 'server', id: s.id, name: s.name, detail: 'root disk has no encryption key' })),
      ...volumes
        .filter((v) => v.encrypted !== 1)
        .map((v) => ({ type: 'volume', id: v.id, name: v.name, detail: 'volume type has no encryption' })),
    ];
    return byOffenders(
      offenders,
      `${servers.length} servers' root disks, ${volumes.length} volumes`,
      'unencrypted disks or volumes',
    );
  },

  async 'admin-mfa'(d) {
    const review = await accessReview(d.store, d.identity.config);
    const offenders: Offender[] = review.users
      .filter((u) => u.enabled && u.flags.includes('admin-without-mfa'))
      .map((u) => ({
        type: 'user',
        id: u.id,
        name: u.name,
        detail: 'cloud admin without an enrolled, enforced second factor',
      }));
    if (!d.identity.config.adminMfaRequired)
      offenders.unshift(
        setting(
          'admin_mfa_required',
          'admin tokens are accepted without a second factor (--no-admin-mfa-required)',
        ),
      );
    const admins = review.users.filter((u) => u.cloud_admin && !u.break_glass).length;
    return byOffenders(
      offenders,
      `the admin MFA setting and ${admins} cloud admins`,
      'admins can act without MFA',
      {
        admin_mfa_required: d.identity.config.adminMfaRequired,
      },
    );
  },

  async 'password-policy'(d) {
    const c = d.identity.config;
    const offenders: Offender[] = [];
    if (c.lockoutFailureAttempts < 1 || c.lockoutFailureAttempts > 10)
      offenders.push(
        setting('lockout_failure_attempts', `${c.lockoutFailureAttempts} (want 1 to 10; 0 is off)`),
      );
    if (c.lockoutDurationSeconds < 1800)
      offenders.push(setting('lockout_duration', `${c.lockoutDurationSeconds} s (want at least 1800)`));
    if (c.passwordMinLength < 12)
      offenders.push(setting('password_min_length', `${c.passwordMinLength} (want at least 12)`));
    return byOffenders(offenders, 'lockout and password settings', 'weaker than the baseline', {
      lockout_failure_attempts: c.lockoutFailureAttempts,
      lockout_duration_seconds: c.lockoutDurationSeconds,
      password_min_length: c.passwordMinLength,
    });
  },

  async 'access-review'(d) {
    const review = await accessReview(d.store, d.identity.config);
    const offenders = review.users.flatMap((u): Offender[] => {
      const hasRoles = Object.keys(u.roles).length > 0;
      if (u.flags.includes('disabled-with-roles'))
        return [{ type: 'user', id: u.id, name: u.name, detail: 'disabled but still holds roles' }];
      if (u.enabled && hasRoles && !u.break_glass && u.flags.includes('stale'))
        return [
          {
            type: 'user',
            id: u.id,
            name: u.name,
            detail: `no login for over ${review.options.staleDays} days`,
          },
        ];
      return [];
    });
    return byOffenders(offenders, `${review.users.length} users`, 'stale or disabled accounts hold roles');
  },

  async 'backup-encryption'(d) {
    const [repos, backups] = await Promise.all([
      d.store.db.selectFrom('backup_repositories').select(['id', 'target', 'recipient_public_key']).execute(),
      d.store.db
        .selectFrom('backups')
        .select(['id', 'name', 'status', 'seal_sha256'])
        .where('deleted_at', 'is', null)
        .execute(),
    ]);
    if (repos.length === 0 && backups.length === 0)
      return notApplicable('backup repositories and backups', 'no backup repository or backup exists yet');
    const offenders: Offender[] = [
      ...repos
        .filter((r) => !r.recipient_public_key)
        .map((r) => ({
          type: 'backup_repository',
          id: r.id,
          name: r.target,
          detail: 'no recovery public key to seal for',
        })),
      ...backups
        .filter((b) => b.status === 'available' && !b.seal_sha256)
        .map((b) => ({ type: 'backup', id: b.id, name: b.name, detail: 'available but carries no seal' })),
    ];
    return byOffenders(
      offenders,
      `${repos.length} repositories, ${backups.length} backups`,
      'unsealed backups',
    );
  },

  async 'backup-freshness'(d) {
    const schedules = await d.store.db
      .selectFrom('backup_schedules')
      .selectAll()
      .orderBy('created_at')
      .execute();
    if (schedules.length === 0)
      return notApplicable('backup schedules', 'no backup schedule exists, so no backup can be late');
    const now = d.now().getTime();
    const offenders: Offender[] = [];
    for (const s of schedules) {
      const last = await d.store.db
        .selectFrom('backups')
        .select(['created_at'])
        .where('source_id', '=', s.source_id)
        .where('status', '=', 'available')
        .where('deleted_at', 'is', null)
        .orderBy('created_at', 'desc')
        .executeTakeFirst();
      const allowed = 2 * s.interval_minutes * 60_000;
      const since = Date.parse(last?.created_at ?? s.created_at);
      if (now - since > allowed)
        offenders.push({
          type: 'backup_schedule',
          id: s.id,
          name: s.name,
          detail: last
            ? `${s.kind} ${s.source_id}: newest backup ${last.created_at}, older than 2 × ${s.interval_minutes} min`
            : `${s.kind} ${s.source_id}: no successful backup since the schedule was made (${s.created_at})${s.last_error ? `; last error: ${s.last_error}` : ''}`,
        });
    }
    return byOffenders(
      offenders,
      `${schedules.length} backup schedules`,
      'backups older than their schedule allows',
    );
  },

  async 'restore-admin-only'() {
    const offenders = (['volume:backups:restore', 'volume:backups:delete'] as const)
      .filter((a) => POLICY[a].length !== 1 || POLICY[a][0] !== 'admin')
      .map((a) => ({ type: 'policy', id: a, detail: `allowed to ${POLICY[a].join(', ')}` }));
    return byOffenders(offenders, 'the restore and delete rules in the policy table', 'not admin-only', {
      'volume:backups:restore': POLICY['volume:backups:restore'],
      'volume:backups:delete': POLICY['volume:backups:delete'],
    });
  },

  async 'resource-quotas'(d) {
    const rows = await d.store.db
      .selectFrom('quota_limits as q')
      .leftJoin('projects as p', 'p.id', 'q.project_id')
      .select(['q.project_id', 'p.name', 'q.user_id', 'q.resource', 'q.hard_limit'])
      .where('q.hard_limit', '<', 0)
      .where('q.resource', 'in', ['instances', 'cores', 'ram', 'volumes', 'gigabytes'])
      .execute();
    const projects = await d.store.db.selectFrom('projects').select('id').execute();
    return byOffenders(
      rows.map((r) => ({
        type: 'project',
        id: r.project_id,
        name: r.name,
        detail: `${r.resource} unlimited${r.user_id ? ` for user ${r.user_id}` : ''}`,
      })),
      `quota limits of ${projects.length} projects`,
      'unlimited quotas',
    );
  },

  async 'storage-thresholds'(d) {
    const pools = await d.storage.list();
    const offenders: Offender[] = pools
      .filter((p) => p.state !== 'ok')
      .map((p) => ({
        type: 'storage_pool',
        id: p.name,
        name: p.path,
        detail: `${p.used_percent}% used (${p.state}; warn at ${p.warn_percent}%)`,
      }));
    if (d.settings.storageThresholds.refusePercent > 95)
      offenders.push(
        setting('storage_refuse_percent', `${d.settings.storageThresholds.refusePercent}% (want at most 95)`),
      );
    return byOffenders(offenders, `${pools.length} storage pools`, 'storage pools past their threshold', {
      pools: pools.map((p) => ({ name: p.name, used_percent: p.used_percent, state: p.state })),
    });
  },

  async 'snapshot-lifecycle'(d) {
    const rows = await d.store.db
      .selectFrom('snapshots as s')
      .leftJoin('projects as p', 'p.id', 's.project_id')
      .select(['s.project_id', 'p.name'])
      .select((eb) => eb.fn.countAll<number>().as('n'))
      .where('s.deleted_at', 'is', null)
      .groupBy(['s.project_id', 'p.name'])
      .execute();
    if (rows.length === 0) return notApplicable('snapshots', 'no snapshots are kept');
    const policies = await d.store.db.selectFrom('snapshot_policies').select(['project_id']).execute();
    const covered = new Set(policies.map((p) => p.project_id));
    return byOffenders(
      rows
        .filter((r) => !covered.has(r.project_id))
        .map((r) => ({
          type: 'project',
          id: r.project_id,
          name: r.name,
          detail: `${Number(r.n)} snapshots, no lifecycle policy`,
        })),
      `${rows.length} projects holding snapshots`,
      'snapshots kept without a lifecycle policy',
    );
  },

  async 'network-zones'(d) {
    const [networks, rules] = await Promise.all([
      d.store.db.selectFrom('networks').select(['zone']).execute(),
      d.store.db.selectFrom('zone_rules').selectAll().orderBy('created_at').execute(),
    ]);
    if (networks.length === 0) return notApplicable('networks and zone rules', 'no networks exist');
    const offenders = rules
      .filter((r) => r.protocol === 'any')
      .map((r) => ({
        type: 'zone_rule',
        id: r.id,
        name: `${r.from_zone} -> ${r.to_zone}`,
        detail: 'opens every protocol and port between the zones',
      }));
    return byOffenders(
      offenders,
      `${networks.length} networks in ${new Set(networks.map((n) => n.zone)).size} zones, ${rules.length} zone rules`,
      'zone rules that open everything',
    );
  },

  async 'default-deny-ingress'(d) {
    const offenders: Offender[] = (await worldIngress(d)).filter(allPorts).map((r) => ({
      type: 'security_group_rule',
      id: r.id,
      name: r.group_name,
      detail: `ingress ${r.protocol ?? 'any'} all ports from ${source(r)} (group ${r.group_id})`,
    }));
    if (d.settings.defaultGroupAllowsSameGroup)
      offenders.unshift(
        setting(
          'default_group_allows_same_group',
          "new projects' default group allows ingress from its members",
        ),
      );
    return byOffenders(offenders, 'ingress rules of every security group', 'ingress open to everyone');
  },

  async 'admin-ports-exposed'(d) {
    const rules = await worldIngress(d);
    const offenders = rules.flatMap((r) =>
      ADMIN_PORTS.filter((p) => opensTcp(r, p)).map((p) => ({
        type: 'security_group_rule',
        id: r.id,
        name: r.group_name,
        detail: `ingress tcp ${p} from ${source(r)} (group ${r.group_id}, project ${r.project_id})`,
      })),
    );
    return byOffenders(
      offenders,
      `${rules.length} ingress rules open to any source`,
      'SSH or RDP reachable from anywhere',
    );
  },

  async 'escape-hardening'(d) {
    const servers = (await liveServers(d)).filter((s) => s.host === null || s.host === d.settings.localHost);
    const offenders: Offender[] = [];
    const uids = new Map<number, string>();
    let running = 0;
    for (const s of servers) {
      const p = await d.driver.processInfo(s.id);
      if (!p) continue;
      running++;
      const c = await d.confinement(p.pid);
      const bad = (detail: string) => offenders.push({ type: 'server', id: s.id, name: s.name, detail });
      if (!c) {
        bad(`guest process ${p.pid} is not visible in /proc`);
        continue;
      }
      if (c.uid === null || c.uid === 0) bad(`guest process ${p.pid} runs as root`);
      else if (uids.has(c.uid)) bad(`guest process shares uid ${c.uid} with server ${uids.get(c.uid)}`);
      else uids.set(c.uid, s.id);
      if (c.seccomp !== 2)
        bad(`guest process ${p.pid} has no seccomp filter (Seccomp: ${c.seccomp ?? 'absent'})`);
      if (!c.cgroup?.endsWith(`/vm-${s.id}`))
        bad(`guest process ${p.pid} is in cgroup ${c.cgroup ?? '?'}, not its own`);
    }
    if (running === 0)
      return notApplicable(
        `${servers.length} servers on ${d.settings.localHost}`,
        'no guest is running on this host',
      );
    return byOffenders(
      offenders,
      `${running} running guests on ${d.settings.localHost}`,
      'guests without per-VM user, seccomp or cgroup',
    );
  },

  async 'template-only-clones'(d) {
    const offenders: Offender[] = [];
    if (!(await d.approvals.applies('server-clone')))
      offenders.push(setting('approval_trigger:server-clone', 'clones run without a second admin'));
    const templates = await d.store.db
      .selectFrom('templates')
      .select(['image_id'])
      .where('status', '=', 'approved')
      .execute();
    const servers = await liveServers(d);
    if (templates.length > 0) {
      const ok = new Set(templates.map((t) => t.image_id));
      for (const s of servers)
        if (!ok.has(s.image_id))
          offenders.push({
            type: 'server',
            id: s.id,
            name: s.name,
            detail: `image ${s.image_id} is not an approved template version`,
          });
    }
    return byOffenders(
      offenders,
      `the server-clone trigger; ${servers.length} servers against ${templates.length} approved template versions`,
      'clones or servers outside the template process',
      {
        approved_templates: templates.length,
      },
    );
  },

  async 'guest-agent-limits'(d) {
    const now = d.now().toISOString();
    const grants = await d.store.db
      .selectFrom('guest_agent_grants')
      .selectAll()
      .where('revoked_at', 'is', null)
      .where('expires_at', '>', now)
      .execute();
    const offenders = grants
      .filter((g) => (JSON.parse(g.commands) as string[]).includes('guest-exec'))
      .filter((g) => Date.parse(g.expires_at) - Date.parse(g.created_at) > DAY)
      .map((g) => ({
        type: 'guest_agent_grant',
        id: g.id,
        name: g.server_id,
        detail: `guest-exec granted by ${g.granted_by_name} until ${g.expires_at}`,
      }));
    return byOffenders(
      offenders,
      `${grants.length} active guest agent grants`,
      'long-lived guest-exec grants',
    );
  },

  async 'passthrough-control'(d) {
    const servers = (await liveServers(d)).filter((s) => s.host_devices);
    const pci = new Set(d.settings.passthrough.pciAllowList);
    const usb = new Set(d.settings.passthrough.usbAllowList);
    const offenders = servers.flatMap((s) => {
      const plan = JSON.parse(s.host_devices ?? '{}') as PassthroughPlan;
      return [
        ...(plan.pci ?? [])
          .filter((x) => !pci.has(vendorProduct(x)))
          .map((x) => `PCI ${x.address} (${vendorProduct(x)})`),
        ...(plan.usb ?? [])
          .filter((x) => !usb.has(vendorProduct(x)))
          .map((x) => `USB ${x.sysName} (${vendorProduct(x)})`),
      ].map((detail) => ({
        type: 'server',
        id: s.id,
        name: s.name,
        detail: `${detail} is not on the allow-list`,
      }));
    });
    return byOffenders(
      offenders,
      `${servers.length} servers with host devices`,
      'devices passed through outside the allow-lists',
      {
        pci_allow_list: [...pci],
        usb_allow_list: [...usb],
      },
    );
  },

  async 'console-recording'(d) {
    const days = d.settings.consoleRetentionDays;
    const offenders: Offender[] = [];
    if (days < 90) offenders.push(setting('console_retention_days', `${days} days (want at least 90)`));
    // A day's grace: the pruner runs periodically.
    const cutoff = new Date(d.now().getTime() - (days + 1) * DAY).toISOString();
    const stale = await d.store.db
      .selectFrom('console_recordings')
      .select(['id', 'server_name', 'started_at'])
      .where('started_at', '<', cutoff)
      .execute();
    for (const r of stale)
      offenders.push({
        type: 'console_recording',
        id: r.id,
        name: r.server_name,
        detail: `from ${r.started_at}, past the ${days}-day retention`,
      });
    const total = await d.store.db
      .selectFrom('console_recordings')
      .select((eb) => eb.fn.countAll<number>().as('n'))
      .executeTakeFirst();
    return byOffenders(
      offenders,
      `the retention setting and ${Number(total?.n ?? 0)} recordings`,
      'recordings not kept as required',
      {
        console_retention_days: days,
      },
    );
  },

  async 'siem-forwarding'(d) {
    if (!d.siem)
      return byOffenders(
        [setting('siem_target', 'no SIEM is configured (--siem-target)')],
        'the SIEM configuration',
        'audit is not forwarded',
      );
    const s = await d.siem();
    // The oldest undelivered event's age on the checks' clock, as every other control judges time.
    const lagSeconds = s.oldestUndeliveredAt
      ? Math.max(0, (d.now().getTime() - Date.parse(s.oldestUndeliveredAt)) / 1000)
      : 0;
    const offenders: Offender[] = [];
    if (lagSeconds > SIEM_MAX_LAG_SECONDS)
      offenders.push({
        type: 'siem_destination',
        id: s.destination,
        detail: `${s.lag} events undelivered, oldest ${Math.round(lagSeconds)} s old (more than ${SIEM_MAX_LAG_SECONDS} s)${s.lastError ? `; last error: ${s.lastError}` : ''}`,
      });
    return byOffenders(offenders, `SIEM destination ${s.destination}`, 'the SIEM is behind', {
      connected: s.connected,
      confirmed_seq: s.confirmedSeq,
      head_seq: s.headSeq,
      lag: s.lag,
      lag_seconds: lagSeconds,
    });
  },

  async 'vm-metadata'(d) {
    const rules = await d.metadataRules.list();
    const servers = await liveServers(d);
    const offenders: Offender[] = [];
    if (rules.length === 0) offenders.push(setting('metadata_rules', 'no rule requires any server metadata'));
    for (const s of servers) {
      const missing = await d.metadataRules.violations(JSON.parse(s.metadata) as Record<string, string>);
      if (missing.length)
        offenders.push({ type: 'server', id: s.id, name: s.name, detail: missing.join('; ') });
    }
    return byOffenders(
      offenders,
      `${rules.length} metadata rules over ${servers.length} servers`,
      'servers missing required metadata',
    );
  },

  async 'break-glass'(d) {
    const [accounts, open] = await Promise.all([
      d.store.db.selectFrom('break_glass_accounts').select('id').execute(),
      d.store.db
        .selectFrom('break_glass_reviews')
        .selectAll()
        .where('closed_at', 'is', null)
        .where('expires_at', '<', d.now().toISOString())
        .execute(),
    ]);
    const offenders: Offender[] = open.map((r) => ({
      type: 'break_glass_session',
      id: r.id,
      name: r.user_name,
      detail: `used ${r.opened_at} ("${r.reason}"), ended ${r.expires_at}, not reviewed`,
    }));
    if (accounts.length === 0)
      offenders.unshift(setting('break_glass_accounts', 'no break-glass account exists'));
    return byOffenders(
      offenders,
      `${accounts.length} break-glass accounts and their sessions`,
      'no emergency access, or unreviewed use',
    );
  },

  async 'rate-limits'(d) {
    const { serverCreateRate, apiRate } = d.settings;
    const offenders: Offender[] = [];
    if (serverCreateRate <= 0) offenders.push(setting('server_create_rate', 'no limit on server creation'));
    if (!apiRate || apiRate.perToken <= 0)
      offenders.push(setting('api_rate', 'no per-token API request limit'));
    if (!apiRate || apiRate.perAddress <= 0)
      offenders.push(setting('api_address_rate', 'no per-address API request limit'));
    return byOffenders(offenders, 'server-create and API rate settings', 'rate limits off', {
      server_create_rate: serverCreateRate,
      api_rate: apiRate,
    });
  },

  async 'dr-drill'(d) {
    // PCI DSS 12.10.2: the response plan is tested at least once every 12 months.
    const servers = await liveServers(d);
    const protectedIds = new Set(
      (await d.store.db.selectFrom('dr_policies').select('server_id').execute()).map((p) => p.server_id),
    );
    const covered = servers.filter((s) => protectedIds.has(s.id));
    if (servers.length === 0)
      return notApplicable(
        'servers with a DR target (dr_policies)',
        'no server exists, so none needs a DR drill',
      );
    const offenders: Offender[] = [];
    if (covered.length === 0)
      offenders.push(setting('dr_targets', 'no server has a DR target (bulwark dr target set SERVER ...)'));
    const cutoff = d.now().getTime() - 365 * DAY;
    for (const s of covered) {
      const last = await d.store.db
        .selectFrom('dr_drills')
        .select(['finished_at', 'verdict', 'reason', 'rpo_s', 'rto_s'])
        .where('server_id', '=', s.id)
        .where('finished_at', 'is not', null)
        .orderBy('finished_at', 'desc')
        .limit(1)
        .executeTakeFirst();
      const problem = !last?.finished_at
        ? 'never drilled'
        : Date.parse(last.finished_at) < cutoff
          ? `last drill ${last.finished_at}, more than a year ago`
          : last.verdict !== 'pass'
            ? `last drill ${last.finished_at} failed: ${last.reason ?? 'no reason recorded'}`
            : null;
      if (problem) offenders.push({ type: 'server', id: s.id, name: s.name, detail: problem });
    }
    return byOffenders(
      offenders,
      `the newest finished drill of each of ${covered.length} protected servers (of ${servers.length})`,
      'DR drills missing, older than a year or failed',
      { protected_servers: covered.length },
    );
  },

  async 'audit-chain'(d) {
    const v = await verifyAuditChain(d.store);
    const offenders: Offender[] = v.failure
      ? [{ type: 'audit_event', id: String(v.failure.seq), name: v.failure.id, detail: v.failure.problem }]
      : [];
    return byOffenders(
      offenders,
      `${v.checked} audit rows from the first to the head`,
      'the audit chain is broken',
      {
        rows_checked: v.checked,
      },
    );
  },

  async 'vtpm-secure-boot'(d) {
    const hosts = await d.store.db
      .selectFrom('hosts')
      .selectAll()
      .where('local', '=', 0)
      .where('state', '=', 'up')
      .execute();
    const { capabilities: cap, localHost } = d.settings;
    const offenders: Offender[] = [];
    const missing = (host: string, has: (f: string) => boolean) =>
      ['secure-boot', 'tpm']
        .filter((f) => !has(f))
        .map((f) => ({
          type: 'host',
          id: host,
          name: host,
          detail: `no ${f === 'tpm' ? 'vTPM (swtpm)' : 'UEFI Secure Boot'}`,
        }));
    offenders.push(...missing(localHost, (f) => (f === 'tpm' ? cap.tpm : cap.secureBoot)));
    for (const h of hosts) {
      const features = JSON.parse(h.features) as string[];
      offenders.push(...missing(h.name, (f) => features.includes(f)));
    }
    return byOffenders(offenders, `${hosts.length + 1} hosts`, 'hosts without Secure Boot or vTPM', {
      [localHost]: { secure_boot: cap.secureBoot, tpm: cap.tpm, uefi: cap.uefi },
    });
  },
};
