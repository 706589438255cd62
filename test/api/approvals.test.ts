import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestApi, type TestApi } from '../helpers/api.js';
import { dialects } from '../helpers/store.js';

/** Approvals, the two-person rule (docs/approvals.md), through the API, with the flavor-size trigger. */
describe.each(dialects())('approvals on %s', (dialect) => {
  let api: TestApi;
  let admin: string;
  let admin2: { token: string; userId: string };
  let alice: { token: string; userId: string; projectId: string };
  let big: string;
  let image: string;
  const C = '/compute/v2.1';
  const A = '/bulwark/v1/approvals';
  let seq = 0;
  const boot = (token: string, flavorRef = big) =>
    api.call('POST', `${C}/servers`, token, {
      server: { name: `big-${++seq}`, imageRef: image, flavorRef, networks: 'none' },
    });
  const servers = async (projectId: string) =>
    api.store.db
      .selectFrom('servers')
      .select(['id', 'user_id', 'metadata'])
      .where('project_id', '=', projectId)
      .where('deleted_at', 'is', null)
      .execute();
  const audit = (action: string) =>
    api.store.db.selectFrom('audit_events').selectAll().where('action', '=', action).orderBy('seq').execute();

  beforeAll(async () => {
    api = await startTestApi(dialect);
    admin = await api.login('admin', api.adminPassword, 'admin');
    admin2 = await api.persona('admin', 'second-admin', 'admin');
    alice = await api.persona('appr-a', 'appr-alice', 'member');
    const fx = await api.bootable(alice.token, 'appr');
    image = fx.imageId;
    big = (await api.platform.compute.flavors.create({ name: 'huge', vcpus: 32, ram: 2048, disk: 1 })).id;
    await api.platform.quotas.set(alice.projectId, { instances: -1, cores: -1, ram: -1 });
  });
  afterAll(async () => api?.close());

  it('holds a server on a flavor above the trigger: 202 naming the approval, nothing created, audited', async () => {
    const r = await boot(alice.token);
    expect(r.status).toBe(202);
    expect(r.json.approval).toMatchObject({
      kind: 'server-create',
      status: 'pending',
      requester_id: alice.userId,
      project_id: alice.projectId,
    });
    expect(r.json.approval.summary).toMatch(/flavor huge has 32 vCPUs, above 16/);
    expect(r.json.message).toMatch(/bulwark approval approve/);
    expect(await servers(alice.projectId)).toHaveLength(0);
    const submitted = await audit('approval:submit');
    expect(submitted.at(-1)).toMatchObject({ target_id: r.json.approval.id, user_id: alice.userId });
    // The requester sees it; a reader of another project does not (404), nor in the list.
    expect((await api.call('GET', `${A}/${r.json.approval.id}`, alice.token)).json.approval.status).toBe(
      'pending',
    );
    const other = await api.persona('appr-b', 'appr-bob', 'member');
    expect((await api.call('GET', `${A}/${r.json.approval.id}`, other.token)).status).toBe(404);
    expect((await api.call('GET', A, other.token)).json.approvals).toEqual([]);
    expect((await api.call('GET', A, alice.token)).json.approvals.map((a: { id: string }) => a.id)).toContain(
      r.json.approval.id,
    );
  });

  it('refuses a member (403) and the requester themself, even an admin (403, audited), and bad input (400)', async () => {
    const held = (await boot(alice.token)).json.approval;
    const m = await api.call('POST', `${A}/${held.id}/approve`, alice.token, { reason: 'mine' });
    expect(m.status).toBe(403);
    // An admin's own request is held too, and only another admin can decide it.
    const adminProject = api.authOf(admin2.token).projectId as string;
    await api.platform.quotas.set(adminProject, { instances: -1, cores: -1, ram: -1 });
    const own = await boot(admin2.token);
    expect(own.status).toBe(202);
    const self = await api.call('POST', `${A}/${own.json.approval.id}/approve`, admin2.token, {
      reason: 'I need it',
    });
    expect(self.status).toBe(403);
    expect(self.json.error.message).toMatch(/two-person rule/);
    const denied = (await audit('approval:approve')).at(-1);
    expect(denied).toMatchObject({ outcome: 'denied', status: 403, user_id: admin2.userId });
    expect(denied?.target_id).toBe(own.json.approval.id);
    expect(
      (await api.call('POST', `${A}/${own.json.approval.id}/reject`, admin2.token, { reason: 'x' })).status,
    ).toBe(403);
    for (const body of [{}, { reason: '' }, { reason: '   ' }, { reason: 'ok', extra: 1 }]) {
      expect((await api.call('POST', `${A}/${held.id}/approve`, admin, body)).status).toBe(400);
    }
    for (const id of [held.id, own.json.approval.id])
      expect((await api.call('GET', `${A}/${id}`, admin)).json.approval.status).toBe('pending');
    // The other admin may decide the admin's request.
    const ok = await api.call('POST', `${A}/${own.json.approval.id}/approve`, admin, {
      reason: 'capacity planned',
    });
    expect(ok.json.approval.status).toBe('executed');
  });

  it('runs an approved request as the requester with approved_by recorded; a second decision is 409', async () => {
    const held = (await boot(alice.token)).json.approval;
    const before = (await servers(alice.projectId)).length;
    const r = await api.call('POST', `${A}/${held.id}/approve`, admin2.token, {
      reason: 'ticket OPS-7 approved',
    });
    expect(r.status).toBe(200);
    expect(r.json.approval).toMatchObject({
      status: 'executed',
      decided_by: admin2.userId,
      decided_by_name: 'second-admin',
      decision_reason: 'ticket OPS-7 approved',
      error: null,
    });
    const id = r.json.approval.result.server.id as string;
    const rows = await servers(alice.projectId);
    expect(rows).toHaveLength(before + 1);
    expect(rows.find((s) => s.id === id)?.user_id).toBe(alice.userId);
    expect((await audit('approval:executed')).at(-1)).toMatchObject({
      target_id: held.id,
      user_id: alice.userId,
    });
    for (const [token, decision] of [
      [admin, 'approve'],
      [admin2.token, 'approve'],
      [admin, 'reject'],
    ] as const) {
      const again = await api.call('POST', `${A}/${held.id}/${decision}`, token, { reason: 'again' });
      expect(again.status).toBe(409);
      expect(again.json.error.message).toMatch(/already executed/);
    }
    expect(await servers(alice.projectId)).toHaveLength(before + 1);
  });

  it('lets exactly one of two admins approving at once win; one server is created', async () => {
    const held = (await boot(alice.token)).json.approval;
    const before = (await servers(alice.projectId)).length;
    const answers = await Promise.all([
      api.call('POST', `${A}/${held.id}/approve`, admin, { reason: 'a' }),
      api.call('POST', `${A}/${held.id}/approve`, admin2.token, { reason: 'b' }),
    ]);
    expect(answers.map((a) => a.status).sort()).toEqual([200, 409]);
    expect(await servers(alice.projectId)).toHaveLength(before + 1);
  });

  it('rejects with a reason: nothing runs, and it cannot be approved after', async () => {
    const held = (await boot(alice.token)).json.approval;
    const before = (await servers(alice.projectId)).length;
    const r = await api.call('POST', `${A}/${held.id}/reject`, admin, { reason: 'use a smaller flavor' });
    expect(r.json.approval).toMatchObject({ status: 'rejected', decision_reason: 'use a smaller flavor' });
    expect((await api.call('POST', `${A}/${held.id}/approve`, admin2.token, { reason: 'x' })).status).toBe(
      409,
    );
    expect(await servers(alice.projectId)).toHaveLength(before);
    const listed = await api.call('GET', `${A}?status=rejected`, alice.token);
    expect(listed.json.approvals.map((a: { id: string }) => a.id)).toContain(held.id);
  });

  it('fails, recorded, when the requester lost their role before approval', async () => {
    const carol = await api.persona('appr-a', 'appr-carol', 'member');
    const held = (await boot(carol.token)).json.approval;
    const role = (await api.identity.listRoles({ name: 'member' }))[0]!.id;
    await api.identity.revoke(alice.projectId, carol.userId, role, 'test');
    const r = await api.call('POST', `${A}/${held.id}/approve`, admin, { reason: 'fine' });
    expect(r.json.approval.status).toBe('failed');
    expect(r.json.approval.error).toMatch(/no longer holds a role/);
  });

  it('has configurable triggers: admins change them, members cannot, unknown ones are refused', async () => {
    const list = await api.call('GET', '/bulwark/v1/approval-triggers', alice.token);
    expect(list.json.triggers.map((t: { kind: string }) => t.kind)).toEqual(
      expect.arrayContaining([
        'flavor-size',
        'device-passthrough',
        'server-clone',
        'production-without-ticket',
      ]),
    );
    const url = '/bulwark/v1/approval-triggers/flavor-size';
    expect((await api.call('PUT', url, alice.token, { trigger: { enabled: false } })).status).toBe(403);
    expect((await api.call('PUT', url, admin, { trigger: { params: { disks: 3 } } })).status).toBe(400);
    expect((await api.call('PUT', url, admin, { trigger: { params: { vcpus: -1 } } })).status).toBe(400);
    expect(
      (await api.call('PUT', '/bulwark/v1/approval-triggers/nope', admin, { trigger: { enabled: true } }))
        .status,
    ).toBe(404);
    // Raising the threshold lets the flavor through; turning it off does too; lowering it holds a small one.
    const raised = await api.call('PUT', url, admin, { trigger: { params: { vcpus: 64 } } });
    expect(raised.json.trigger).toMatchObject({ enabled: true, params: { vcpus: 64, ram: 65536 } });
    expect((await boot(alice.token)).json.server?.id).toBeDefined();
    const small = (await api.platform.compute.flavors.create({ name: 'two', vcpus: 2, ram: 256, disk: 1 }))
      .id;
    await api.call('PUT', url, admin, { trigger: { params: { vcpus: 1 } } });
    expect((await boot(alice.token, small)).status).toBe(202);
    await api.call('PUT', url, admin, { trigger: { enabled: false } });
    expect((await boot(alice.token, small)).json.server?.id).toBeDefined();
    await api.call('PUT', url, admin, { trigger: { enabled: true, params: { vcpus: 16 } } });
  });
});
