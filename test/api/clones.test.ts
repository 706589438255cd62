import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PASSWORD, startTestApi, type TestApi } from '../helpers/api.js';
import { dialects } from '../helpers/store.js';

/**
 * Clones (docs/clones.md) through the API on the fake hypervisor: a clone of
 * an existing server is always held for a second admin (never the requester),
 * other projects' servers are 404, the source must be stopped, and the clone
 * is a new server with its own disk key; the real disk copy and the guest's
 * fresh identity are in test/e2e/clones.test.ts.
 */
describe.each(dialects())('clone API on %s', (dialect) => {
  let api: TestApi;
  let admin2: string;
  let member: { token: string; projectId: string; userId: string };
  let other: { token: string; projectId: string; userId: string };
  let sourceId: string;
  const B = '/bulwark/v1';
  const C = '/compute/v2.1';
  const clone = (token: string, id: string, name = 'copy') =>
    api.call('POST', `${B}/servers/${id}/clone`, token, { clone: { name } });
  const approve = (token: string, id: string) =>
    api.call('POST', `${B}/approvals/${id}/approve`, token, { reason: 'reviewed' });
  const serverNames = async () =>
    (await api.call('GET', `${C}/servers`, member.token)).json.servers.map((s: { name: string }) => s.name);

  beforeAll(async () => {
    api = await startTestApi(dialect);
    const adminProject = (await api.identity.listProjects({ name: 'admin' }))[0]!;
    const u = await api.identity.createUser({
      name: 'second-admin',
      domainId: 'default',
      password: PASSWORD,
    });
    await api.identity.grant(adminProject.id, u.id, (await api.identity.listRoles({ name: 'admin' }))[0]!.id);
    admin2 = await api.login('second-admin', PASSWORD, 'admin');
    member = await api.persona('clone-a', 'clone-member', 'member');
    other = await api.persona('clone-b', 'clone-other', 'member');
    const { flavorId, imageId } = await api.bootable(member.token, 'src', 128);
    const r = await api.call('POST', `${C}/servers`, member.token, {
      server: { name: 'source', imageRef: imageId, flavorRef: flavorId, networks: 'none' },
    });
    sourceId = r.json.server.id;
    await api.platform.compute.servers.settled();
  });
  afterAll(async () => api?.close());

  it("another project's member gets 404 and nothing is held", async () => {
    expect((await clone(other.token, sourceId)).status).toBe(404);
    expect((await api.call('GET', `${B}/approvals`, other.token)).json.approvals).toEqual([]);
  });

  it('bad input is 400 and changes nothing', async () => {
    const r = await api.call('POST', `${B}/servers/${sourceId}/clone`, member.token, {
      clone: { name: 'x', key: 'copied' },
    });
    expect(r.status).toBe(400);
    expect((await api.call('GET', `${B}/approvals`, member.token)).json.approvals).toEqual([]);
  });

  it('a member asks: 202 pending; non-admins cannot approve; a running source fails the approval', async () => {
    const r = await clone(member.token, sourceId, 'too-early');
    expect(r.status).toBe(202);
    expect(r.json.approval).toMatchObject({ kind: 'server-clone', status: 'pending' });
    expect(await serverNames()).toEqual(['source']);
    // The member (the requester, and no admin) cannot approve it.
    expect((await approve(member.token, r.json.approval.id)).status).toBe(403);
    // The source still runs: the approved request fails with the reason and makes nothing.
    const ok = await approve(admin2, r.json.approval.id);
    expect(ok.json.approval.status).toBe('failed');
    expect(JSON.stringify(ok.json.approval)).toMatch(/stop it first/);
    expect(await serverNames()).toEqual(['source']);
  });

  it('an admin cannot approve a clone they asked for (two-person rule)', async () => {
    const r = await clone(admin2, sourceId, 'mine');
    expect(r.status).toBe(202);
    expect((await approve(admin2, r.json.approval.id)).status).toBe(403);
  });

  it('once the source is stopped, a second admin approves: a new server from a copy of its disk, its own key', async () => {
    await api.call('POST', `${C}/servers/${sourceId}/action`, member.token, { 'os-stop': null });
    await api.platform.compute.servers.settled();
    const r = await clone(member.token, sourceId, 'copy');
    const ok = await approve(admin2, r.json.approval.id);
    expect(ok.json.approval.status, JSON.stringify(ok.json)).toBe('executed');
    await api.platform.compute.servers.settled();
    const id = ok.json.approval.result.server.id as string;
    const c = (await api.call('GET', `${C}/servers/${id}`, member.token)).json.server;
    expect(c).toMatchObject({ name: 'copy', status: 'ACTIVE' });
    expect(c.metadata).toMatchObject({ cloned_from: sourceId, approved_by: 'second-admin' });
    expect(api.driver.copiedDisks.get(id)).toBe(sourceId);
    const rows = await api.store.db
      .selectFrom('servers')
      .select(['id', 'root_key_secret_id', 'tpm_secret_id'])
      .where('id', 'in', [id, sourceId])
      .execute();
    const keyOf = (sid: string) => rows.find((x) => x.id === sid)!.root_key_secret_id;
    if (keyOf(sourceId)) expect(keyOf(id)).not.toBe(keyOf(sourceId));
    // The guest spec has its own instance-id seed.
    expect(api.driver.guests.get(id)!.spec).toMatchObject({ id, cloudInit: true });
    const audit = await api.store.db
      .selectFrom('audit_events')
      .select(['action', 'outcome', 'status', 'reason'])
      .where('action', '=', 'server:clone')
      .execute();
    // Every request is audited: the refusals with their reason, the held requests as 202.
    expect(audit.map((a) => [a.outcome, a.status])).toEqual([
      ['failure', 404],
      ['failure', 400],
      ['success', 202],
      ['success', 202],
      ['success', 202],
    ]);
  });
});
