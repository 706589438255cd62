import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { lastAuditEvent, startTestApi, type TestApi } from '../helpers/api.js';
import { dialects } from '../helpers/store.js';

/**
 * The guest agent through the API (docs/passthrough-and-agent.md): the filter,
 * grants and auditing, on the fake hypervisor's agents. The real channel to a
 * real QEMU is test/host/guest-agent.test.ts.
 */
describe.each(dialects())('guest agent API on %s', (dialect) => {
  let api: TestApi;
  let admin: string;
  let alice: { token: string; userId: string; projectId: string };
  let withAgent: string;
  let without: string;
  let other: string;
  const B = '/bulwark/v1/servers';
  const agent = (id: string, body: unknown, token = alice.token) =>
    api.call('POST', `${B}/${id}/guest-agent`, token, body);
  const lastAudit = (action: string) => lastAuditEvent(api, action);
  const inHour = () => new Date(Date.now() + 3600_000).toISOString();

  beforeAll(async () => {
    api = await startTestApi(dialect);
    admin = await api.login('admin', api.adminPassword, 'admin');
    alice = await api.persona('ga-a', 'ga-alice', 'member');
    const fx = await api.bootable(alice.token, 'ga');
    const { flavors, servers } = api.platform.compute;
    const agentFlavor = await flavors.create({ name: 'ga-agent', vcpus: 1, ram: 256, disk: 1 });
    await flavors.setExtraSpecs(agentFlavor.id, { 'hw:qemu_guest_agent': 'true' });
    const boot = async (flavorRef: string, name: string) =>
      (
        await api.call('POST', '/compute/v2.1/servers', alice.token, {
          server: { name, imageRef: fx.imageId, flavorRef, networks: 'none' },
        })
      ).json.server.id as string;
    withAgent = await boot(agentFlavor.id, 'ga-on');
    without = await boot(fx.flavorId, 'ga-off');
    other = await boot(agentFlavor.id, 'ga-other');
    await servers.settled();
  });
  afterAll(async () => api?.close());

  it('is off unless the flavor or image asks: no channel in QEMU, and the API says so (409)', async () => {
    expect(api.driver.guests.get(withAgent)?.spec.guestAgent).toBe(true);
    expect(api.driver.guests.get(without)?.spec.guestAgent).toBeUndefined();
    const r = await agent(without, { execute: 'guest-ping' });
    expect(r.status).toBe(409);
    expect(r.json.error.message).toMatch(/hw:qemu_guest_agent=true/);
  });

  it('lets read-only monitoring through, audited', async () => {
    const r = await agent(withAgent, { execute: 'guest-ping' });
    expect(r.status).toBe(200);
    expect(r.json.result).toEqual({ return: {} });
    expect((await agent(withAgent, { execute: 'guest-info' })).json.result.return.version).toBe('fake');
    expect(await lastAudit('compute:guest_agent:guest-info')).toMatchObject({
      outcome: 'success',
      user_id: alice.userId,
      target_id: withAgent,
    });
  });

  it('refuses guest-exec and guest-file-* by default (403, audited, nothing reaches the guest), and unknown commands', async () => {
    const sent = api.driver.agentRequests.length;
    const exec = await agent(withAgent, {
      execute: 'guest-exec',
      arguments: { path: '/bin/sh', arg: ['-c', 'id'] },
    });
    expect(exec.status).toBe(403);
    expect(exec.json.error.message).toMatch(
      /guest-exec runs code or touches files in the guest: an admin must grant/,
    );
    expect(await lastAudit('compute:guest_agent:guest-exec')).toMatchObject({
      outcome: 'denied',
      target_id: withAgent,
    });
    expect(
      (await agent(withAgent, { execute: 'guest-file-open', arguments: { path: '/etc/shadow' } })).status,
    ).toBe(403);
    const pw = await agent(withAgent, {
      execute: 'guest-set-user-password',
      arguments: { username: 'root' },
    });
    expect(pw.status).toBe(403);
    expect(pw.json.error.message).toMatch(/not allowed through the guest agent filter/);
    // Even the cloud admin goes through the filter: no grant, no exec.
    expect(
      (await agent(withAgent, { execute: 'guest-exec', arguments: { path: '/bin/true' } }, admin)).status,
    ).toBe(403);
    for (const bad of [
      { execute: 'guest-ping', id: 1 },
      { execute: 'ping' },
      { execute: 'guest-ping', arguments: [] },
    ])
      expect((await agent(withAgent, bad)).status).toBe(400);
    expect(api.driver.agentRequests.length).toBe(sent);
  });

  it('runs a granted command on that server only, until revoked or expired; only the cloud admin grants', async () => {
    const grants = `${B}/${withAgent}/guest-agent/grants`;
    const body = {
      grant: { commands: ['guest-exec', 'guest-exec-status'], expires_at: inHour(), reason: 'INC-9 triage' },
    };
    expect((await api.call('POST', grants, alice.token, body)).status).toBe(403);
    const past = { grant: { ...body.grant, expires_at: '2001-01-01T00:00:00Z' } };
    expect((await api.call('POST', grants, admin, past)).status).toBe(400);
    expect(
      (await api.call('POST', grants, admin, { grant: { ...body.grant, commands: ['guest-shutdown'] } }))
        .status,
    ).toBe(400);
    const g = await api.call('POST', grants, admin, body);
    expect(g.status).toBe(201);
    expect(g.json.grant).toMatchObject({
      granted_by_name: 'admin',
      commands: ['guest-exec', 'guest-exec-status'],
    });
    expect((await api.call('GET', grants, alice.token)).json.grants).toHaveLength(1);

    const exec = { execute: 'guest-exec', arguments: { path: '/bin/true', 'capture-output': true } };
    const ok = await agent(withAgent, exec);
    expect(ok.status).toBe(200);
    expect(api.driver.agentRequests.at(-1)).toBe(JSON.stringify(exec));
    expect((await lastAudit('compute:guest_agent:guest-exec'))?.reason).toMatch(
      /granted: .*granted by admin/,
    );
    // Not for another server, nor for another command.
    const elsewhere = await agent(other, exec);
    expect(elsewhere.status).toBe(403);
    expect(elsewhere.json.error.message).toMatch(new RegExp(`must grant guest-exec for server ${other}`));
    expect((await agent(withAgent, { execute: 'guest-file-open', arguments: { path: '/x' } })).status).toBe(
      403,
    );

    expect((await api.call('DELETE', `${grants}/${g.json.grant.id}`, alice.token)).status).toBe(403);
    expect((await api.call('DELETE', `${grants}/${g.json.grant.id}`, admin)).status).toBe(204);
    expect((await api.call('DELETE', `${grants}/${g.json.grant.id}`, admin)).status).toBe(404);
    expect((await agent(withAgent, exec)).status).toBe(403);

    // An expired grant says so.
    const short = await api.call('POST', grants, admin, {
      grant: { ...body.grant, expires_at: new Date(Date.now() + 1500).toISOString() },
    });
    expect(short.status).toBe(201);
    await new Promise((r) => setTimeout(r, 1600));
    const expired = await agent(withAgent, exec);
    expect(expired.status).toBe(403);
    expect(expired.json.error.message).toMatch(/has expired/);
  });

  it("hides another project's server (404)", async () => {
    const eve = await api.persona('ga-b', 'ga-eve', 'member');
    expect((await agent(withAgent, { execute: 'guest-ping' }, eve.token)).status).toBe(404);
    expect((await api.call('GET', `${B}/${withAgent}/guest-agent/grants`, eve.token)).status).toBe(404);
  });
});
