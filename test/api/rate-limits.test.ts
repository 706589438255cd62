/**
 * Rate limits (docs/rate-limits.md): server creations per user per hour,
 * counted in the store so a restart does not reset them, and API requests
 * per token and per source address. Over a limit: 429, Retry-After, audited.
 */
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ApiRateLimits } from '../../src/api/rate-limit.js';
import { addressKey, TokenBuckets } from '../../src/api/rate-limit.js';
import { buildApi } from '../../src/api/server.js';
import { makeConfig } from '../../src/config.js';
import { serverCreateLimit } from '../../src/governance/rate-limits.js';
import { FakeHypervisor } from '../../src/host/fake-hypervisor.js';
import { buildPlatform, type Platform } from '../../src/platform.js';
import { PUBLIC_URL, startTestApi, type TestApi, testPlatformOptions } from '../helpers/api.js';
import { dialects } from '../helpers/store.js';

describe.each(dialects())('rate limits on %s', (dialect) => {
  let api: TestApi;
  const open: { app: FastifyInstance; platform: Platform }[] = [];

  /** Another daemon on the same database: a fresh platform and API, as after a restart. */
  async function instance(opts: { serverCreateRate?: number; rateLimits?: ApiRateLimits }) {
    const platform = buildPlatform(
      api.store,
      new FakeHypervisor(),
      { sync: async () => undefined },
      {
        ...testPlatformOptions(api.db.dir),
        ...(opts.serverCreateRate ? { serverCreateRate: opts.serverCreateRate } : {}),
      },
    );
    const app = await buildApi(
      { store: api.store, ...platform, publicUrl: PUBLIC_URL },
      opts.rateLimits ? { rateLimits: opts.rateLimits } : {},
    );
    await app.ready();
    const inst = { app, platform };
    open.push(inst);
    const call = async (method: 'GET' | 'POST', url: string, token: string | null, body?: unknown) => {
      const res = await app.inject({
        method,
        url,
        headers: {
          ...(token ? { 'x-auth-token': token } : {}),
          ...(body === undefined ? {} : { 'content-type': 'application/json' }),
        },
        ...(body === undefined ? {} : { payload: JSON.stringify(body) }),
      });
      return { status: res.statusCode, json: res.json(), headers: res.headers };
    };
    const stop = async () => {
      await platform.compute.servers.settled();
      await app.close();
      open.splice(open.indexOf(inst), 1);
    };
    return { call, stop };
  }

  const auditOf = (userId: string, status: number) =>
    api.store.db
      .selectFrom('audit_events')
      .selectAll()
      .where('user_id', '=', userId)
      .where('status', '=', status)
      .execute();

  beforeAll(async () => {
    api = await startTestApi(dialect);
  });
  afterAll(async () => {
    for (const i of [...open]) {
      await i.platform.compute.servers.settled();
      await i.app.close();
    }
    await api?.close();
  });

  it('limits server creations per user per hour, across a restart; other users are unaffected', async () => {
    const alice = await api.persona('rl-proj', 'rl-alice', 'member');
    const bob = await api.persona('rl-proj', 'rl-bob', 'member');
    const { flavorId, imageId } = await api.bootable(alice.token, 'rl');
    const create = (call: Awaited<ReturnType<typeof instance>>['call'], token: string, name: string) =>
      call('POST', '/compute/v2.1/servers', token, {
        server: { name, imageRef: imageId, flavorRef: flavorId, networks: 'none' },
      });

    const first = await instance({ serverCreateRate: 2 });
    expect((await create(first.call, alice.token, 'a1')).status).toBe(202);
    expect((await create(first.call, alice.token, 'a2')).status).toBe(202);
    const over = await create(first.call, alice.token, 'a3');
    expect(over.status).toBe(429);
    const retry = Number(over.headers['retry-after']);
    expect(retry).toBeGreaterThanOrEqual(3590);
    expect(retry).toBeLessThanOrEqual(3600);
    expect(over.json.overLimit).toMatchObject({ code: 429, retryAfter: String(retry) });
    expect(over.json.overLimit.message).toMatch(/at most 2 server creations per user per hour/);
    await first.stop();

    // A restart: a new platform and API on the same database still counts alice's creations.
    const second = await instance({ serverCreateRate: 2 });
    const again = await create(second.call, alice.token, 'a4');
    expect(again.status).toBe(429);
    expect(Number(again.headers['retry-after'])).toBeGreaterThan(0);
    expect((await create(second.call, bob.token, 'b1')).status).toBe(202);
    const names = (await api.call('GET', '/compute/v2.1/servers', alice.token)).json.servers.map(
      (s: { name: string }) => s.name,
    );
    expect(names.sort()).toEqual(['a1', 'a2', 'b1']);

    const denied = await auditOf(alice.userId, 429);
    expect(denied).toHaveLength(2);
    expect(denied[0]).toMatchObject({ action: 'compute:servers:create', outcome: 'denied' });
    expect(denied[0]?.reason).toMatch(/Rate limit exceeded/);
    await second.stop();
  });

  it('the server-create window slides: a slot frees an hour after the event it counts', async () => {
    let now = Date.parse('2026-01-01T00:00:00Z');
    const limit = serverCreateLimit(api.store, 2, () => now);
    const subject = `clock-${dialect}`;
    await limit.within(subject, async () => undefined);
    now += 600_000;
    await limit.within(subject, async () => undefined);
    now += 600_000;
    const refused = await limit.within(subject, async () => undefined).catch((e: unknown) => e);
    expect(refused).toMatchObject({ kind: 'TooManyRequests', headers: { 'retry-after': '2400' } });
    // Work refused by the limit never ran, and a refused attempt is not counted.
    now += 2_400_000;
    let ran = false;
    await limit.within(subject, async () => {
      ran = true;
    });
    expect(ran).toBe(true);
    await expect(limit.within(subject, async () => undefined)).rejects.toMatchObject({
      kind: 'TooManyRequests',
    });
  });

  it('concurrent creations never both take the last slot', async () => {
    const limit = serverCreateLimit(api.store, 2);
    const subject = `race-${dialect}`;
    const results = await Promise.allSettled(
      Array.from({ length: 6 }, () =>
        limit.within(subject, async (db) => {
          await db.selectFrom('rate_limit_events').select('id').execute();
          await new Promise((r) => setTimeout(r, 20));
        }),
      ),
    );
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(2);
    expect(results.filter((r) => r.status === 'rejected')).toHaveLength(4);
  });

  it('limits API requests per token; other tokens are unaffected; the refusal is audited once per run', async () => {
    const carol = await api.persona('rl-proj2', 'rl-carol', 'member');
    const dave = await api.persona('rl-proj2', 'rl-dave', 'member');
    const inst = await instance({ rateLimits: { perToken: 3, perAddress: 0 } });
    for (let i = 0; i < 3; i++)
      expect((await inst.call('GET', '/compute/v2.1/servers', carol.token)).status).toBe(200);
    const over = await inst.call('GET', '/compute/v2.1/servers', carol.token);
    expect(over.status).toBe(429);
    expect(Number(over.headers['retry-after'])).toBeGreaterThanOrEqual(1);
    expect(Number(over.headers['retry-after'])).toBeLessThanOrEqual(20);
    expect(over.json.overLimit.message).toMatch(/at most 3 requests per minute per token/);
    expect(over.headers['x-openstack-request-id']).toMatch(/^req-/);
    // Another token, even in the same project, has its own budget.
    expect((await inst.call('GET', '/compute/v2.1/servers', dave.token)).status).toBe(200);
    // Keystone-style body on identity routes.
    const id = await inst.call('GET', '/identity/v3/projects', carol.token);
    expect(id.status).toBe(429);
    expect(id.json.error).toMatchObject({ code: 429, title: 'Too Many Requests' });

    const denied = await auditOf(carol.userId, 429);
    expect(denied).toHaveLength(1);
    expect(denied[0]).toMatchObject({ outcome: 'denied', method: 'GET' });
    expect(denied[0]?.reason).toMatch(/API rate limit exceeded/);
    await inst.stop();
  });

  it('limits API requests per source address, with or without a token', async () => {
    const inst = await instance({ rateLimits: { perToken: 0, perAddress: 2 } });
    expect((await inst.call('GET', '/identity/v3', null)).status).not.toBe(429);
    expect((await inst.call('GET', '/identity/v3', 'not-a-token')).status).not.toBe(429);
    const over = await inst.call('GET', '/identity/v3', null);
    expect(over.status).toBe(429);
    expect(over.headers['retry-after']).toBeDefined();
    await inst.stop();
  });
});

