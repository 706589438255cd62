import { readFileSync } from 'node:fs';
import { sql } from 'kysely';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SiemForwarder } from '../../src/audit/siem.js';
import { generateRecoveryKey } from '../../src/backups/crypto.js';
import { CONTROLS, FRAMEWORKS } from '../../src/compliance/catalogue.js';
import { PLATFORM_CHECKS } from '../../src/compliance/checks.js';
import { HOST_CHECKS, SYSCTL_BASELINE } from '../../src/compliance/host-checks.js';
import { catalogueTable } from '../../src/compliance/render.js';
import type { CheckResult } from '../../src/compliance/verdict.js';
import { compactFacts, probeHardening } from '../../src/host/hardening.js';
import { POLICY } from '../../src/policy/rules.js';
import { lastAuditEvent, serverRequest, startTestApi, type TestApi } from '../helpers/api.js';
import { fakeHost } from '../helpers/fake-host.js';
import { dialects } from '../helpers/store.js';

const RUNS = '/bulwark/v1/compliance/runs';

/**
 * The compliance engine against a running platform (docs/compliance.md):
 * every check reads real state, so changing the state changes the verdict.
 * The host is a prepared fake /proc, /sys and /etc (test/host/hardening.test.ts
 * runs the probe on this machine too).
 */
