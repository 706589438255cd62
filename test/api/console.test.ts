/**
 * Console sessions over a WebSocket and their recordings, through the API on
 * a listening socket with the fake hypervisor's shell-like console. The real
 * guest case is test/e2e/console.test.ts.
 */
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { CSRF_COOKIE, csrfTokenFor, SESSION_COOKIE } from '../../src/dashboard/session.js';
import { PUBLIC_URL, startTestApi, type TestApi } from '../helpers/api.js';
import { dialects } from '../helpers/store.js';

type Opened = { ws: WebSocket; output: () => string } | { status: number; body: string };

describe.each(dialects())('console API on %s', (dialect) => {
  let api: TestApi;
  let base: string;
  let member: { token: string; userId: string; projectId: string };
  let admin: string;
  let serverId: string;
  const B = '/bulwark/v1';

  beforeAll(async () => {
    api = await startTestApi(dialect);
    await api.app.listen({ host: '127.0.0.1', port: 0 });
    base = `ws://127.0.0.1:${(api.app.server.address() as AddressInfo).port}`;
    member = await api.persona('con-proj', 'con-member', 'member');
    admin = await api.login('admin', api.adminPassword, 'admin');
    const { flavorId, imageId } = await api.bootable(member.token, 'con');
    const r = await api.call('POST', '/compute/v2.1/servers', member.token, {
      server: { name: 'con-vm', imageRef: imageId, flavorRef: flavorId },
    });
    serverId = r.json.server.id;
    await api.platform.compute.servers.settled(serverId);
  });
  afterAll(async () => api?.close());

  const open = (token: string | null, query = '', id = serverId): Promise<Opened> =>
    new Promise((resolve, reject) => {
      const ws = new WebSocket(`${base}${B}/servers/${id}/console${query}`, {
        headers: token ? { 'x-auth-token': token } : {},
      });
      let out = '';
      ws.on('message', (d: Buffer) => {
        out += d.toString('utf8');
      });
      ws.once('open', () => resolve({ ws, output: () => out }));
      ws.once('unexpected-response', (_req, res) => {
        let body = '';
        res.on('data', (c: Buffer) => {
          body += c.toString();
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      });
      ws.once('error', reject);
    });
  const until = async (pred: () => boolean, what: string) => {
    const deadline = Date.now() + 10_000;
    while (!pred()) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  };
  const close = async (ws: WebSocket) => {
    const closed = new Promise((r) => ws.once('close', r));
    ws.close();
    await closed;
  };
  /** Recordings once every session has ended (the server closes them when it sees the close). */
  const ended = async () => {
    const deadline = Date.now() + 10_000;
    for (;;) {
      const recs = await recordings();
      if (recs.every((r: { ended_at: string | null }) => r.ended_at !== null)) return recs;
      if (Date.now() > deadline) throw new Error('a recording was never closed');
      await new Promise((r) => setTimeout(r, 50));
    }
  };
  const recordings = async () => (await api.call('GET', `${B}/console/recordings`, admin)).json.recordings;

  it('refuses before any session opens: no token, reader, other project, bad parameters, plain HTTP', async () => {
    expect(await open(null)).toMatchObject({ status: 401 });
    const reader = await api.persona('con-proj', 'con-reader', 'reader');
    expect(await open(reader.token)).toMatchObject({ status: 403 });
    const other = await api.persona('con-other', 'con-other', 'member');
    expect(await open(other.token)).toMatchObject({ status: 404 });
    // The recorded user cannot turn recording off: there is no such parameter, and tokens never go in the URL.
    for (const q of ['?record=false', '?recording=off', `?token=${member.token}`, '?cols=80&norecord=1']) {
      const r = await open(member.token, q);
      expect(r, q).toMatchObject({ status: 400 });
    }
    const plain = await api.call('GET', `${B}/servers/${serverId}/console`, member.token);
    expect(plain.status).toBe(400);
    expect(plain.json.badRequest?.message ?? JSON.stringify(plain.json)).toMatch(/WebSocket/);
    expect(await recordings()).toEqual([]);
    // Refusals are audited.
    const denied = await api.store.db
      .selectFrom('audit_events')
      .select(['status'])
      .where('action', '=', 'console:connect')
      .where('outcome', '=', 'denied')
      .execute();
    expect(denied.map((d) => Number(d.status)).sort()).toEqual([401, 403]);
  });

  it('records a member session: input and output, user, server, start and end, encrypted at rest', async () => {
    const s = await open(member.token, '?cols=100&rows=30');
    if (!('ws' in s)) throw new Error(`console refused: ${s.status} ${s.body}`);
    await until(() => s.output().includes('# '), 'prompt');
    // One session at a time per server (QEMU's serial socket takes one client).
    expect(await open(member.token)).toMatchObject({ status: 409 });
    s.ws.send('echo hello-console\r');
    await until(() => s.output().includes('fake: echo hello-console'), 'command output');
    await close(s.ws);
    const recs = await ended();
    expect(recs).toHaveLength(1);
    const rec = recs[0];
    expect(rec).toMatchObject({
      server_id: serverId,
      server_name: 'con-vm',
      project_id: member.projectId,
      user_id: member.userId,
      user_name: 'con-member',
      width: 100,
      height: 30,
      interrupted: false,
      bytes_in: 'echo hello-console\r'.length,
    });
    expect(rec.ended_at >= rec.started_at).toBe(true);
    expect(rec).not.toHaveProperty('key_id');

    // At rest: no plaintext in the file; the data key is the admin project's, invisible to the member.
    const dir = join(api.db.dir, 'console-recordings');
    const files = readdirSync(dir);
    expect(files).toHaveLength(1);
    const raw = readFileSync(join(dir, files[0] as string));
    expect(raw.includes('hello-console')).toBe(false);
    expect(raw.includes('"version"')).toBe(false);
    const memberSecrets = await api.call('GET', '/key-manager/v1/secrets', member.token);
    expect(JSON.stringify(memberSecrets.json)).not.toMatch(/console recording/);

    // Only an admin replays, and gets asciicast v2 with the keystrokes and the output.
    expect((await api.call('GET', `${B}/console/recordings`, member.token)).status).toBe(403);
    expect((await api.call('GET', `${B}/console/recordings/${rec.id}`, member.token)).status).toBe(403);
    expect((await api.call('GET', `${B}/console/recordings/${rec.id}/cast`, member.token)).status).toBe(403);
    const cast = await api.call('GET', `${B}/console/recordings/${rec.id}/cast`, admin);
    expect(cast.status, JSON.stringify(cast.json)).toBe(200);
    expect(cast.headers['content-type']).toMatch(/application\/x-asciicast/);
    const [header, ...events] = String(cast.json)
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(header).toMatchObject({ version: 2, width: 100, height: 30, env: { TERM: 'xterm-256color' } });
    expect(header.title).toContain('con-member');
    expect(Math.abs(header.timestamp - Date.parse(rec.started_at) / 1000)).toBeLessThan(2);
    const text = (k: string) =>
      events
        .filter((e) => e[1] === k)
        .map((e) => e[2])
        .join('');
    expect(text('i')).toBe('echo hello-console\r');
    expect(text('o')).toContain('fake: echo hello-console');
    const times = events.map((e) => e[0] as number);
    expect(times).toEqual([...times].sort((a, b) => a - b));

    // Connect, disconnect and the replay are in the audit log.
    const actions = (
      await api.store.db
        .selectFrom('audit_events')
        .select(['action', 'user_id'])
        .where('action', 'in', ['console:connect', 'console:disconnect', 'console:recordings:replay'])
        .where('outcome', '=', 'success')
        .execute()
    ).map((r) => r.action);
    expect(actions).toEqual(['console:connect', 'console:disconnect', 'console:recordings:replay']);
  });

  it('a quarantine cuts the session open on the server, and says why', async () => {
    const s = await open(member.token);
    if (!('ws' in s)) throw new Error(`console refused: ${s.status} ${s.body}`);
    await until(() => s.output().includes('# '), 'prompt');
    const closed = new Promise<number>((r) => s.ws.once('close', (code) => r(code)));
    const q = await api.call('POST', `/compute/v2.1/servers/${serverId}/os-quarantine`, admin, {
      quarantine: { reason: 'beaconing' },
    });
    expect(q.status).toBeLessThan(300);
    expect(await closed).toBe(1000);
    await ended();
    const cut = await api.store.db
      .selectFrom('audit_events')
      .select('reason')
      .where('action', '=', 'console:disconnect')
      .orderBy('seq', 'desc')
      .executeTakeFirstOrThrow();
    expect(cut.reason).toMatch(/quarantined/);
    expect(
      (await api.call('DELETE', `/compute/v2.1/servers/${serverId}/os-quarantine`, admin)).status,
    ).toBeLessThan(300);
    expect(
      (await api.call('POST', `/compute/v2.1/servers/${serverId}/action`, admin, { unpause: null })).status,
    ).toBeLessThan(300);
  });

  it('refuses a quarantined server, and replay of an altered recording', async () => {
    await api.store.db
      .updateTable('servers')
      .set({ quarantine: JSON.stringify({ reason: 'test', steps: [] }) })
      .where('id', '=', serverId)
      .execute();
    const q = await open(member.token);
    expect(q).toMatchObject({ status: 409 });
    expect('body' in q && q.body).toMatch(/quarantined/);
    await api.store.db.updateTable('servers').set({ quarantine: null }).where('id', '=', serverId).execute();

    const [rec] = await recordings();
    const dir = join(api.db.dir, 'console-recordings');
    const path = join(dir, `${rec.id}.cast.sealed`);
    const good = readFileSync(path);
    const bad = Buffer.from(good);
    bad[bad.length - 3] = (bad[bad.length - 3] ?? 0) ^ 1;
    writeFileSync(path, bad);
    const r = await api.call('GET', `${B}/console/recordings/${rec.id}/cast`, admin);
    expect(r.status).toBe(409);
    expect(JSON.stringify(r.json)).toMatch(/altered or cut short/);
    // Cut short (last record dropped) is caught too.
    writeFileSync(path, good.subarray(0, good.length - 1));
    expect((await api.call('GET', `${B}/console/recordings/${rec.id}/cast`, admin)).status).toBe(409);
    writeFileSync(path, good);
    expect((await api.call('GET', `${B}/console/recordings/${rec.id}/cast`, admin)).status).toBe(200);
  });

  it('ends a session when its user loses the role', async () => {
    const other = await api.persona('con-proj', 'con-member2', 'member');
    api.platform.consoles.recheckMs = 200;
    try {
      const s = await open(other.token);
      if (!('ws' in s)) throw new Error(`console refused: ${s.status} ${s.body}`);
      await until(() => s.output().includes('# '), 'prompt');
      const closed = new Promise<number>((r) => s.ws.once('close', (code) => r(code)));
      const role = (await api.identity.listRoles({ name: 'member' }))[0]?.id as string;
      await api.identity.revoke(member.projectId, other.userId, role, 'test');
      expect(await closed).toBe(1000);
      await ended();
      const last = await api.store.db
        .selectFrom('audit_events')
        .select(['reason', 'user_id'])
        .where('action', '=', 'console:disconnect')
        .orderBy('seq', 'desc')
        .executeTakeFirstOrThrow();
      expect(last).toMatchObject({ user_id: other.userId });
      expect(last.reason).toMatch(/no longer allows console access/);
    } finally {
      api.platform.consoles.recheckMs = 10_000;
    }
  });

  it('prunes recordings past the retention: row, file and data key', async () => {
    const [rec] = await recordings();
    const keyId = (
      await api.store.db
        .selectFrom('console_recordings')
        .select('key_id')
        .where('id', '=', rec.id)
        .executeTakeFirstOrThrow()
    ).key_id;
    const consoles = api.platform.consoles;
    expect(await consoles.prune()).toBe(0);
    const all = (await recordings()).length;
    expect(all).toBeGreaterThan(0);
    expect(await consoles.prune(Date.now() + 91 * 86_400_000)).toBe(all);
    expect(await recordings()).toEqual([]);
    expect(readdirSync(join(api.db.dir, 'console-recordings'))).toEqual([]);
    expect(
      await api.store.db.selectFrom('secrets').select('id').where('id', '=', keyId).executeTakeFirst(),
    ).toBeUndefined();
    const pruned = await api.store.db
      .selectFrom('audit_events')
      .select('reason')
      .where('action', '=', 'console:recordings_pruned')
      .executeTakeFirstOrThrow();
    expect(pruned.reason).toContain(rec.id);
    expect(existsSync(join(api.db.dir, 'console-recordings'))).toBe(true);
  });

  it('takes the token as a subprotocol from browsers, and answers with the console protocol only', async () => {
    const viaProtocol = (token: string) =>
      new Promise<WebSocket | number>((resolve, reject) => {
        const ws = new WebSocket(`${base}${B}/servers/${serverId}/console`, [
          'bulwark.console',
          `bulwark.token.${token}`,
        ]);
        ws.once('open', () => resolve(ws));
        ws.once('unexpected-response', (_q, res) => resolve(res.statusCode ?? 0));
        ws.once('error', reject);
      });
    expect(await viaProtocol('not-a-valid-token')).toBe(401);
    const ws = await viaProtocol(member.token);
    if (typeof ws === 'number') throw new Error(`refused: ${ws}`);
    expect(ws.protocol).toBe('bulwark.console');
    await close(ws);
    const recs = await ended();
    expect(recs[0]).toMatchObject({ user_id: member.userId, server_id: serverId });
  });

  it('opens a dashboard console with a single-use ticket bound to the session, the server and the Origin', async () => {
    const origin = new URL(PUBLIC_URL).origin;
    const session = {
      cookie: `${SESSION_COOKIE}=${member.token}; ${CSRF_COOKIE}=${csrfTokenFor(member.token)}`,
    };
    const ask = (headers: Record<string, string>, id = serverId) =>
      api.app.inject({ method: 'POST', url: `${B}/servers/${id}/console/tickets`, headers });
    // A foreign page cannot get one: without the CSRF header the cookie is no session; a foreign Origin is refused.
    expect((await ask({ ...session, origin })).statusCode).toBe(401);
    const withCsrf = { ...session, 'x-csrf-token': csrfTokenFor(member.token) };
    expect((await ask({ ...withCsrf, origin: 'https://evil.test' })).statusCode).toBe(403);
    expect((await ask(withCsrf)).statusCode).toBe(403);
    const other = await api.persona('con-other2', 'con-other2', 'member');
    const otherVm = (
      await api.call('POST', '/compute/v2.1/servers', other.token, {
        server: { name: 'other-vm', ...(await api.bootable(other.token, 'con2')) },
      })
    ).json.server?.id as string | undefined;
    expect((await ask({ ...withCsrf, origin }, otherVm ?? 'missing')).statusCode).toBe(404);
    const ticket = async () => {
      const r = await ask({ ...withCsrf, origin });
      expect(r.statusCode).toBe(201);
      return (r.json() as { ticket: string }).ticket;
    };
    let out = '';
    const viaTicket = (t: string, o: string | undefined, id = serverId) =>
      new Promise<WebSocket | number>((resolve, reject) => {
        const ws = new WebSocket(
          `${base}${B}/servers/${id}/console`,
          ['bulwark.console', `bulwark.ticket.${t}`],
          {
            ...(o ? { origin: o } : {}),
          },
        );
        ws.on('message', (d: Buffer) => {
          out += d.toString('utf8');
        });
        ws.once('open', () => resolve(ws));
        ws.once('unexpected-response', (_q, res) => resolve(res.statusCode ?? 0));
        ws.once('error', reject);
      });
    // Wrong Origin, another server, no Origin: refused, and each try spends the ticket.
    const t1 = await ticket();
    expect(await viaTicket(t1, 'https://evil.test')).toBe(401);
    expect(await viaTicket(t1, origin)).toBe(401);
    expect(await viaTicket(await ticket(), origin, otherVm ?? 'missing')).toBe(401);
    expect(await viaTicket(await ticket(), undefined)).toBe(401);
    expect(await viaTicket('made-up-ticket', origin)).toBe(401);
    const before = (await recordings()).length;
    const t2 = await ticket();
    const ws = await viaTicket(t2, origin);
    if (typeof ws === 'number') throw new Error(`refused: ${ws}`);
    expect(ws.protocol).toBe('bulwark.console');
    await until(() => out.includes('# '), 'prompt');
    ws.send('echo via-ticket\r');
    await until(() => out.includes('fake: echo via-ticket'), 'command output');
    await close(ws);
    // Recorded like any other session, as the session's user; the spent ticket opens nothing.
    const recs = await ended();
    expect(recs).toHaveLength(before + 1);
    expect(recs[0]).toMatchObject({
      user_id: member.userId,
      server_id: serverId,
      bytes_in: 'echo via-ticket\r'.length,
    });
    expect(await viaTicket(t2, origin)).toBe(401);
  });
});
