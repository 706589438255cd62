/**
 * Server lists are rendered once per change of the store and kept
 * (src/api/rendered-cache.ts, docs/compute.md): a caller never gets another
 * project's or another role's answer, every kind of change shows in the very
 * next list, and token and policy still decide every request.
 */
import SqliteDatabase from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { PASSWORD, startTestApi, type TestApi } from '../helpers/api.js';
import { dialects } from '../helpers/store.js';

const C = '/compute/v2.1';
const N = '/network/v2.0';
type View = { id: string; name: string; status: string; metadata: Record<string, string> } & Record<
  string,
  unknown
>;

describe.each(dialects())('server list cache on %s', (dialect) => {
  let api: TestApi;
  let a: { token: string; projectId: string };
  let reader: { token: string };
  let b: { token: string; projectId: string };
  let admin: string;
  let boot: { flavorId: string; imageId: string };
  let netId: string;
  let aId: string;
  let bId: string;

  const detail = async (token: string, query = '') => {
    const r = await api.call('GET', `${C}/servers/detail${query}`, token);
    expect(r.status).toBe(200);
    return r.json.servers as View[];
  };
  const mine = async (token = a.token) => (await detail(token)).find((s) => s.id === aId) as View;
  /** Lists twice (the second answer comes from the cache where there is one), then changes, then lists. */
  const warm = async () => {
    await detail(a.token);
    await detail(a.token);
  };

  beforeAll(async () => {
    api = await startTestApi(dialect);
    a = await api.persona('cache-a', 'cache-member', 'member');
    reader = await api.persona('cache-a', 'cache-reader', 'reader');
    b = await api.persona('cache-b', 'cache-other', 'member');
    admin = await api.login('admin', api.adminPassword, 'admin');
    boot = await api.bootable(a.token, 'cache');
    const net = await api.call('POST', `${N}/networks`, a.token, { network: { name: 'cache-net' } });
    netId = net.json.network.id;
    await api.call('POST', `${N}/subnets`, a.token, {
      subnet: { network_id: netId, ip_version: 4, cidr: '10.78.0.0/24' },
    });
    const r = await api.call('POST', `${C}/servers`, a.token, {
      server: { name: 'a-vm', imageRef: boot.imageId, flavorRef: boot.flavorId, networks: [{ uuid: netId }] },
    });
    aId = r.json.server.id;
    const bb = await api.bootable(b.token, 'cache-b');
    const o = await api.call('POST', `${C}/servers`, b.token, {
      server: { name: 'b-vm', imageRef: bb.imageId, flavorRef: bb.flavorId, networks: 'none' },
    });
    bId = o.json.server.id;
    await api.platform.compute.servers.settled();
  });
  afterAll(async () => api?.close());

  it('renders a list once while nothing changes (SQLite), and every time on PostgreSQL', async () => {
    const spy = vi.spyOn(api.platform.compute.servers, 'list');
    try {
      const first = await api.app.inject({
        url: `${C}/servers/detail`,
        headers: { 'x-auth-token': a.token },
      });
      const again = await api.app.inject({
        url: `${C}/servers/detail`,
        headers: { 'x-auth-token': a.token },
      });
      expect(again.body).toBe(first.body);
      expect(again.headers['content-type']).toBe('application/json; charset=utf-8');
      expect(spy).toHaveBeenCalledTimes(dialect === 'sqlite' ? 1 : 2);
    } finally {
      spy.mockRestore();
    }
  });

  it("never gives a project another project's list, nor a role another role's view", async () => {
    await warm();
    // The same path and query string from project B, a reader of A, and an admin.
    expect((await detail(b.token)).map((s) => s.id)).toEqual([bId]);
    expect((await detail(a.token)).map((s) => s.id)).toEqual([aId]);
    const asReader = await mine(reader.token);
    expect(asReader.id).toBe(aId);
    expect(asReader['OS-EXT-SRV-ATTR:host']).toBeUndefined();
    expect((await mine())['OS-EXT-SRV-ATTR:host']).toBeUndefined();
    const all = await detail(admin, '?all_tenants=1');
    expect(all.map((s) => s.id).sort()).toEqual([aId, bId].sort());
    expect(all.every((s) => typeof s['OS-EXT-SRV-ATTR:host'] === 'string')).toBe(true);
    // The admin's answer to that query is cached now: the member asking the same is still refused.
    expect((await api.call('GET', `${C}/servers/detail?all_tenants=1`, a.token)).status).toBe(403);
    expect((await api.call('GET', `${C}/servers?all_tenants=1`, b.token)).status).toBe(403);
    const brief = await api.call('GET', `${C}/servers`, b.token);
    expect(brief.json.servers.map((s: { id: string }) => s.id)).toEqual([bId]);
  });

  it('still checks the token and the policy on every request', async () => {
    const t = await api.login('cache-member', PASSWORD, 'cache-a');
    await detail(t);
    await detail(t);
    const gone = await api.app.inject({
      method: 'DELETE',
      url: '/identity/v3/auth/tokens',
      headers: { 'x-auth-token': t, 'x-subject-token': t },
    });
    expect(gone.statusCode).toBe(204);
    expect((await api.call('GET', `${C}/servers/detail`, t)).status).toBe(401);
    expect((await api.call('GET', `${C}/servers/detail`, null)).status).toBe(401);
  });

  it('shows a rename, a metadata change and a status change from the driver in the next list', async () => {
    // No rename route (Nova's PUT /servers/ID is not offered): written through the store, as any service would.
    await warm();
    await api.store.db.updateTable('servers').set({ name: 'renamed' }).where('id', '=', aId).execute();
    expect((await mine()).name).toBe('renamed');

    await warm();
    expect(
      (await api.call('POST', `${C}/servers/${aId}/metadata`, a.token, { metadata: { tier: 'web' } })).status,
    ).toBe(200);
    expect((await mine()).metadata.tier).toBe('web');

    await warm();
    expect((await mine()).status).toBe('ACTIVE');
    // The guest powers off by itself: the driver's event, not an API call, changes the row.
    api.driver.emit(aId, 'SHUTDOWN');
    await vi.waitFor(
      async () => {
        const row = await api.store.db
          .selectFrom('servers')
          .select('vm_state')
          .where('id', '=', aId)
          .executeTakeFirstOrThrow();
        expect(row.vm_state).toBe('stopped');
      },
      { timeout: 20_000, interval: 50 },
    );
    expect((await mine()).status).toBe('SHUTOFF');
  });

  it('shows changes to networks, security groups and ports in the next list', async () => {
    await warm();
    expect(Object.keys((await mine()).addresses as object)).toEqual(['cache-net']);
    // Another table than servers: the network's name is the addresses' key.
    expect(
      (await api.call('PUT', `${N}/networks/${netId}`, a.token, { network: { name: 'renamed-net' } })).status,
    ).toBe(200);
    expect(Object.keys((await mine()).addresses as object)).toEqual(['renamed-net']);

    await warm();
    const grp = await api.call('POST', `${N}/security-groups`, a.token, {
      security_group: { name: 'cache-sg' },
    });
    expect(
      (
        await api.call('POST', `${C}/servers/${aId}/action`, a.token, {
          addSecurityGroup: { name: 'cache-sg' },
        })
      ).status,
    ).toBe(202);
    expect(((await mine()).security_groups as { name: string }[]).map((g) => g.name)).toContain('cache-sg');
    expect(grp.status).toBe(201);

    // The port goes (as when a server's NICs are released): its address leaves the view.
    await warm();
    await api.platform.compute.servers.ports.detachAll(aId, api.authOf(admin));
    expect((await mine()).addresses).toEqual({});
  });

  it('shows a create and a delete in the next list', async () => {
    await warm();
    const r = await api.call('POST', `${C}/servers`, a.token, {
      server: { name: 'second', imageRef: boot.imageId, flavorRef: boot.flavorId, networks: 'none' },
    });
    expect(r.status).toBe(202);
    const id = r.json.server.id as string;
    expect((await detail(a.token)).map((s) => s.id)).toContain(id);
    await api.platform.compute.servers.settled(id);

    await warm();
    expect((await api.call('DELETE', `${C}/servers/${id}`, a.token)).status).toBe(204);
    await api.platform.compute.servers.settled(id);
    expect((await detail(a.token)).map((s) => s.id)).not.toContain(id);
    expect(
      (await api.call('GET', `${C}/servers`, a.token)).json.servers.map((s: View) => s.id),
    ).not.toContain(id);
  });

  it.runIf(dialect === 'sqlite')(
    'shows a change made by another process on the same database file',
    async () => {
      await warm();
      const other = new SqliteDatabase(api.db.url);
      try {
        other.prepare('update servers set name = ? where id = ?').run('outside', aId);
      } finally {
        other.close();
      }
      expect((await mine()).name).toBe('outside');
      expect(
        (await api.call('GET', `${C}/servers`, a.token)).json.servers.find((s: View) => s.id === aId).name,
      ).toBe('outside');
    },
  );
});