describe.each(dialects())('compliance checks on %s', (dialect) => {
  let api: TestApi;
  let host: Awaited<ReturnType<typeof fakeHost>>;
  let admin: string;
  let member: string;
  let serverId: string;
  /** The platform's clock, moved forward by tests that need time to pass. */
  let shift = 0;

  const run = async (): Promise<Record<string, CheckResult>> => {
    const r = await api.call('POST', RUNS, admin, {});
    expect(r.status).toBe(201);
    return Object.fromEntries((r.json.run.results as CheckResult[]).map((x) => [x.control_id, x]));
  };
  const check = async (id: string) => {
    const r = (await run())[id];
    if (!r) throw new Error(`no result for ${id}`);
    return r;
  };

  beforeAll(async () => {
    host = await fakeHost();
    api = await startTestApi(dialect, {
      procRoot: host.roots.proc,
      etcRoot: host.roots.etc,
      sysfsRoot: host.roots.sys,
      apiRate: { perToken: 600, perAddress: 1200 },
      serverCreateRate: 20,
      clock: () => new Date(Date.now() + shift),
    });
    // The data dir is made by the harness: watch it as the guide watches libvirt's.
    await host.put('etc/audit/rules.d/data.rules', `-w ${api.db.dir} -p wa -k vm_changes\n`);
    admin = await api.login('admin', api.adminPassword, 'admin');
    member = (await api.persona('cmp-p', 'cmp-member', 'member')).token;
    const { flavorId, imageId } = await api.bootable(admin, 'cmp');
    const s = await api.platform.compute.servers.create(api.authOf(admin), {
      ...serverRequest(imageId, flavorId, 'cmp-web'),
      metadata: { environment: 'staging' },
    });
    await api.platform.compute.servers.settled();
    serverId = s.id;
  });
  afterAll(async () => {
    await api?.close();
    await host?.cleanup();
  });

  it('lists the catalogue; every control has exactly one live check and mappings', async () => {
    const r = await api.call('GET', '/bulwark/v1/compliance/controls', admin);
    expect(r.status).toBe(200);
    expect(r.json.controls.map((c: { id: string }) => c.id)).toEqual(CONTROLS.map((c) => c.id));
    const checks = [...Object.keys(PLATFORM_CHECKS), ...Object.keys(HOST_CHECKS)].sort();
    expect(checks).toEqual(CONTROLS.map((c) => c.id).sort());
    for (const c of CONTROLS) {
      expect(Object.values(c.mappings).flat().length, c.id).toBeGreaterThan(0);
      for (const h of c.mappings.hipaa)
        expect(h).toMatch(/^164\.3(12|08)\([a-e]\)(\(\d\))?(\([ivx]+\))?(\([A-D]\))?$/);
      for (const p of c.mappings['pci-dss']) expect(p).toMatch(/^\d{1,2}(\.\d{1,2}){1,3}$/);
      for (const s of c.mappings.soc2) expect(s).toMatch(/^(CC\d\.\d|A1\.\d|C1\.\d)$/);
    }
    // docs/compliance.md carries the catalogue exactly as the data has it.
    const doc = readFileSync(new URL('../../docs/compliance.md', import.meta.url), 'utf8');
    expect(doc).toContain(catalogueTable());
    for (const c of CONTROLS) expect(doc, c.id).toMatch(new RegExp(`^\\| \`${c.id}\` `, 'm'));
    const hipaa = await api.call('GET', '/bulwark/v1/compliance/controls?framework=hipaa', admin);
    expect(hipaa.json.controls.every((c: any) => c.mappings.hipaa.length > 0)).toBe(true);
    expect(hipaa.json.controls.length).toBeLessThan(CONTROLS.length);
  });

  it('only cloud admins see or run compliance; bad input is refused', async () => {
    for (const [m, u] of [
      ['GET', '/bulwark/v1/compliance/controls'],
      ['POST', RUNS],
      ['GET', RUNS],
    ] as const)
      expect((await api.call(m, u, member, m === 'POST' ? {} : undefined)).status).toBe(403);
    expect((await api.call('POST', RUNS, admin, { verdict: 'pass' })).status).toBe(400);
    expect((await api.call('GET', '/bulwark/v1/compliance/controls?framework=iso27001', admin)).status).toBe(
      400,
    );
  });

  it('disk encryption: a plain volume and a server without a root key fail, by id; fixing them passes', async () => {
    expect((await check('disk-encryption')).verdict).toBe('pass');
    const auth = api.authOf(admin);
    const plain = await api.platform.volume.types.create({ name: 'cmp-plain' });
    const vol = await api.platform.volume.volumes.create(auth, {
      size: 1,
      name: 'cmp-clear',
      volumeType: plain.id,
    });
    await api.store.db
      .updateTable('servers')
      .set({ root_key_secret_id: null })
      .where('id', '=', serverId)
      .execute();
    const failing = await check('disk-encryption');
    expect(failing.verdict).toBe('fail');
    expect(failing.offenders).toEqual([
      { type: 'server', id: serverId, name: 'cmp-web', detail: 'root disk has no encryption key' },
      { type: 'volume', id: vol.id, name: 'cmp-clear', detail: 'volume type has no encryption' },
    ]);
    await api.platform.volume.volumes.delete(auth, vol.id);
    await api.platform.compute.servers.settled();
    const key = await api.platform.keys.createKey(auth.projectId as string, {
      name: 'k',
      bits: 256,
      purpose: 'root-disk-encryption',
    });
    await api.store.db
      .updateTable('servers')
      .set({ root_key_secret_id: key })
      .where('id', '=', serverId)
      .execute();
    expect((await check('disk-encryption')).verdict).toBe('pass');
  });

  it('security groups: 0.0.0.0/0 on 22 and ::/0 on 3389 fail; an all-ports world rule breaks default deny', async () => {
    expect((await check('admin-ports-exposed')).verdict).toBe('pass');
    expect((await check('default-deny-ingress')).verdict).toBe('pass');
    const g = await api.call('POST', '/network/v2.0/security-groups', admin, {
      security_group: { name: 'cmp-sg' },
    });
    const rule = async (body: Record<string, unknown>) =>
      (
        await api.call('POST', '/network/v2.0/security-group-rules', admin, {
          security_group_rule: { security_group_id: g.json.security_group.id, direction: 'ingress', ...body },
        })
      ).json.security_group_rule.id as string;
    const ssh = await rule({
      protocol: 'tcp',
      port_range_min: 22,
      port_range_max: 22,
      remote_ip_prefix: '0.0.0.0/0',
    });
    const rdp = await rule({
      ethertype: 'IPv6',
      protocol: 'tcp',
      port_range_min: 3000,
      port_range_max: 4000,
      remote_ip_prefix: '::/0',
    });
    const narrow = await rule({
      protocol: 'tcp',
      port_range_min: 22,
      port_range_max: 22,
      remote_ip_prefix: '192.0.2.0/24',
    });
    const exposed = await check('admin-ports-exposed');
    expect(exposed.verdict).toBe('fail');
    expect(exposed.offenders.map((o) => [o.id, o.name, o.detail.split(' (')[0]])).toEqual([
      [ssh, 'cmp-sg', 'ingress tcp 22 from 0.0.0.0/0'],
      [rdp, 'cmp-sg', 'ingress tcp 3389 from ::/0'],
    ]);
    expect(exposed.offenders.some((o) => o.id === narrow)).toBe(false);
    const all = await rule({ remote_ip_prefix: '0.0.0.0/0' });
    const deny = await check('default-deny-ingress');
    expect(deny.verdict).toBe('fail');
    expect(deny.offenders.map((o) => o.id)).toEqual([all]);
    for (const id of [ssh, rdp, all])
      expect((await api.call('DELETE', `/network/v2.0/security-group-rules/${id}`, admin)).status).toBe(204);
    const after = await run();
    expect(after['admin-ports-exposed']?.verdict).toBe('pass');
    expect(after['default-deny-ingress']?.verdict).toBe('pass');
  });

  it('admin MFA: the switch off and an admin without a factor fail; enrolling removes the admin', async () => {
    const r = await check('admin-mfa');
    expect(r.verdict).toBe('fail');
    expect(r.offenders.map((o) => o.id)).toEqual(['admin_mfa_required', expect.any(String)]);
    expect(r.offenders[1]?.name).toBe('admin');
    const adminId = api.authOf(admin).userId;
    await api.call('POST', '/identity/v3/credentials', admin, {
      credential: { type: 'totp', user_id: adminId, blob: 'JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP' },
    });
    await api.call('PATCH', `/identity/v3/users/${adminId}`, admin, {
      user: { options: { multi_factor_auth_rules: [['password', 'totp']], multi_factor_auth_enabled: true } },
    });
    expect((await check('admin-mfa')).offenders.map((o) => o.id)).toEqual(['admin_mfa_required']);
  });

  it('quotas: an unlimited project fails by name; a bound passes', async () => {
    const p = (await api.identity.listProjects({ name: 'cmp-p' }))[0]!;
    expect((await check('resource-quotas')).verdict).toBe('pass');
    await api.platform.quotas.set(p.id, { cores: -1 });
    const r = await check('resource-quotas');
    expect(r.offenders).toEqual([{ type: 'project', id: p.id, name: 'cmp-p', detail: 'cores unlimited' }]);
    await api.platform.quotas.set(p.id, { cores: 40 });
    expect((await check('resource-quotas')).verdict).toBe('pass');
  });

  it('zones: not applicable without networks; an any-protocol zone rule fails; removing it passes', async () => {
    expect((await check('network-zones')).verdict).toBe('not_applicable');
    await api.call('POST', '/network/v2.0/networks', admin, { network: { name: 'cmp-net' } });
    await api.platform.network.zones.create({ name: 'cmp-dmz' });
    expect((await check('network-zones')).verdict).toBe('pass');
    const rule = await api.platform.network.zones.addRule({ fromZone: 'cmp-dmz', toZone: 'default' });
    const r = await check('network-zones');
    expect(r.offenders).toEqual([expect.objectContaining({ id: rule.id, name: 'cmp-dmz -> default' })]);
    await api.platform.network.zones.removeRule(rule.id);
    const tcp = await api.platform.network.zones.addRule({
      fromZone: 'cmp-dmz',
      toZone: 'default',
      protocol: 'tcp',
      portMin: 443,
      portMax: 443,
    });
    expect((await check('network-zones')).verdict).toBe('pass');
    await api.platform.network.zones.removeRule(tcp.id);
  });

  it('guest agent: a 48-hour guest-exec grant fails; revoking it passes', async () => {
    const auth = api.authOf(admin);
    const g = await api.platform.compute.guestAgent.grant(auth, serverId, {
      commands: ['guest-exec', 'guest-exec-status'],
      expiresAt: new Date(Date.now() + 48 * 3600_000).toISOString(),
      reason: 'incident 7',
    });
    const r = await check('guest-agent-limits');
    expect(r.verdict).toBe('fail');
    expect(r.offenders.map((o) => o.id)).toEqual([g.id]);
    await api.platform.compute.guestAgent.revoke(auth, serverId, g.id);
    expect((await check('guest-agent-limits')).verdict).toBe('pass');
  });

  it('metadata: a server lacking what a rule requires fails by name; setting it passes; no rules at all fails', async () => {
    const rules = api.platform.governance.metadataRules;
    expect((await check('vm-metadata')).verdict).toBe('pass');
    await rules.create(api.authOf(admin), {
      id: 'staging-needs-owner',
      when: { key: 'environment', value: 'staging' },
      requires: ['owner'],
    });
    const r = await check('vm-metadata');
    expect(r.offenders).toEqual([expect.objectContaining({ type: 'server', id: serverId, name: 'cmp-web' })]);
    const put = await api.call('POST', `/compute/v2.1/servers/${serverId}/metadata`, admin, {
      metadata: { owner: 'alice' },
    });
    expect(put.status).toBe(200);
    expect((await check('vm-metadata')).verdict).toBe('pass');
    const all = await rules.list();
    for (const rule of all) await rules.delete(rule.id);
    expect((await check('vm-metadata')).offenders.map((o) => o.id)).toEqual(['metadata_rules']);
    for (const rule of all)
      await rules.create(api.authOf(admin), { id: rule.id, when: rule.when, requires: [...rule.requires] });
  });

  it('break-glass: none set up fails; an account passes', async () => {
    expect((await check('break-glass')).offenders.map((o) => o.id)).toEqual(['break_glass_accounts']);
    await api.platform.breakGlass.createAccount(api.authOf(admin), 'cmp-bg');
    expect((await check('break-glass')).verdict).toBe('pass');
  });

  it('clones: the approval trigger off fails; back on passes', async () => {
    const auth = api.authOf(admin);
    expect((await check('template-only-clones')).verdict).toBe('pass');
    await api.platform.approvals.setTrigger(auth, 'server-clone', { enabled: false });
    expect((await check('template-only-clones')).offenders.map((o) => o.id)).toEqual([
      'approval_trigger:server-clone',
    ]);
    await api.platform.approvals.setTrigger(auth, 'server-clone', { enabled: true });
    expect((await check('template-only-clones')).verdict).toBe('pass');
  });

  it('escape hardening: the running guest as its own user, seccomp and cgroup passes; without seccomp or as root fails', async () => {
    // The fake hypervisor's guest is pid 1 in the fake /proc.
    await host.process(1, { uid: 2001, seccomp: 2, cgroup: `/bulwark/vm-${serverId}` });
    expect((await check('escape-hardening')).verdict).toBe('pass');
    await host.process(1, { uid: 0, seccomp: 0, cgroup: '/' });
    const r = await check('escape-hardening');
    expect(r.offenders.map((o) => o.detail)).toEqual([
      'guest process 1 runs as root',
      'guest process 1 has no seccomp filter (Seccomp: 0)',
      'guest process 1 is in cgroup /, not its own',
    ]);
    await host.process(1, { uid: 2001, seccomp: 2, cgroup: `/bulwark/vm-${serverId}` });
  });

  it('passthrough: a device off the allow-list fails by server', async () => {
    expect((await check('passthrough-control')).verdict).toBe('pass');
    const plan = {
      serverId,
      pci: [
        {
          address: '0000:03:00.0',
          vendorId: '10de',
          productId: '1eb8',
          classCode: '030000',
          driver: 'vfio-pci',
          iommuGroup: '14',
        },
      ],
      usb: [],
      summary: '',
    };
    await api.store.db
      .updateTable('servers')
      .set({ host_devices: JSON.stringify(plan) })
      .where('id', '=', serverId)
      .execute();
    expect((await check('passthrough-control')).offenders).toEqual([
      expect.objectContaining({
        id: serverId,
        detail: 'PCI 0000:03:00.0 (10de:1eb8) is not on the allow-list',
      }),
    ]);
    await api.store.db
      .updateTable('servers')
      .set({ host_devices: null })
      .where('id', '=', serverId)
      .execute();
  });

  it('restore: a policy table letting backup operators restore fails', async () => {
    const table = POLICY as unknown as Record<string, readonly string[]>;
    const saved = table['volume:backups:restore'];
    table['volume:backups:restore'] = ['admin', 'backup-operator'];
    try {
      expect((await check('restore-admin-only')).offenders.map((o) => o.id)).toEqual([
        'volume:backups:restore',
      ]);
    } finally {
      table['volume:backups:restore'] = saved as readonly string[];
    }
    expect((await check('restore-admin-only')).verdict).toBe('pass');
  });

  it('access review: an account idle for 100 days with roles fails; removing it passes', async () => {
    const u = await api.persona('cmp-p', 'cmp-idle', 'member');
    const old = new Date(Date.now() - 100 * 86_400_000).toISOString();
    await api.store.db
      .updateTable('users')
      .set({ last_login_at: old, created_at: old })
      .where('id', '=', u.userId)
      .execute();
    expect((await check('access-review')).offenders).toEqual([
      expect.objectContaining({ id: u.userId, name: 'cmp-idle' }),
    ]);
    await api.identity.deleteUser(u.userId, api.authOf(admin).userId);
    expect((await check('access-review')).verdict).toBe('pass');
  });

  it('SIEM: not configured fails; a forwarder with nothing old undelivered passes', async () => {
    expect((await check('siem-forwarding')).offenders.map((o) => o.id)).toEqual(['siem_target']);
    const siem = new SiemForwarder(api.store, {
      host: '127.0.0.1',
      port: 9,
      ca: '',
      format: 'rfc5424',
      hostname: 'h',
    });
    api.platform.compliance.attachSiem(() => siem.status());
    const r = await check('siem-forwarding');
    expect(r.verdict).toBe('pass');
    expect(r.observed.head_seq).toBeGreaterThan(0);
  });

  it('host hardening: the fake host passes; a weak sysctl and nested KVM fail, naming the host', async () => {
    const before = await run();
    for (const id of Object.keys(HOST_CHECKS)) expect([id, before[id]?.verdict]).toEqual([id, 'pass']);
    await host.sysctl('net.ipv4.conf.all.accept_redirects', '1');
    await host.put('sys/module/kvm_intel/parameters/nested', '1\n');
    const after = await run();
    expect(after['host-sysctls']?.offenders).toEqual([
      {
        type: 'host',
        id: 'test-host',
        name: 'test-host',
        detail: 'net.ipv4.conf.all.accept_redirects = 1 (want 0)',
      },
    ]);
    expect(after['host-nested-virt']?.verdict).toBe('fail');
    await host.sysctl('net.ipv4.conf.all.accept_redirects', '0');
    await host.put('sys/module/kvm_intel/parameters/nested', 'N\n');
  });

  it('snapshots and backups: kept without a lifecycle policy fails; a late schedule fails; fixing each passes', async () => {
    const auth = api.authOf(admin);
    const vol = await api.platform.volume.volumes.create(auth, { size: 1, name: 'cmp-data' });
    const { snapshot } = await api.platform.snapshots.snapshots.create(auth, 'volume', vol.id, {
      name: 'pre-upgrade',
      description: 'before the upgrade',
    });
    await api.platform.snapshots.snapshots.settled();
    const kept = await check('snapshot-lifecycle');
    expect(kept.offenders).toEqual([
      expect.objectContaining({ type: 'project', id: auth.projectId, name: 'admin' }),
    ]);
    await api.platform.snapshots.policies.set(
      auth,
      'project',
      auth.projectId as string,
      auth.projectId as string,
      {
        maxCount: 5,
      },
    );
    expect((await check('snapshot-lifecycle')).verdict).toBe('pass');

    expect((await check('backup-freshness')).verdict).toBe('not_applicable');
    expect((await check('backup-encryption')).verdict).toBe('not_applicable');
    await api.platform.backups.initRepository(auth, generateRecoveryKey().publicKey);
    expect((await check('backup-encryption')).verdict).toBe('pass');
    const sched = await api.platform.backupScheduler.create(auth, { sourceId: vol.id, intervalMinutes: 60 });
    expect((await check('backup-freshness')).verdict).toBe('pass');
    shift = 3 * 3600_000; // three hours on: no backup within twice the hour
    const late = await check('backup-freshness');
    expect(late.offenders).toEqual([expect.objectContaining({ type: 'backup_schedule', id: sched.id })]);
    expect(late.offenders[0]?.detail).toMatch(/no successful backup since the schedule was made/);
    shift = 0;
    await api.platform.backupScheduler.delete(auth, 'volume', sched.id);
    await api.platform.snapshots.snapshots.delete(auth, snapshot.id, 'volume');
    await api.platform.snapshots.snapshots.settled();
    await api.platform.volume.volumes.delete(auth, vol.id);
  });

  it('agent hosts: judged from the readings in their reports; none sent is not applicable; a weak agent fails', async () => {
    const agentHost = await fakeHost(api.db.dir);
    try {
      const capacity = { vcpus: 8, ramMiB: 8192, diskGiB: 100 };
      const { hosts } = api.platform.compute;
      await hosts.register({ name: 'cmp-agent-a', capacity, features: ['uefi', 'secure-boot', 'tpm'] });
      let r = await run();
      expect(r['host-sysctls']?.verdict).toBe('pass');
      expect(r['host-sysctls']?.reason).toMatch(
        /cmp-agent-a: not_applicable \(the agent sent no hardening readings/,
      );
      await agentHost.sysctl('kernel.dmesg_restrict', '0');
      const facts = compactFacts(
        await probeHardening(
          agentHost.roots,
          SYSCTL_BASELINE.map((x) => x.name),
        ),
      );
      await hosts.heartbeat('cmp-agent-a', {
        capacity,
        features: ['uefi', 'secure-boot', 'tpm'],
        health: { hardening: facts },
      });
      r = await run();
      expect(r['host-sysctls']?.offenders).toEqual([
        {
          type: 'host',
          id: 'cmp-agent-a',
          name: 'cmp-agent-a',
          detail: 'kernel.dmesg_restrict = 0 (want 1)',
        },
      ]);
      expect(r['host-auditd']?.verdict).toBe('pass');
      // Junk in place of readings counts as none.
      await hosts.heartbeat('cmp-agent-a', {
        capacity,
        features: ['uefi', 'secure-boot', 'tpm'],
        health: { hardening: { sysctls: 1 } },
      });
      expect((await check('host-sysctls')).verdict).toBe('pass');
    } finally {
      await api.store.db.deleteFrom('hosts').where('name', '=', 'cmp-agent-a').execute();
      await agentHost.cleanup();
    }
  });

  it('settings that pass here: rate limits, retention, vTPM and Secure Boot, password rules', async () => {
    const r = await run();
    expect(r['rate-limits']?.verdict).toBe('pass');
    expect(r['console-recording']?.verdict).toBe('pass');
    expect(r['vtpm-secure-boot']?.verdict).toBe('pass');
    // The harness keeps the default lockout (1800 s: PCI's 30 minutes) and password rules.
    expect(r['password-policy']?.verdict).toBe('pass');
  });

  it('DR drill: no target fails; a protected server fails until drilled, passes after, fails a year later or on a failed drill', async () => {
    const detail = async () => (await check('dr-drill')).offenders.map((o) => `${o.id}: ${o.detail}`);
    expect(await detail()).toEqual([expect.stringMatching(/^dr_targets: no server has a DR target/)]);
    const target = await api.call('PUT', `/bulwark/v1/dr/targets/${serverId}`, admin, {
      target: { rpo_s: 86400, rto_s: 3600 },
    });
    expect(target.status).toBe(200);
    expect(await detail()).toEqual([`${serverId}: never drilled`]);
    // A drill as `bulwark dr drill` records it (test/e2e/server-backups.test.ts runs real ones).
    const { project_id } = await api.store.db
      .selectFrom('servers')
      .select('project_id')
      .where('id', '=', serverId)
      .executeTakeFirstOrThrow();
    const drill = (id: string, verdict: string, at: Date) =>
      api.store.db
        .insertInto('dr_drills')
        .values({
          id,
          run_id: id,
          server_id: serverId,
          project_id,
          backup_id: null,
          status: 'done',
          step: null,
          started_at: at.toISOString(),
          finished_at: at.toISOString(),
          rpo_s: 60,
          rto_s: 30,
          rpo_target_s: 86400,
          rto_target_s: 3600,
          verdict,
          reason: verdict === 'pass' ? null : 'the guest did not boot',
          started_by: 'admin',
        })
        .execute();
    try {
      await drill('cmp-drill-1', 'pass', new Date(Date.now() + shift));
      expect((await check('dr-drill')).verdict).toBe('pass');
      shift = 366 * 86_400_000;
      expect(await detail()).toEqual([expect.stringMatching(/more than a year ago$/)]);
      await drill('cmp-drill-2', 'fail', new Date(Date.now() + shift));
      expect(await detail()).toEqual([expect.stringMatching(/failed: the guest did not boot$/)]);
    } finally {
      shift = 0;
      await api.store.db.deleteFrom('dr_drills').where('server_id', '=', serverId).execute();
      await api.call('DELETE', `/bulwark/v1/dr/targets/${serverId}`, admin);
    }
  });

  it('keeps every run: history newest first, a run by id, a report per framework; runs are audited', async () => {
    const list = await api.call('GET', `${RUNS}?limit=3`, admin);
    expect(list.status).toBe(200);
    expect(list.json.runs).toHaveLength(3);
    const [newest] = list.json.runs;
    expect(newest.passed + newest.failed + newest.not_applicable).toBe(CONTROLS.length);
    const one = await api.call('GET', `${RUNS}/${newest.id}`, admin);
    expect(one.json.run.results).toHaveLength(CONTROLS.length);
    for (const fw of FRAMEWORKS) {
      const rep = await api.call('GET', `${RUNS}/${newest.id}/report?framework=${fw}`, admin);
      expect(rep.status).toBe(200);
      expect(rep.json.report.rows.length).toBe(CONTROLS.filter((c) => c.mappings[fw].length > 0).length);
    }
    const md = await api.call('GET', `${RUNS}/${newest.id}/report?framework=soc2&format=markdown`, admin);
    expect(md.json.report.content).toMatch(/^# SOC 2/);
    expect((await api.call('GET', `${RUNS}/nope/report?framework=soc2`, admin)).status).toBe(404);
    expect(await lastAuditEvent(api, 'compliance:runs:create')).toMatchObject({
      outcome: 'success',
      status: 201,
      target_type: 'compliance_run',
    });
  });

  it('audit chain: a changed audit row fails, naming its sequence number', async () => {
    expect((await check('audit-chain')).verdict).toBe('pass');
    const tamper = "UPDATE audit_events SET action = 'nothing' WHERE seq = 3";
    if (dialect === 'postgres') {
      const c = new pg.Client({ connectionString: api.db.adminUrl });
      await c.connect();
      try {
        await c.query('ALTER TABLE audit_events DISABLE TRIGGER USER');
        await c.query(tamper);
        await c.query('ALTER TABLE audit_events ENABLE TRIGGER USER');
      } finally {
        await c.end();
      }
    } else {
      await sql.raw('DROP TRIGGER IF EXISTS audit_events_no_update').execute(api.store.db);
      await sql.raw(tamper).execute(api.store.db);
    }
    const r = await check('audit-chain');
    expect(r.verdict).toBe('fail');
    expect(r.offenders[0]).toMatchObject({ type: 'audit_event', id: '3' });
  });
});

/** The same checks under weaker settings: each setting alone turns its control to fail. */
describe('compliance checks under weak settings (SQLite)', () => {
  let api: TestApi;
  let host: Awaited<ReturnType<typeof fakeHost>>;
  beforeAll(async () => {
    host = await fakeHost();
    api = await startTestApi('sqlite', {
      procRoot: host.roots.proc,
      etcRoot: host.roots.etc,
      sysfsRoot: host.roots.sys,
      identityPolicy: { adminMfaRequired: true, lockoutDurationSeconds: 1800, passwordMinLength: 8 },
      consoleRetentionDays: 30,
      capabilities: { uefi: true, secureBoot: false, tpm: false, cpus: 4 },
      storageThresholds: { warnPercent: 1, refusePercent: 99 },
      defaultGroupAllowsSameGroup: true,
    });
  });
  afterAll(async () => {
    await api?.close();
    await host?.cleanup();
  });

  it('fails rate limits, retention, vTPM/Secure Boot, storage, password length and default deny by setting', async () => {
    const r = Object.fromEntries((await api.platform.compliance.evaluate()).map((x) => [x.control_id, x]));
    expect(r['rate-limits']?.offenders.map((o) => o.id)).toEqual([
      'server_create_rate',
      'api_rate',
      'api_address_rate',
    ]);
    expect(r['console-recording']?.offenders.map((o) => o.detail)).toEqual(['30 days (want at least 90)']);
    expect(r['vtpm-secure-boot']?.offenders.map((o) => o.detail)).toEqual([
      'no UEFI Secure Boot',
      'no vTPM (swtpm)',
    ]);
    expect(r['storage-thresholds']?.offenders.map((o) => o.id)).toEqual([
      'instances',
      'volumes',
      'images',
      'storage_refuse_percent',
    ]);
    expect(r['password-policy']?.offenders.map((o) => o.id)).toEqual(['password_min_length']);
    expect(r['default-deny-ingress']?.offenders.map((o) => o.id)).toEqual([
      'default_group_allows_same_group',
    ]);
    // MFA is required here, so only the admin without a factor remains.
    expect(r['admin-mfa']?.offenders.map((o) => o.name)).toEqual(['admin']);
  });
});
