import { appendFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PASSWORD, startTestApi, type TestApi } from '../helpers/api.js';
import { dialects } from '../helpers/store.js';

/**
 * Templates (guide 18): only admins make them, the image's sha256 is pinned and
 * the image can no longer change, every version waits for a second admin
 * (never its creator), and a boot from a file that no longer matches is refused.
 */
describe.each(dialects())('template API on %s', (dialect) => {
  let api: TestApi;
  let admin: string;
  let admin2: string;
  let member: { token: string; projectId: string; userId: string };
  let flavorId: string;
  let imageId: string;
  let templateId: string;
  let approvalId: string;
  const B = '/bulwark/v1';
  const C = '/compute/v2.1';
  const createServer = (token: string, image: string, name = 'from-template') =>
    api.call('POST', `${C}/servers`, token, {
      server: { name, imageRef: image, flavorRef: flavorId, networks: 'none' },
    });
  const imageFile = (id: string) => join(api.db.dir, 'images', id);

  beforeAll(async () => {
    api = await startTestApi(dialect);
    admin = await api.login('admin', api.adminPassword, 'admin');
    const adminProject = (await api.identity.listProjects({ name: 'admin' }))[0]!;
    const u = await api.identity.createUser({
      name: 'second-admin',
      domainId: 'default',
      password: PASSWORD,
    });
    await api.identity.grant(adminProject.id, u.id, (await api.identity.listRoles({ name: 'admin' }))[0]!.id);
    admin2 = await api.login('second-admin', PASSWORD, 'admin');
    member = await api.persona('tpl-a', 'tpl-member', 'member');
    ({ flavorId, imageId } = await api.bootable(admin, 'golden', 128));
  });
  afterAll(async () => api?.close());

  it('only admins make a template; a member is refused (403, audited) and nothing is made', async () => {
    const r = await api.call('POST', `${B}/templates`, member.token, {
      template: { name: 'debian', image_id: imageId },
    });
    expect(r.status).toBe(403);
    expect((await api.call('GET', `${B}/templates`, member.token)).json.templates).toEqual([]);
    const denied = await api.store.db
      .selectFrom('audit_events')
      .selectAll()
      .where('action', '=', 'template:create')
      .execute();
    expect(denied.map((a) => a.outcome)).toEqual(['denied']);
  });

  it('v1: the sha256 is pinned and the version waits for a second admin', async () => {
    const r = await api.call('POST', `${B}/templates`, admin, {
      template: { name: 'debian', image_id: imageId, description: 'golden image' },
    });
    expect(r.status).toBe(202);
    const image = (await api.call('GET', `/image/v2/images/${imageId}`, admin)).json;
    expect(r.json.template).toMatchObject({
      name: 'debian',
      version: 1,
      status: 'pending',
      sha256: image.os_hash_value,
    });
    templateId = r.json.template.id;
    approvalId = r.json.approval.id;
    expect(r.json.approval).toMatchObject({ kind: 'template-version', status: 'pending' });
    // The same image again: refused.
    expect(
      (await api.call('POST', `${B}/templates`, admin, { template: { name: 'other', image_id: imageId } }))
        .status,
    ).toBe(409);
    // Not usable before approval, not even by an admin; members do not even see the image.
    const early = await createServer(admin, imageId);
    expect(early.status).toBe(409);
    expect(JSON.stringify(early.json)).toMatch(/waiting for a second administrator/);
    expect((await createServer(member.token, imageId)).status).toBe(400);
  });

  it('the creator cannot approve their own version; a second admin does', async () => {
    const self = await api.call('POST', `${B}/approvals/${approvalId}/approve`, admin, { reason: 'mine' });
    expect(self.status).toBe(403);
    expect((await api.call('GET', `${B}/templates/${templateId}`, member.token)).json.template.status).toBe(
      'pending',
    );
    const ok = await api.call('POST', `${B}/approvals/${approvalId}/approve`, admin2, { reason: 'reviewed' });
    expect(ok.status).toBe(200);
    expect(ok.json.approval.status).toBe('executed');
    const t = (await api.call('GET', `${B}/templates/${templateId}`, member.token)).json.template;
    expect(t).toMatchObject({ status: 'approved', approved_by: 'second-admin' });
  });

  it('a member creates a server from the approved template (the normal server create)', async () => {
    const r = await createServer(member.token, imageId, 'web-1');
    expect(r.status).toBe(202);
    await api.platform.compute.servers.settled();
    const s = (await api.call('GET', `${C}/servers/${r.json.server.id}`, member.token)).json.server;
    expect(s.status).toBe('ACTIVE');
  });

  it('the template image is immutable: no property change, re-upload or delete, even by an admin', async () => {
    const patch = await api.app.inject({
      method: 'PATCH',
      url: `/image/v2/images/${imageId}`,
      headers: { 'x-auth-token': admin, 'content-type': 'application/openstack-images-v2.1-json-patch' },
      payload: JSON.stringify([{ op: 'add', path: '/os_distro', value: 'evil' }]),
    });
    expect(patch.statusCode).toBe(403);
    expect(patch.body).toMatch(/templates are immutable/);
    expect((await api.call('DELETE', `/image/v2/images/${imageId}`, admin)).status).toBe(403);
    const upload = await api.app.inject({
      method: 'PUT',
      url: `/image/v2/images/${imageId}/file`,
      headers: { 'x-auth-token': admin, 'content-type': 'application/octet-stream' },
      payload: Buffer.alloc(1024),
    });
    expect(upload.statusCode).toBeGreaterThanOrEqual(400);
  });

  it('a new version is v2 and waits for approval; v1 stays usable', async () => {
    const next = await api.bootable(admin, 'golden-2', 128);
    const r = await api.call('POST', `${B}/templates`, admin, {
      template: { name: 'debian', image_id: next.imageId },
    });
    expect(r.json.template).toMatchObject({ version: 2, status: 'pending' });
    expect((await createServer(admin, next.imageId)).status).toBe(409);
    expect((await createServer(member.token, imageId, 'web-2')).status).toBe(202);
    await api.platform.compute.servers.settled();
    // Rejected by the second admin: shown as rejected, never usable.
    const no = await api.call('POST', `${B}/approvals/${r.json.approval.id}/reject`, admin2, {
      reason: 'not hardened',
    });
    expect(no.status).toBe(200);
    expect(
      (await api.call('GET', `${B}/templates/${r.json.template.id}`, member.token)).json.template.status,
    ).toBe('rejected');
    const refused = await createServer(admin, next.imageId);
    expect(refused.status).toBe(409);
    expect(JSON.stringify(refused.json)).toMatch(/was rejected/);
  });

  it('a file that no longer matches its pinned sha256 is refused at create and at every boot', async () => {
    const [web1] = (await api.call('GET', `${C}/servers?name=web-1`, member.token)).json.servers;
    await api.call('POST', `${C}/servers/${web1.id}/action`, member.token, { 'os-stop': null });
    await api.platform.compute.servers.settled();
    appendFileSync(imageFile(imageId), 'backdoor');
    const r = await createServer(member.token, imageId, 'web-3');
    expect(r.status).toBe(409);
    expect(JSON.stringify(r.json)).toMatch(/no longer matches its pinned sha256/);
    await api.call('POST', `${C}/servers/${web1.id}/action`, member.token, { 'os-start': null });
    await api.platform.compute.servers.settled();
    const s = (await api.call('GET', `${C}/servers/${web1.id}`, member.token)).json.server;
    expect(s.status).not.toBe('ACTIVE');
    expect(api.driver.guests.get(web1.id)?.state).not.toBe('running');
  });
});
