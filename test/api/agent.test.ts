/**
 * Host agents (docs/multi-host.md): one-time expiring join tokens, a client
 * certificate from the platform CA for a CSR, and heartbeats over mutual TLS
 * only, on real TLS sockets. Refusals first-class: another CA's certificate,
 * none, a replaced one, a used or expired token.
 */
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildApi } from '../../src/api/server.js';
import {
  type AgentIdentity,
  fetchPinnedCa,
  joinControlPlane,
  openChannel,
  sendHeartbeat,
} from '../../src/host/agent/client.js';
import { serveHost } from '../../src/host/agent/host-service.js';
import { AgentHub } from '../../src/host/agent/hub.js';
import { type AgentServer, startAgentServer } from '../../src/host/agent/server.js';
import { FakeHypervisor } from '../../src/host/fake-hypervisor.js';
import type { CompileInput } from '../../src/network/compile.js';
import { createCa, createCsr, issueCertificate, signCsr } from '../../src/pki/ca.js';
import { sha256Hex } from '../../src/util/ids.js';
import { PUBLIC_URL, startTestApi, type TestApi } from '../helpers/api.js';
import { waitFor } from '../helpers/guests.js';
import { dialects } from '../helpers/store.js';
import { vtpmAudit } from '../helpers/tpm.js';

const report = { capacity: { vcpus: 2, ramMiB: 2048, diskGiB: 20 }, features: ['uefi', 'tpm'] };

