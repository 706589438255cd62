import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestApi, type TestApi } from '../helpers/api.js';
import { dialects } from '../helpers/store.js';

/** VM metadata and change tracking (guide 14, docs/metadata.md), through the Nova API. */
describe.each(dialects())('server metadata and history on %s', (dialect) => {
  let api: TestApi;
  let admin: string;
  let alice: { token: string; userId: string; projectId: string };
  let fx: { flavorId: string; imageId: string };
  const C = '/compute/v2.1';
  let seq = 0;
  const boot = (metadata: Record<string, string>, token = alice.token) =>
    api.call('POST', `${C}/servers`, token, {
      server: {
        name: `md-${++seq}`,
        imageRef: fx.imageId,
        flavorRef: fx.flavorId,
        networks: 'none',
        metadata,
      },
    });
  const count = async () =>
    (
      await api.store.db
        .selectFrom('servers')
        .select('id')
        .where('project_id', '=', alice.projectId)
        .execute()
    ).length;
  const meta = async (id: string) =>
    (await api.call('GET', `${C}/servers/${id}/metadata`, alice.token)).json.metadata;
  const history = (id: string, token = alice.token) =>
    api.call('GET', `/bulwark/v1/servers/${id}/history`, token);

  beforeAll(async () => {
    api = await startTestApi(dialect);
    admin = await api.login('admin', api.adminPassword, 'admin');
    alice = await api.persona('md-a', 'md-alice', 'member');
    fx = await api.bootable(alice.token, 'md');
    await api.platform.quotas.set(alice.projectId, { instances: -1, cores: -1, ram: -1 });
  });
  afterAll(async () => api?.close());

  it('records created_by and created_at itself; a caller cannot give them (400, nothing created)', async () => {
    const r = await boot({ purpose: 'web', cost_center: 'Engineering' });
    expect(r.status).toBe(202);
    const md = await meta(r.json.server.id);
    expect(md).toMatchObject({ purpose: 'web', cost_center: 'Engineering', created_by: 'md-alice' });
    expect(Date.parse(md.created_at)).toBeGreaterThan(Date.now() - 60_000);
    expect(md.approved_by).toBeUndefined();
    const before = await count();
    for (const key of ['created_by', 'created_at', 'approved_by']) {
      const bad = await boot({ [key]: 'someone' });
      expect(bad.status).toBe(400);
      expect(bad.json.badRequest.message).toMatch(new RegExp(`${key} is set by the platform`));
    }
    expect(await count()).toBe(before);
  });

  it('checks the known keys: environment, data_classification, ticket, compliance_level', async () => {
    const before = await count();
    const cases: [Record<string, string>, RegExp][] = [
      [{ environment: 'prod' }, /environment="prod" is not valid: it must be one of production, staging/],
      [{ data_classification: 'secret' }, /must be one of public, internal, confidential, restricted/],
      [{ ticket: ' JIRA-1' }, /ticket=" JIRA-1" is not valid/],
      [{ compliance_level: 'PCI DSS' }, /compliance_level/],
      [{ purpose: '' }, /purpose/],
    ];
    for (const [md, re] of cases) {
      const r = await boot(md);
      expect(r.status).toBe(400);
      expect(r.json.badRequest.message).toMatch(re);
    }
    expect(await count()).toBe(before);
    const ok = await boot({
      environment: 'staging',
      data_classification: 'confidential',
      compliance_level: 'pci-dss',
      ticket: 'JIRA-1234',
      anything_else: 'free-form',
    });
    expect(ok.status).toBe(202);
  });

  it('refuses a production server without a ticket (400 naming the rule) and takes one with a ticket', async () => {
    const before = await count();
    const r = await boot({ environment: 'production' });
    expect(r.status).toBe(400);
    expect(r.json.badRequest.message).toMatch(
      /Servers with environment=production require ticket \(metadata rule production-needs-ticket\)/,
    );
    expect(await count()).toBe(before);
    const denied = await api.store.db
      .selectFrom('audit_events')
      .selectAll()
      .where('action', '=', 'compute:servers:create')
      .orderBy('seq', 'desc')
      .executeTakeFirst();
    expect(denied).toMatchObject({ outcome: 'failure', status: 400 });
    expect(denied?.reason).toMatch(/require ticket/);
    expect((await boot({ environment: 'production', ticket: 'CHG-42' })).status).toBe(202);
  });

  it('keeps the rules and platform keys on metadata updates, and records each change with its diff', async () => {
    const id = (await boot({ environment: 'production', ticket: 'CHG-1' })).json.server.id as string;
    const url = `${C}/servers/${id}/metadata`;
    // Removing the ticket of a production server, or replacing the metadata without it: refused, unchanged.
    expect((await api.call('DELETE', `${url}/ticket`, alice.token)).status).toBe(400);
    expect(
      (await api.call('PUT', url, alice.token, { metadata: { environment: 'production' } })).status,
    ).toBe(400);
    expect((await api.call('DELETE', `${url}/created_by`, alice.token)).status).toBe(400);
    expect((await api.call('POST', url, alice.token, { metadata: { created_by: 'mallory' } })).status).toBe(
      400,
    );
    expect(await meta(id)).toMatchObject({ ticket: 'CHG-1', created_by: 'md-alice' });
    // Changes that keep the rules go through; a full replace keeps the platform's keys.
    const bob = await api.persona('md-a', 'md-bob', 'member');
    expect(
      (await api.call('POST', url, bob.token, { metadata: { ticket: 'CHG-2', purpose: 'db' } })).status,
    ).toBe(200);
    const put = await api.call('PUT', url, alice.token, { metadata: { environment: 'staging' } });
    expect(put.json.metadata).toMatchObject({ environment: 'staging', created_by: 'md-alice' });
    expect(put.json.metadata.ticket).toBeUndefined();
    expect(
      (await api.call('POST', `${C}/servers/${id}/action`, alice.token, { 'os-stop': null })).status,
    ).toBe(202);
    await api.platform.compute.servers.settled();

    const h = await history(id);
    expect(h.status).toBe(200);
    const changes = h.json.changes as { change: string; user_name: string; diff: Record<string, unknown> }[];
    expect(changes.map((c) => c.change)).toEqual(['create', 'metadata', 'metadata', 'action:stop']);
    expect(changes[0]).toMatchObject({
      user_name: 'md-alice',
      diff: {
        'metadata.ticket': { from: null, to: 'CHG-1' },
        'metadata.environment': { from: null, to: 'production' },
      },
    });
    expect(changes[1]).toMatchObject({
      user_name: 'md-bob',
      diff: {
        'metadata.ticket': { from: 'CHG-1', to: 'CHG-2' },
        'metadata.purpose': { from: null, to: 'db' },
      },
    });
    expect(changes[2]?.diff).toEqual({
      'metadata.environment': { from: 'production', to: 'staging' },
      'metadata.ticket': { from: 'CHG-2', to: null },
      'metadata.purpose': { from: 'db', to: null },
    });
    expect(changes[3]?.diff).toEqual({ vm_state: { from: 'active', to: 'stopped' } });
    // Another project sees nothing (404); the admin sees it; it outlives the server.
    const other = await api.persona('md-b', 'md-eve', 'member');
    expect((await history(id, other.token)).status).toBe(404);
    expect((await api.call('DELETE', `${C}/servers/${id}`, alice.token)).status).toBe(204);
    await api.platform.compute.servers.settled();
    const after = await history(id, admin);
    expect(after.json.changes.at(-1)).toMatchObject({ change: 'delete', user_name: 'md-alice' });
  });

  it('holds a production server without a ticket for approval when that trigger is on; approved_by is recorded', async () => {
    const url = '/bulwark/v1/approval-triggers/production-without-ticket';
    expect((await api.call('PUT', url, admin, { trigger: { enabled: true } })).status).toBe(200);
    try {
      const r = await boot({ environment: 'production' });
      expect(r.status).toBe(202);
      expect(r.json.approval.summary).toMatch(/require ticket/);
      const done = await api.call('POST', `/bulwark/v1/approvals/${r.json.approval.id}/approve`, admin, {
        reason: 'emergency change, ticket to follow',
      });
      expect(done.json.approval.status).toBe('executed');
      const id = done.json.approval.result.server.id as string;
      expect(await meta(id)).toMatchObject({
        environment: 'production',
        created_by: 'md-alice',
        approved_by: 'admin',
      });
      const created = (await history(id)).json.changes[0];
      expect(created.diff.approval).toEqual({ from: null, to: r.json.approval.id });
    } finally {
      await api.call('PUT', url, admin, { trigger: { enabled: false } });
    }
  });

  it('lets the cloud admin add and remove rules; members cannot', async () => {
    const rules = '/bulwark/v1/metadata-rules';
    const rule = {
      rule: {
        id: 'pci-needs-owner',
        when: { key: 'compliance_level', value: 'pci-dss' },
        requires: ['cost_center', 'purpose'],
      },
    };
    expect((await api.call('POST', rules, alice.token, rule)).status).toBe(403);
    expect((await api.call('POST', rules, admin, rule)).status).toBe(201);
    expect((await api.call('POST', rules, admin, rule)).status).toBe(409);
    const bad = { rule: { ...rule.rule, id: 'x', requires: ['created_by'] } };
    expect((await api.call('POST', rules, admin, bad)).status).toBe(400);
    const listed = await api.call('GET', rules, alice.token);
    expect(listed.json.rules.map((r: { id: string }) => r.id)).toEqual([
      'pci-needs-owner',
      'production-needs-ticket',
    ]);
    const r = await boot({ compliance_level: 'pci-dss', purpose: 'card data' });
    expect(r.status).toBe(400);
    expect(r.json.badRequest.message).toMatch(/compliance_level=pci-dss require cost_center/);
    expect((await api.call('DELETE', `${rules}/pci-needs-owner`, admin)).status).toBe(204);
    expect((await boot({ compliance_level: 'pci-dss', purpose: 'card data' })).status).toBe(202);
  });
});
