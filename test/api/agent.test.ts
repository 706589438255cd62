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
  sendHeartbeat,
} from '../../src/host/agent/client.js';
import { type AgentServer, startAgentServer } from '../../src/host/agent/server.js';
import { createCa, createCsr, issueCertificate, signCsr } from '../../src/pki/ca.js';
import { sha256Hex } from '../../src/util/ids.js';
import { PUBLIC_URL, startTestApi, type TestApi } from '../helpers/api.js';
import { dialects } from '../helpers/store.js';

const report = { capacity: { vcpus: 2, ramMiB: 2048, diskGiB: 20 }, features: ['uefi', 'tpm'] };

describe.each(dialects())('host agents on %s', (dialect) => {
  let api: TestApi;
  let https: FastifyInstance;
  let agents: AgentServer;
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
    agents = await startAgentServer({
      ca: api.ca,
      server,
      host: '127.0.0.1',
      port: 0,
      hosts: api.platform.compute.hosts,
    });
    endpoint = `https://127.0.0.1:${agents.port}`;
  });
  afterAll(async () => {
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
});