describe.each(dialects())('host agents on %s', (dialect) => {
  let api: TestApi;
  let https: FastifyInstance;
  let agents: AgentServer;
  let hub: AgentHub;
  let controlPlane = '';
  let endpoint = '';

  beforeAll(async () => {
    api = await startTestApi(dialect);
    const server = await issueCertificate(api.ca, {
      commonName: '127.0.0.1',
      names: ['127.0.0.1'],
      usage: 'server',
    });
    https = await buildApi(
      { store: api.store, ...api.platform, enrollment: api.enrollment, publicUrl: PUBLIC_URL },
      { https: { key: server.keyPem, cert: server.certPem + api.ca.certPem } },
    );
    await https.listen({ host: '127.0.0.1', port: 0 });
    const addr = https.server.address();
    controlPlane = `https://127.0.0.1:${typeof addr === 'object' && addr ? addr.port : 0}`;
    hub = new AgentHub(api.store, api.platform.compute.servers);
    agents = await startAgentServer({
      ca: api.ca,
      server,
      host: '127.0.0.1',
      port: 0,
      hosts: api.platform.compute.hosts,
      onChannel: (name, io) => void hub.connect(name, io).catch(() => io.destroy()),
    });
    endpoint = `https://127.0.0.1:${agents.port}`;
  });
  afterAll(async () => {
    hub?.close();
    await agents?.close();
    await https?.close();
    await api?.close();
  });

  const token = async (host: string, ttl?: number) => {
    const r = await api.call('POST', '/bulwark/v1/host-join-tokens', undefined, {
      join_token: { host, ...(ttl ? { ttl } : {}) },
    });
    expect(r.status).toBe(201);
    return r.json.join_token as { token: string; ca_hash: string; expires_at: string };
  };
  const join = async (host: string) => {
    const t = await token(host);
    return joinControlPlane({ controlPlane, token: t.token, caHash: t.ca_hash, report });
  };
  let agent: AgentIdentity;

  it('joins with a one-time token: a certificate for its CSR, then heartbeats over mutual TLS', async () => {
    const t = await token('agent-1');
    // Only the token's hash is stored.
    const rows = await api.store.db.selectFrom('host_join_tokens').selectAll().execute();
    expect(rows.map((r) => r.token_hash)).toContain(sha256Hex(t.token));
    expect(JSON.stringify(rows)).not.toContain(t.token);
    agent = await joinControlPlane({ controlPlane, token: t.token, caHash: t.ca_hash, report });
    expect(agent.name).toBe('agent-1');
    expect(agent.caPem).toBe(api.ca.certPem);
    const h = await api.platform.compute.hosts.get('agent-1');
    expect(h).toMatchObject({ state: 'up', local: 0, vcpus: 2, ram_mib: 2048 });
    await api.store.db.updateTable('hosts').set({ last_heartbeat: '2000-01-01T00:00:00.000Z' }).execute();
    await sendHeartbeat(endpoint, agent, {
      ...report,
      capacity: { vcpus: 3, ramMiB: 4096, diskGiB: 30 },
      health: { load: 0.5 },
    });
    const after = await api.platform.compute.hosts.get('agent-1');
    expect(after).toMatchObject({ vcpus: 3, ram_mib: 4096, disk_gib: 30 });
    expect(JSON.parse(after.health)).toEqual({ load: 0.5 });
    expect(after.last_heartbeat! > '2001').toBe(true);
    const listed = await api.call('GET', '/bulwark/v1/hosts');
    expect(listed.json.hosts.map((x: { name: string }) => x.name)).toContain('agent-1');
  });

  it('refuses a used token, an expired token, and an unknown one (401), and audits the refusal', async () => {
    const t = await token('agent-2');
    await joinControlPlane({ controlPlane, token: t.token, caHash: t.ca_hash, report });
    await expect(
      joinControlPlane({ controlPlane, token: t.token, caHash: t.ca_hash, report }),
    ).rejects.toThrow(/HTTP 401.*already used or expired/);
    const old = await token('agent-3', 60);
    await api.store.db
      .updateTable('host_join_tokens')
      .set({ expires_at: '2000-01-01T00:00:00.000Z' })
      .where('token_hash', '=', sha256Hex(old.token))
      .execute();
    await expect(
      joinControlPlane({ controlPlane, token: old.token, caHash: old.ca_hash, report }),
    ).rejects.toThrow(/HTTP 401/);
    await expect(
      joinControlPlane({ controlPlane, token: 'bwjoin_guess', caHash: old.ca_hash, report }),
    ).rejects.toThrow(/HTTP 401/);
    await expect(api.platform.compute.hosts.get('agent-3')).rejects.toThrow(/Could not find host/);
    const refused = await api.store.db
      .selectFrom('audit_events')
      .select(['action', 'status'])
      .where('action', '=', 'bulwark:agent:join')
      .where('status', '=', 401)
      .execute();
    expect(refused.length).toBeGreaterThanOrEqual(3);
  });

  it('a bad CSR is a 400 that does not burn the token; a wrong CA pin sends nothing', async () => {
    const t = await token('agent-4');
    const bad = await api.call('POST', '/bulwark/v1/agent/join', null, {
      join: { token: t.token, csr: 'nope', ...report },
    });
    expect(bad.status).toBe(400);
    await expect(fetchPinnedCa(controlPlane, `sha256:${'0'.repeat(64)}`)).rejects.toThrow(
      /did not present the CA/,
    );
    expect((await joinControlPlane({ controlPlane, token: t.token, caHash: t.ca_hash, report })).name).toBe(
      'agent-4',
    );
  });

  it('refuses an agent with a certificate from another CA, or with none, at the TLS handshake', async () => {
    const other = await createCa('Some other CA');
    const { csrPem, keyPem } = await createCsr('agent-1');
    const foreign: AgentIdentity = {
      name: 'agent-1',
      keyPem,
      certPem: await signCsr(other, csrPem, { commonName: 'agent-1', usage: 'client' }),
      caPem: api.ca.certPem,
    };
    const code = async (id: AgentIdentity) =>
      ((await sendHeartbeat(endpoint, id, report).catch((e: Error) => e)) as { code?: string }).code;
    // Another CA: the server resets the connection during the handshake (the handler would have said 403).
    expect(await code(foreign)).toBe('ECONNRESET');
    // No certificate: TLS 1.3's certificate_required alert.
    expect(await code({ ...agent, keyPem: '', certPem: '' })).toBe(
      'ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED',
    );
    // The genuine agent still gets in.
    await sendHeartbeat(endpoint, agent, report);
  });

  it('refuses a platform-CA certificate the host did not enroll with (a re-join revokes the old one)', async () => {
    const stray = await issueCertificate(api.ca, { commonName: 'agent-1', usage: 'client' });
    await expect(
      sendHeartbeat(
        endpoint,
        { name: 'agent-1', keyPem: stray.keyPem, certPem: stray.certPem, caPem: api.ca.certPem },
        report,
      ),
    ).rejects.toThrow(/HTTP 403/);
    const again = await join('agent-1');
    await sendHeartbeat(endpoint, again, report);
    await expect(sendHeartbeat(endpoint, agent, report)).rejects.toThrow(/HTTP 403/);
    agent = again;
  });

  it('refuses a malformed report (400) and changes nothing', async () => {
    const before = await api.platform.compute.hosts.get('agent-1');
    await expect(
      sendHeartbeat(endpoint, agent, { capacity: { vcpus: -1, ramMiB: 1, diskGiB: 1 }, features: [] }),
    ).rejects.toThrow(/HTTP 400/);
    expect((await api.platform.compute.hosts.get('agent-1')).vcpus).toBe(before.vcpus);
  });

  it('an admin disables a host (reports keep it disabled) and enables it; unknown hosts are 404', async () => {
    const off = await api.call('PATCH', '/bulwark/v1/hosts/agent-1', undefined, {
      host: { state: 'disabled' },
    });
    expect(off.status).toBe(200);
    expect(off.json.host.state).toBe('disabled');
    await sendHeartbeat(endpoint, agent, report);
    expect((await api.platform.compute.hosts.get('agent-1')).state).toBe('disabled');
    const bad = await api.call('PATCH', '/bulwark/v1/hosts/agent-1', undefined, { host: { state: 'down' } });
    expect(bad.status).toBe(400);
    expect(
      (await api.call('PATCH', '/bulwark/v1/hosts/nope', undefined, { host: { state: 'up' } })).status,
    ).toBe(404);
    expect(
      (await api.call('PATCH', '/bulwark/v1/hosts/agent-1', undefined, { host: { state: 'up' } })).json.host
        .state,
    ).toBe('up');
  });

  it('marks a host that stops reporting down; the scheduler skips it; a report brings it back', async () => {
    await api.store.db
      .updateTable('hosts')
      .set({ last_heartbeat: '2000-01-01T00:00:00.000Z' })
      .where('name', '=', 'agent-1')
      .execute();
    const down = await api.platform.compute.hosts.markStale(30_000);
    expect(down).toContain('agent-1');
    expect(down).not.toContain('test-host');
    expect((await api.platform.compute.hosts.get('agent-1')).state).toBe('down');
    await sendHeartbeat(endpoint, agent, report);
    expect((await api.platform.compute.hosts.get('agent-1')).state).toBe('up');
  });

  it("the control plane drives the agent's driver over its mutual-TLS channel; keys only for its own guests", async () => {
    const C = '/compute/v2.1';
    const admin = await api.login('admin', api.adminPassword, 'admin');
    const boot = await api.bootable(admin, 'rpc', 256);
    const mk = async (name: string) => {
      const r = await api.call('POST', `${C}/servers`, undefined, {
        server: { name, imageRef: boot.imageId, flavorRef: boot.flavorId, networks: 'none' },
      });
      expect(r.status, JSON.stringify(r.json)).toBe(202);
      await api.platform.compute.servers.settled(r.json.server.id);
      return r.json.server.id as string;
    };
    // Made before the agent connects: both are on the local test host.
    const mine = await mk('on-agent');
    const theirs = await mk('elsewhere');
    const rpcAgent = await join('agent-rpc');
    const fake = new FakeHypervisor();
    const applied: Omit<CompileInput, 'table'>[] = [];
    const peer = serveHost(await openChannel(endpoint, rpcAgent), fake, {
      apply: async (state) => {
        applied.push(state);
      },
    });
    const remote = await waitFor('agent-rpc attached', async () => hub.get('agent-rpc'));
    expect(applied.length).toBeGreaterThanOrEqual(1);
    await api.store.db.updateTable('servers').set({ host: 'agent-rpc' }).where('id', '=', mine).execute();
    // The agent asks for keys over the channel: its own guest's, yes; another host's guest's, never.
    expect(await fake.diskKeyFor(mine)).toBe(32);
    await expect(fake.diskKeyFor(theirs)).rejects.toThrow(/may not have the disk key/);
    // The Hypervisor interface round-trips: define, start (the firewall first), state, log, console.
    const spec = api.driver.guests.get(mine)?.spec;
    if (!spec) throw new Error('the local fake driver built no guest');
    await remote.define(spec);
    const before = applied.length;
    await remote.start(mine);
    expect(applied.length).toBe(before + 1);
    expect(await remote.state(mine)).toBe('running');
    expect(fake.guests.get(mine)?.state).toBe('running');
    expect(typeof (await remote.consoleLog(mine))).toBe('string');
    const con = await remote.openConsole(mine);
    let seen = '';
    con.on('data', (b: Buffer) => {
      seen += b.toString();
    });
    con.write('hello\r');
    await waitFor('console echo', async () => seen.includes('fake: hello'));
    con.destroy();
    await expect(remote.call('no-such-call')).rejects.toThrow(/no such call/);
    // A bad call's BulwarkError keeps its kind across the channel.
    await expect(remote.openConsole(theirs)).rejects.toMatchObject({ kind: 'NotFound' });
    await remote.undefine(mine);
    // The channel drops: the host is detached, its servers' actions fail clearly, never run elsewhere.
    peer.close();
    await waitFor('detached', async () => hub.get('agent-rpc') === undefined);
    const stop = await api.call('POST', `${C}/servers/${mine}/action`, undefined, { 'os-stop': null });
    expect(stop.status).toBe(202);
    await api.platform.compute.servers.settled(mine);
    const row = await api.store.db
      .selectFrom('servers')
      .selectAll()
      .where('id', '=', mine)
      .executeTakeFirstOrThrow();
    expect(JSON.parse(row.fault ?? '{}').message).toMatch(
      /host agent-rpc, which has no hypervisor connected/,
    );
    expect(row.task_state).toBeNull();
    // The local host's copy (built before it was moved in this test) was not touched.
    expect(api.driver.guests.get(mine)?.state).toBe('running');
  });

  it("a dead swtpm the agent's reconcile finds: stopped, audited, restarted within the budget; past it ERROR", async () => {
    const C = '/compute/v2.1';
    const admin = await api.login('admin', api.adminPassword, 'admin');
    const boot = await api.bootable(admin, 'tpm-agent', 256);
    const r = await api.call('POST', `${C}/servers`, undefined, {
      server: { name: 'tpm-on-agent', imageRef: boot.imageId, flavorRef: boot.flavorId, networks: 'none' },
    });
    expect(r.status, JSON.stringify(r.json)).toBe(202);
    const id = r.json.server.id as string;
    await api.platform.compute.servers.settled(id);
    const spec = api.driver.guests.get(id)?.spec;
    if (!spec) throw new Error('the local fake driver built no guest');
    // The guest runs on the agent's host; its swtpm died while the agent was away.
    await api.store.db.updateTable('servers').set({ host: 'agent-tpm' }).where('id', '=', id).execute();
    const fake = new FakeHypervisor();
    fake.guests.set(id, { spec, state: 'running', log: [] });
    fake.tpmGoneAtReconcile.add(id);
    const rpcAgent = await join('agent-tpm');
    const servers = api.platform.compute.servers;
    const row = () =>
      api.store.db.selectFrom('servers').selectAll().where('id', '=', id).executeTakeFirstOrThrow();
    const audit = () => vtpmAudit(api.store, id);
    const connect = async () => {
      const peer = serveHost(await openChannel(endpoint, rpcAgent), fake, { apply: async () => undefined });
      await waitFor('agent-tpm attached', async () => hub.get('agent-tpm'));
      return peer;
    };
    servers.vtpmRestarts = 1;
    try {
      let peer = await connect();
      // Fail closed on the agent, then the control plane records it and restarts it from its saved state.
      const down = await waitFor('SHUTOFF', async () =>
        (await row()).status === 'SHUTOFF' ? row() : undefined,
      );
      expect(down.task_state).toBe('powering-on');
      expect(JSON.parse(down.fault ?? '{}').message).toMatch(
        /agent-tpm's agent connected.*automatic restart 1 of 1/,
      );
      const back = await waitFor(
        'ACTIVE after the restart',
        async () => {
          const s = await row();
          return s.status === 'ACTIVE' && s.task_state === null ? s : undefined;
        },
        30_000,
        100,
      );
      expect(back.fault).toBeNull();
      expect(fake.guests.get(id)?.state).toBe('running');
      expect(
        await waitFor('three audit records', async () => ((await audit()).length >= 3 ? audit() : undefined)),
      ).toEqual([
        { action: 'server:vtpm_lost', outcome: 'failure' },
        { action: 'server:vtpm_restart', outcome: 'success' },
        { action: 'server:vtpm_recovered', outcome: 'success' },
      ]);
      // The agent goes away, its swtpm dies again: the budget (1 an hour) is used up, ERROR saying what to do.
      peer.close();
      await waitFor('detached', async () => hub.get('agent-tpm') === undefined);
      fake.tpmGoneAtReconcile.add(id);
      peer = await connect();
      const failed = await waitFor('ERROR', async () =>
        (await row()).status === 'ERROR' ? row() : undefined,
      );
      expect(JSON.parse(failed.fault ?? '{}').message).toMatch(/used up \(1 an hour\)/);
      expect(fake.guests.get(id)?.state).toBe('shutoff');
      expect((await audit()).slice(3)).toEqual([
        { action: 'server:vtpm_lost', outcome: 'failure' },
        { action: 'server:vtpm_restarts_exhausted', outcome: 'failure' },
      ]);
      // A guest whose swtpm is alive is left alone: reconnecting changes nothing.
      peer.close();
      await waitFor('detached', async () => hub.get('agent-tpm') === undefined);
      peer = await connect();
      expect((await row()).status).toBe('ERROR');
      expect(await audit()).toHaveLength(5);
      peer.close();
    } finally {
      servers.vtpmRestarts = 3;
    }
  });

  it('a guest whose QEMU ended while its agent was away: SHUTOFF with a fault on reconnect; a running one is left alone', async () => {
    const C = '/compute/v2.1';
    const admin = await api.login('admin', api.adminPassword, 'admin');
    const boot = await api.bootable(admin, 'gone-agent', 256);
    const make = async (name: string) => {
      const r = await api.call('POST', `${C}/servers`, undefined, {
        server: { name, imageRef: boot.imageId, flavorRef: boot.flavorId, networks: 'none' },
      });
      expect(r.status, JSON.stringify(r.json)).toBe(202);
      const id = r.json.server.id as string;
      await api.platform.compute.servers.settled(id);
      await api.store.db.updateTable('servers').set({ host: 'agent-gone' }).where('id', '=', id).execute();
      return id;
    };
    const gone = await make('gone-on-agent');
    const alive = await make('alive-on-agent');
    const row = (id: string) =>
      api.store.db.selectFrom('servers').selectAll().where('id', '=', id).executeTakeFirstOrThrow();
    // The agent's driver still runs one of them; the other's QEMU ended while the agent was away.
    const fake = new FakeHypervisor();
    const spec = api.driver.guests.get(alive)?.spec;
    if (!spec) throw new Error('the local fake driver built no guest');
    fake.guests.set(alive, { spec, state: 'running', log: [] });
    const peer = serveHost(await openChannel(endpoint, await join('agent-gone')), fake, {
      apply: async () => undefined,
    });
    try {
      await waitFor('agent-gone attached', async () => hub.get('agent-gone'));
      const down = await waitFor('SHUTOFF', async () =>
        (await row(gone)).status === 'SHUTOFF' ? row(gone) : undefined,
      );
      expect(down.task_state).toBeNull();
      expect(JSON.parse(down.fault ?? '{}').message).toMatch(
        /QEMU process was gone when host agent-gone's agent connected.*openstack server start/,
      );
      const ok = await row(alive);
      expect(ok.status).toBe('ACTIVE');
      expect(ok.fault).toBeNull();
    } finally {
      peer.close();
    }
  });

  it('the driver channel takes only platform-CA certificates, both ways', async () => {
    const other = await createCa('Some other CA');
    const { csrPem, keyPem } = await createCsr('agent-1');
    const foreign: AgentIdentity = {
      name: 'agent-1',
      keyPem,
      certPem: await signCsr(other, csrPem, { commonName: 'agent-1', usage: 'client' }),
      caPem: api.ca.certPem,
    };
    await expect(openChannel(endpoint, foreign)).rejects.toMatchObject({ code: 'ECONNRESET' });
    await expect(openChannel(endpoint, { ...agent, keyPem: '', certPem: '' })).rejects.toMatchObject({
      code: 'ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED',
    });
    // A control plane whose certificate is from another CA: the agent refuses it.
    const impostor = await startAgentServer({
      ca: api.ca,
      server: await issueCertificate(other, {
        commonName: '127.0.0.1',
        names: ['127.0.0.1'],
        usage: 'server',
      }),
      host: '127.0.0.1',
      port: 0,
      hosts: api.platform.compute.hosts,
      onChannel: (_n, io) => io.destroy(),
    });
    try {
      await expect(openChannel(`https://127.0.0.1:${impostor.port}`, agent)).rejects.toThrow(
        /unable to verify|self.signed|certificate/i,
      );
    } finally {
      await impostor.close();
    }
    const io = await openChannel(endpoint, agent);
    io.destroy();
  });
});