describe('token buckets', () => {
  it('refill evenly over the minute and report when the next request fits', () => {
    let now = 0;
    const b = new TokenBuckets(60, () => now);
    for (let i = 0; i < 60; i++) expect(b.take('k').ok).toBe(true);
    expect(b.take('k')).toEqual({ ok: false, retryAfterSeconds: 1, first: true });
    expect(b.take('k')).toMatchObject({ ok: false, first: false });
    expect(b.take('other').ok).toBe(true);
    now += 1000;
    expect(b.take('k').ok).toBe(true);
    expect(b.take('k')).toMatchObject({ ok: false, first: true });
  });

  it('counts IPv6 callers by /64 and IPv4-mapped addresses as IPv4', () => {
    expect(addressKey('2001:db8:1:2:aaaa::1')).toBe('2001:db8:1:2::/64');
    expect(addressKey('2001:db8:1:2::ffff')).toBe('2001:db8:1:2::/64');
    expect(addressKey('::1')).toBe('0:0:0:0::/64');
    expect(addressKey('::ffff:192.0.2.7')).toBe('192.0.2.7');
    expect(addressKey('192.0.2.7')).toBe('192.0.2.7');
  });
});

describe('rate flags', () => {
  it('default to 20 creations per hour, 600 requests per minute per token and twice that per address', () => {
    const c = makeConfig({ dataDir: '/tmp/x' });
    expect(c.serverCreateRate).toBe(20);
    expect(c.apiRate).toEqual({ perToken: 600, perAddress: 1200 });
    const d = makeConfig({ dataDir: '/tmp/x', serverCreateRate: '0', apiRate: '100', apiAddressRate: '150' });
    expect(d.serverCreateRate).toBe(0);
    expect(d.apiRate).toEqual({ perToken: 100, perAddress: 150 });
  });

  it('refuses a rate that is not a whole number, with a fix', () => {
    expect(() => makeConfig({ dataDir: '/tmp/x', apiRate: '-1' })).toThrow(/try --api-rate 600/);
    expect(() => makeConfig({ dataDir: '/tmp/x', serverCreateRate: '2.5' })).toThrow(/--server-create-rate/);
  });
});
