import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestApi, type TestApi } from '../helpers/api.js';
import { dialects } from '../helpers/store.js';

const K = '/key-manager/v1';
const S = `${K}/secrets`;
const idOf = (ref: string) => ref.split('/').pop() as string;

describe.each(dialects())('key manager API on %s', (dialect) => {
  let api: TestApi;
  let member: { token: string; projectId: string; userId: string };
  let reader: { token: string; projectId: string };
  let other: { token: string; projectId: string };

  beforeAll(async () => {
    api = await startTestApi(dialect);
    member = await api.persona('kv-a', 'kv-member', 'member');
    reader = await api.persona('kv-a', 'kv-reader', 'reader');
    other = await api.persona('kv-b', 'kv-other', 'member');
  });
  afterAll(async () => api?.close());

  const rows = () => api.store.db.selectFrom('secrets').selectAll().orderBy('id').execute();
  const audited = async (action: string, outcome?: string) => {
    let q = api.store.db
      .selectFrom('audit_events')
      .select(['action', 'outcome', 'status', 'target_id'])
      .where('action', '=', action);
    if (outcome) q = q.where('outcome', '=', outcome);
    return q.execute();
  };
  const store = async (token: string, body: Record<string, unknown>) =>
    api.call('POST', S, token, { payload_content_type: 'text/plain', ...body });
  /** The payload as the real client asks for it. */
  const payload = (token: string | null, id: string, accept = 'text/plain') =>
    api.app.inject({
      method: 'GET',
      url: `${S}/${id}/payload`,
      headers: { accept, ...(token ? { 'x-auth-token': token } : {}) },
    });

  it('refuses first: other project 404, reader gets no payload, no token 401, bad input 400 storing nothing', async () => {
    const c = await store(member.token, { name: 'db-password', payload: 'correct horse' });
    expect(c.status).toBe(201);
    const id = idOf(c.json.secret_ref);
    const before = await rows();

    // Another project's members: the secret does not exist for them, whatever they try.
    for (const [m, url] of [
      ['GET', `${S}/${id}`],
      ['DELETE', `${S}/${id}`],
    ] as const) {
      const r = await api.call(m, url, other.token);
      expect(r.status, `${m} ${url}`).toBe(404);
      expect(r.json).toMatchObject({ code: 404, title: 'Not Found' });
    }
    const otherPayload = await payload(other.token, id);
    expect(otherPayload.statusCode).toBe(404);
    expect(otherPayload.body).not.toContain('correct horse');
    expect((await api.call('GET', S, other.token)).json).toMatchObject({ secrets: [], total: 0 });
    // The cloud admin is not a way in either: secrets are scoped to their project.
    expect((await api.call('GET', `${S}/${id}`)).status).toBe(404);

    // A reader of the owning project sees metadata but not the payload, and cannot write.
    expect((await api.call('GET', `${S}/${id}`, reader.token)).status).toBe(200);
    const rp = await payload(reader.token, id);
    expect(rp.statusCode).toBe(403);
    expect(rp.body).not.toContain('correct horse');
    expect((await store(reader.token, { payload: 'x' })).status).toBe(403);
    expect((await api.call('DELETE', `${S}/${id}`, reader.token)).status).toBe(403);

    // No token at all.
    expect((await api.call('GET', S, null)).status).toBe(401);
    expect((await payload(null, id)).statusCode).toBe(401);
    expect((await store('', { payload: 'x' })).status).toBe(401);

    // Bad input: a clear 400 and nothing stored.
    const bad: Record<string, unknown>[] = [
      { payload: '' },
      { payload: 'x', payload_content_type: 'application/json' },
      {
        payload: 'not base64!',
        payload_content_type: 'application/octet-stream',
        payload_content_encoding: 'base64',
      },
      { payload: 'AAAA', payload_content_type: 'application/octet-stream' },
      { payload: 'x', payload_content_encoding: 'base64' },
      { payload: 'x', secret_type: 'magic' },
      { payload: 'x', expiration: '2001-01-01T00:00:00Z' },
      { payload: 'x', expiration: 'tomorrow' },
      { payload: 'x', bit_length: '256' },
      { payload: 'x', unknown_field: 1 },
      { payload: 'x'.repeat(20_000) },
      {
        payload: Buffer.alloc(16).toString('base64'),
        payload_content_type: 'application/octet-stream',
        payload_content_encoding: 'base64',
        secret_type: 'symmetric',
        bit_length: 256,
      },
    ];
    for (const b of bad) {
      const r = await store(member.token, b);
      expect(r.status, JSON.stringify(b).slice(0, 80)).toBe(400);
      expect(r.json.description).toBeTruthy();
    }
    expect((await api.call('POST', S, member.token, { name: 'no payload' })).status).toBe(400);
    expect((await api.call('GET', `${S}/not-a-uuid`, member.token)).status).toBe(400);
    expect(await rows()).toEqual(before);

    // Refusals are audited, payload refusals included.
    expect((await audited('secret:decrypt', 'denied')).length).toBeGreaterThanOrEqual(2);
    expect((await audited('secret:decrypt', 'failure')).some((a) => a.status === 404)).toBe(true);
    expect((await audited('secrets:post', 'failure')).length).toBeGreaterThanOrEqual(bad.length);
  });

  it('stores text and binary secrets under envelope encryption and gives them back to members', async () => {
    const text = 'p4ssw0rd-TEXT-ÿ-unique-8d1f';
    const c = await store(member.token, {
      name: 'text-secret',
      payload: text,
      algorithm: 'aes',
      bit_length: 256,
      mode: 'cbc',
    });
    expect(c.status).toBe(201);
    expect(c.json.secret_ref).toMatch(new RegExp(`^https://bulwark.test:8443${S}/[0-9a-f-]{36}$`));
    const id = idOf(c.json.secret_ref);
    const raw = Buffer.from(Array.from({ length: 64 }, (_, i) => (i * 37) & 0xff));
    const b = await api.call('POST', `${S}/`, member.token, {
      name: 'binary-key',
      payload: raw.toString('base64'),
      payload_content_type: 'application/octet-stream',
      payload_content_encoding: 'base64',
      secret_type: 'symmetric',
      algorithm: 'aes',
      bit_length: 512,
    });
    expect(b.status).toBe(201);
    const bid = idOf(b.json.secret_ref);

    const meta = await api.call('GET', `${S}/${id}`, member.token);
    expect(meta.json).toMatchObject({
      secret_ref: c.json.secret_ref,
      name: 'text-secret',
      status: 'ACTIVE',
      secret_type: 'opaque',
      algorithm: 'aes',
      bit_length: 256,
      mode: 'cbc',
      expiration: null,
      content_types: { default: 'text/plain' },
      creator_id: member.userId,
    });
    expect(JSON.stringify(meta.json)).not.toContain(text);

    const p = await payload(member.token, id);
    expect(p.statusCode).toBe(200);
    expect(p.headers['content-type']).toMatch(/^text\/plain/);
    expect(p.headers['cache-control']).toBe('no-store');
    expect(p.body).toBe(text);
    const pb = await payload(member.token, bid, 'application/octet-stream');
    expect(pb.statusCode).toBe(200);
    expect(pb.rawPayload.equals(raw)).toBe(true);
    expect((await payload(member.token, bid, 'application/json')).statusCode).toBe(406);

    // At rest: ciphertext only, the KEK version named, no plaintext payload or data key anywhere.
    const row = (await rows()).find((r) => r.id === id);
    expect(row).toMatchObject({ project_id: member.projectId, kek_id: 'file', kek_version: 1 });
    const dump = JSON.stringify(await rows());
    expect(dump).not.toContain(text);
    expect(dump).not.toContain(raw.toString('base64'));
    expect(dump).not.toContain(Buffer.from(text).toString('base64'));

    // Payload reads are audited with the secret's id, successes too.
    expect((await audited('secret:decrypt', 'success')).map((a) => a.target_id)).toEqual(
      expect.arrayContaining([id, bid]),
    );
    expect((await audited('secrets:post', 'success')).map((a) => a.target_id)).toContain(id);
  });

  it('lists in Barbican shape with paging and a name filter, only the own project', async () => {
    for (let i = 0; i < 5; i++)
      expect((await store(other.token, { name: `page-${i}`, payload: `v${i}` })).status).toBe(201);
    const all = await api.call('GET', S, other.token);
    expect(all.json.total).toBe(5);
    expect(all.json.secrets).toHaveLength(5);
    const page = await api.call('GET', `${S}?limit=2&offset=2`, other.token);
    expect(page.json.total).toBe(5);
    expect(page.json.secrets.map((s: { name: string }) => s.name)).toEqual(['page-2', 'page-3']);
    expect(page.json.next).toContain('offset=4');
    expect(page.json.previous).toContain('offset=0');
    const named = await api.call('GET', `${S}?name=page-1`, other.token);
    expect(named.json).toMatchObject({ total: 1, secrets: [{ name: 'page-1' }] });
    expect(named.json.secrets[0].secret_ref).toMatch(/^https:\/\//);
    const mine = await api.call('GET', S, member.token);
    expect(mine.json.secrets.every((s: { name: string }) => !s.name.startsWith('page-'))).toBe(true);
    expect((await api.call('GET', S, reader.token)).json.total).toBe(mine.json.total);
  });

  it('deletes (member of the owner only), audited; the catalog publishes key-manager', async () => {
    const c = await store(member.token, { name: 'doomed', payload: 'bye' });
    const id = idOf(c.json.secret_ref);
    expect((await api.call('DELETE', `${S}/${id}`, member.token)).status).toBe(204);
    expect((await api.call('GET', `${S}/${id}`, member.token)).status).toBe(404);
    expect((await api.call('DELETE', `${S}/${id}`, member.token)).status).toBe(404);
    expect((await audited('secret:delete', 'success')).map((a) => a.target_id)).toContain(id);
    const cat = await api.call('GET', '/identity/v3/auth/catalog', member.token);
    expect(cat.json.catalog).toEqual(
      expect.arrayContaining([expect.objectContaining({ type: 'key-manager', name: 'barbican' })]),
    );
    expect((await api.call('GET', '/key-manager', null)).status).toBe(300);
    expect((await api.call('GET', K, null)).json.version.id).toBe('v1');
  });

  it('rotates the KEK (admin only), audited, secrets unchanged', async () => {
    const c = await store(member.token, { name: 'survivor', payload: 'still here' });
    const id = idOf(c.json.secret_ref);
    for (const t of [member.token, reader.token])
      expect((await api.call('POST', `${K}/bulwark/rotate-kek`, t)).status).toBe(403);
    const r = await api.call('POST', `${K}/bulwark/rotate-kek`);
    expect(r.status).toBe(200);
    expect(r.json.kek_rotation).toMatchObject({ kek_id: 'file', to_version: 2 });
    expect(r.json.kek_rotation.rewrapped).toBeGreaterThan(0);
    expect((await payload(member.token, id)).body).toBe('still here');
    expect((await rows()).every((x) => x.kek_version === 2)).toBe(true);
    expect(await audited('key-manager:rotate_kek', 'success')).not.toHaveLength(0);
  });

  it('serves platform services only for the owning project (KeyService)', async () => {
    const keys = api.platform.keys;
    const id = await keys.createKey(member.projectId, {
      name: 'vTPM secret for instance x',
      bits: 256,
      purpose: 'vtpm',
    });
    const key = await keys.readKeyFor(member.projectId, id);
    expect(key).toHaveLength(32);
    await expect(keys.readKeyFor(other.projectId, id)).rejects.toMatchObject({ kind: 'NotFound' });
    await keys.deleteKeyFor(other.projectId, id);
    expect(await keys.readKeyFor(member.projectId, id)).toEqual(key);
    await keys.deleteKeyFor(member.projectId, id);
    await keys.deleteKeyFor(member.projectId, id);
    await expect(keys.readKeyFor(member.projectId, id)).rejects.toMatchObject({ kind: 'NotFound' });
    // Every platform read is audited against the secret, refusals included.
    const reads = await audited('secret:read_for_owner');
    expect(reads.filter((r) => r.target_id === id && r.outcome === 'success')).toHaveLength(2);
    expect(reads.filter((r) => r.target_id === id && r.outcome === 'failure')).toHaveLength(2);
  });

  // Last: it takes the KEK away for the rest of this suite.
  it('fails closed with 503 when the KEK is unavailable: no payload, nothing stored, audited', async () => {
    const c = await store(member.token, { name: 'locked-away', payload: 'unreachable' });
    const id = idOf(c.json.secret_ref);
    const before = await rows();
    await api.platform.keys.close();
    const p = await payload(member.token, id);
    expect(p.statusCode).toBe(503);
    expect(p.body).not.toContain('unreachable');
    expect(JSON.parse(p.body)).toMatchObject({ code: 503, title: 'Service Unavailable' });
    const w = await store(member.token, { name: 'no-kek', payload: 'never stored' });
    expect(w.status).toBe(503);
    expect(await rows()).toEqual(before);
    const failed = await audited('secret:decrypt', 'failure');
    expect(failed.some((a) => a.status === 503 && a.target_id === id)).toBe(true);
    // Metadata needs no key and stays readable.
    expect((await api.call('GET', `${S}/${id}`, member.token)).status).toBe(200);
  });
});
