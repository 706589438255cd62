import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestApi, type TestApi } from '../helpers/api.js';
import { dialects } from '../helpers/store.js';

/** Quotas (docs/quotas.md): Nova, Cinder and Neutron APIs, and race-free enforcement. */
describe.each(dialects())('quotas on %s', (dialect) => {
  let api: TestApi;
  let admin: string;
  const C = '/compute/v2.1';
  const V = '/volume/v3';
  const N = '/network/v2.0';
  let seq = 0;
  const project = (role = 'member') => api.persona(`quota-p${++seq}`, `quota-u${seq}`, role);
  const boot = (token: string, flavorRef: string, imageRef: string) =>
    api.call('POST', `${C}/servers`, token, {
      server: { name: `vm-${++seq}`, imageRef, flavorRef, networks: 'none' },
    });
  const serverCount = async (projectId: string) =>
    (
      await api.store.db
        .selectFrom('servers')
        .select('id')
        .where('project_id', '=', projectId)
        .where('deleted_at', 'is', null)
        .execute()
    ).length;

  beforeAll(async () => {
    api = await startTestApi(dialect);
    admin = await api.login('admin', api.adminPassword, 'admin');
  });
  afterAll(async () => {
    await api?.platform.compute.servers.settled();
    await api?.platform.volume.volumes.settled();
    await api?.close();
  });

  it('shows generous defaults, to the project itself and the admin', async () => {
    const p = await project('reader');
    for (const token of [p.token, admin]) {
      const r = await api.call('GET', `${C}/os-quota-sets/${p.projectId}`, token);
      expect(r.status).toBe(200);
      expect(r.json.quota_set).toMatchObject({
        id: p.projectId,
        instances: 10,
        cores: 20,
        ram: 51200,
        security_groups: 10,
        security_group_rules: 100,
      });
    }
    const v = await api.call('GET', `${V}/${p.projectId}/os-quota-sets/${p.projectId}`, p.token);
    expect(v.status).toBe(200);
    expect(v.json.quota_set).toMatchObject({ volumes: 10, gigabytes: 1000 });
    const n = await api.call('GET', `${N}/quotas/${p.projectId}`, p.token);
    expect(n.status).toBe(200);
    expect(n.json.quota).toMatchObject({ security_group: 10, security_group_rule: 100 });
  });

  it('lets only the cloud admin set quotas; a member changes nothing (403) and sees no other project', async () => {
    const p = await project();
    const q = await project();
    const nova = await api.call('PUT', `${C}/os-quota-sets/${p.projectId}`, p.token, {
      quota_set: { instances: 100 },
    });
    expect(nova.status).toBe(403);
    const cinder = await api.call('PUT', `${V}/os-quota-sets/${p.projectId}`, p.token, {
      quota_set: { gigabytes: 5000 },
    });
    expect(cinder.status).toBe(403);
    const neutron = await api.call('PUT', `${N}/quotas/${p.projectId}`, p.token, {
      quota: { security_group: 50 },
    });
    expect(neutron.status).toBe(403);
    expect((await api.call('DELETE', `${C}/os-quota-sets/${p.projectId}`, p.token)).status).toBe(403);
    expect((await api.call('GET', `${C}/os-quota-sets/${q.projectId}`, p.token)).status).toBe(403);
    expect((await api.call('GET', `${N}/quotas/${q.projectId}`, p.token)).status).toBe(403);
    expect(await api.platform.quotas.limits(p.projectId)).toMatchObject({
      instances: 10,
      gigabytes: 1000,
      security_groups: 10,
    });
    const denied = await api.store.db
      .selectFrom('audit_events')
      .select(['action', 'outcome'])
      .where('action', 'in', ['compute:os-quota-sets:update', 'volume:quotas:update', 'network:update_quota'])
      .where('status', '=', 403)
      .execute();
    expect(denied.length).toBeGreaterThanOrEqual(3);
    expect(denied.every((d) => d.outcome === 'denied')).toBe(true);
  });

  it('20 parallel creates against an instances quota of 5 make exactly 5 servers', async () => {
    const p = await project();
    const set = await api.call('PUT', `${C}/os-quota-sets/${p.projectId}`, admin, {
      quota_set: { instances: 5 },
    });
    expect(set.status).toBe(200);
    expect(set.json.quota_set.instances).toBe(5);
    const { flavorId, imageId } = await api.bootable(p.token, `race${seq}`, 128);
    const answers = await Promise.all(Array.from({ length: 20 }, () => boot(p.token, flavorId, imageId)));
    const ok = answers.filter((r) => r.status === 202);
    const refused = answers.filter((r) => r.status === 403);
    expect(ok).toHaveLength(5);
    expect(refused).toHaveLength(15);
    for (const r of refused)
      expect(r.json.forbidden.message).toBe(
        'Quota exceeded for instances: Requested 1, but already used 5 of 5 instances',
      );
    expect(await serverCount(p.projectId)).toBe(5);
    const audited = await api.store.db
      .selectFrom('audit_events')
      .select(['reason'])
      .where('action', '=', 'compute:servers:create')
      .where('project_id', '=', p.projectId)
      .where('status', '=', 403)
      .execute();
    expect(audited).toHaveLength(15);
    expect(audited[0]?.reason).toContain('Quota exceeded for instances');

    // Usage in the detail view and the absolute limits.
    await api.platform.compute.servers.settled();
    const detail = await api.call('GET', `${C}/os-quota-sets/${p.projectId}/detail`, p.token);
    expect(detail.status).toBe(200);
    expect(detail.json.quota_set.instances).toEqual({ limit: 5, in_use: 5, reserved: 0 });
    expect(detail.json.quota_set.ram).toEqual({ limit: 51200, in_use: 5 * 128, reserved: 0 });
    const limits = await api.call('GET', `${C}/limits`, p.token);
    expect(limits.json.limits.absolute).toMatchObject({
      maxTotalInstances: 5,
      totalInstancesUsed: 5,
      totalCoresUsed: 5,
      totalRAMUsed: 640,
    });

    // A limit below what is in use is refused unless forced, as Nova does.
    const below = await api.call('PUT', `${C}/os-quota-sets/${p.projectId}`, admin, {
      quota_set: { instances: 3 },
    });
    expect(below.status).toBe(400);
    expect(below.json.badRequest.message).toContain('must be greater than or equal to already used');
    const forced = await api.call('PUT', `${C}/os-quota-sets/${p.projectId}`, admin, {
      quota_set: { instances: 3, force: true },
    });
    expect(forced.status).toBe(200);
    // Back to the defaults: room again.
    expect((await api.call('DELETE', `${C}/os-quota-sets/${p.projectId}`, admin)).status).toBe(202);
    expect((await boot(p.token, flavorId, imageId)).status).toBe(202);
  });

  it('counts cores and RAM from the flavor; -1 is unlimited', async () => {
    const p = await project();
    await api.call('PUT', `${C}/os-quota-sets/${p.projectId}`, admin, {
      quota_set: { instances: -1, ram: 600, cores: -1 },
    });
    const { flavorId, imageId } = await api.bootable(p.token, `ram${seq}`, 256);
    expect((await boot(p.token, flavorId, imageId)).status).toBe(202);
    expect((await boot(p.token, flavorId, imageId)).status).toBe(202);
    const third = await boot(p.token, flavorId, imageId);
    expect(third.status).toBe(403);
    expect(third.json.forbidden.message).toBe(
      'Quota exceeded for ram: Requested 256, but already used 512 of 600 ram',
    );
    await api.call('PUT', `${C}/os-quota-sets/${p.projectId}`, admin, { quota_set: { ram: -1, cores: 2 } });
    const fourth = await boot(p.token, flavorId, imageId);
    expect(fourth.status).toBe(403);
    expect(fourth.json.forbidden.message).toBe(
      'Quota exceeded for cores: Requested 1, but already used 2 of 2 cores',
    );
    expect(await serverCount(p.projectId)).toBe(2);
  });

  it('narrows a user within a project (Nova per-user quotas)', async () => {
    const p = await project();
    const r = await api.call('PUT', `${C}/os-quota-sets/${p.projectId}?user_id=${p.userId}`, admin, {
      quota_set: { instances: 1 },
    });
    expect(r.status).toBe(200);
    expect(r.json.quota_set.instances).toBe(1);
    expect((await api.call('GET', `${C}/os-quota-sets/${p.projectId}`, admin)).json.quota_set.instances).toBe(
      10,
    );
    const { flavorId, imageId } = await api.bootable(p.token, `user${seq}`, 128);
    expect((await boot(p.token, flavorId, imageId)).status).toBe(202);
    const second = await boot(p.token, flavorId, imageId);
    expect(second.status).toBe(403);
    expect(second.json.forbidden.message).toContain('Quota exceeded for instances');
    const bad = await api.call('PUT', `${C}/os-quota-sets/${p.projectId}?user_id=${p.userId}`, admin, {
      quota_set: { security_groups: 1 },
    });
    expect(bad.status).toBe(400);
  });

  it('limits volumes and gigabytes, on create and extend (Cinder 413)', async () => {
    const p = await project();
    const bare = await api.call('PUT', `${V}/${p.projectId}/os-quota-sets/${p.projectId}`, admin, {
      quota_set: { gigabytes: 3, volumes: 2 },
    });
    expect(bare.status).toBe(200);
    expect(bare.json.quota_set).toMatchObject({ gigabytes: 3, volumes: 2 });
    const a = await api.call('POST', `${V}/volumes`, p.token, { volume: { size: 2 } });
    expect(a.status).toBe(202);
    const b = await api.call('POST', `${V}/volumes`, p.token, { volume: { size: 2 } });
    expect(b.status).toBe(413);
    expect(b.json.overLimit.message).toBe(
      'VolumeSizeExceedsAvailableQuota: Requested volume or snapshot exceeds allowed gigabytes quota. Requested 2G, quota is 3G and 2G has been consumed.',
    );
    await api.platform.volume.volumes.settled();
    const ext = await api.call('POST', `${V}/volumes/${a.json.volume.id}/action`, p.token, {
      'os-extend': { new_size: 4 },
    });
    expect(ext.status).toBe(413);
    expect((await api.call('GET', `${V}/volumes/${a.json.volume.id}`, p.token)).json.volume).toMatchObject({
      size: 2,
      status: 'available',
    });
    expect((await api.call('POST', `${V}/volumes`, p.token, { volume: { size: 1 } })).status).toBe(202);
    const third = await api.call('POST', `${V}/volumes`, p.token, { volume: { size: 1 } });
    expect(third.status).toBe(413);
    expect(third.json.overLimit.message).toBe(
      "VolumeLimitExceeded: Maximum number of volumes allowed (2) exceeded for quota 'volumes'.",
    );
    const usage = await api.call(
      'GET',
      `${V}/${p.projectId}/os-quota-sets/${p.projectId}?usage=True`,
      p.token,
    );
    expect(usage.json.quota_set.gigabytes).toMatchObject({ limit: 3, in_use: 3 });
    const limits = await api.call('GET', `${V}/limits`, p.token);
    expect(limits.json.limits.absolute).toMatchObject({
      maxTotalVolumes: 2,
      totalVolumesUsed: 2,
      maxTotalVolumeGigabytes: 3,
      totalGigabytesUsed: 3,
    });
    await api.platform.volume.volumes.settled();
  });

  it('limits security groups and their rules (Neutron 409)', async () => {
    const p = await project();
    // Listing makes the project's default group (2 rules).
    await api.call('GET', `${N}/security-groups`, p.token);
    const before = await api.call('GET', `${N}/quotas/${p.projectId}/details`, p.token);
    expect(before.status).toBe(200);
    expect(before.json.quota.security_group).toEqual({ limit: 10, used: 1, reserved: 0 });
    expect(before.json.quota.security_group_rule.used).toBe(2);
    const set = await api.call('PUT', `${N}/quotas/${p.projectId}`, admin, {
      quota: { security_group: 2, security_group_rule: 5 },
    });
    expect(set.status).toBe(200);
    expect(set.json.quota).toMatchObject({ security_group: 2, security_group_rule: 5 });
    const g = await api.call('POST', `${N}/security-groups`, p.token, { security_group: { name: 'web' } });
    expect(g.status).toBe(201);
    const rule = (port: number) =>
      api.call('POST', `${N}/security-group-rules`, p.token, {
        security_group_rule: {
          security_group_id: g.json.security_group.id,
          direction: 'ingress',
          protocol: 'tcp',
          port_range_min: port,
          port_range_max: port,
        },
      });
    expect((await rule(22)).status).toBe(201);
    const over = await rule(80);
    expect(over.status).toBe(409);
    expect(over.json.NeutronError.message).toBe("Quota exceeded for resources: ['security_group_rule'].");
    const g2 = await api.call('POST', `${N}/security-groups`, p.token, { security_group: { name: 'db' } });
    expect(g2.status).toBe(409);
    expect(g2.json.NeutronError.message).toBe("Quota exceeded for resources: ['security_group'].");
    const groups = await api.call('GET', `${N}/security-groups`, p.token);
    expect(groups.json.security_groups.map((x: { name: string }) => x.name).sort()).toEqual([
      'default',
      'web',
    ]);
    const limits = await api.call('GET', `${C}/limits`, p.token);
    expect(limits.json.limits.absolute).toMatchObject({ maxSecurityGroups: 2, totalSecurityGroupsUsed: 2 });
    // Reset: Neutron's resources only.
    expect((await api.call('DELETE', `${N}/quotas/${p.projectId}`, admin)).status).toBe(204);
    expect((await api.call('GET', `${N}/quotas/${p.projectId}`, p.token)).json.quota.security_group).toBe(10);
  });
});
