/**
 * Nova's paging of server lists (docs/compute.md): `limit` capped at max_limit,
 * `marker`, and a `servers_links` next link while more servers follow; the
 * views a page holds are the same as `GET /servers/ID`'s.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { registerComputeCommands } from '../../src/cli/commands/compute.js';
import { PASSWORD, PUBLIC_URL, startTestApi, type TestApi } from '../helpers/api.js';
import { startCliHarness } from '../helpers/cli.js';
import { dialects } from '../helpers/store.js';

const MAX = 3;

describe.each(dialects())('server list paging on %s', (dialect) => {
  let api: TestApi;
  let member: { token: string; projectId: string };
  let other: { token: string };
  /** Newest first, as the list orders them. */
  let ids: string[];
  let otherId: string;

  const get = (url: string, token = member.token) => api.call('GET', url, token);
  /** Follows next links from `url` to the end; every page's servers in order. */
  const walk = async (url: string, as: 'member' | 'admin' = 'member') => {
    const token = as === 'member' ? member.token : undefined;
    const pages: { id: string; name: string }[][] = [];
    let next: string | undefined = url;
    while (next) {
      const r = await api.call('GET', next, token);
      expect(r.status).toBe(200);
      pages.push(r.json.servers);
      const link = (r.json.servers_links as { rel: string; href: string }[] | undefined)?.find(
        (l) => l.rel === 'next',
      );
      expect(link === undefined || link.href.startsWith(`${PUBLIC_URL}/compute/v2.1/`)).toBe(true);
      next = link?.href.slice(PUBLIC_URL.length);
      if (pages.length > 10) throw new Error('the next links do not end');
    }
    return pages;
  };

  beforeAll(async () => {
    api = await startTestApi(dialect, { maxListLimit: MAX });
    member = await api.persona('list-a', 'list-member', 'member');
    other = await api.persona('list-b', 'list-other', 'member');
    const { flavorId, imageId } = await api.bootable(member.token, 'list');
    for (let i = 0; i < 5; i++) {
      const r = await api.call('POST', '/compute/v2.1/servers', member.token, {
        server: { name: `vm-${i}`, imageRef: imageId, flavorRef: flavorId, networks: 'none' },
      });
      expect(r.status).toBe(202);
    }
    const b = await api.bootable(other.token, 'list-other');
    const o = await api.call('POST', '/compute/v2.1/servers', other.token, {
      server: { name: 'theirs', imageRef: b.imageId, flavorRef: b.flavorId, networks: 'none' },
    });
    otherId = o.json.server.id;
    await api.platform.compute.servers.settled();
    // Two pairs made in the same millisecond: the id orders them, and no page loses or repeats one.
    const rows = await api.store.db
      .selectFrom('servers')
      .select(['id', 'created_at'])
      .where('project_id', '=', member.projectId)
      .execute();
    const at = rows[0]?.created_at as string;
    await api.store.db
      .updateTable('servers')
      .set({ created_at: at })
      .where('project_id', '=', member.projectId)
      .execute();
    ids = rows.map((r) => r.id).sort((a, b) => (a < b ? 1 : -1));
  });
  afterAll(async () => api?.close());

  it('pages detail and index lists by max_limit, newest first, with next links to the end', async () => {
    for (const path of ['/compute/v2.1/servers/detail', '/compute/v2.1/servers']) {
      const pages = await walk(path);
      expect(pages.map((p) => p.length)).toEqual([3, 2]);
      expect(pages.flat().map((s) => s.id)).toEqual(ids);
    }
    const first = await get('/compute/v2.1/servers/detail');
    expect(first.json.servers_links).toEqual([
      {
        rel: 'next',
        href: `${PUBLIC_URL}/compute/v2.1/servers/detail?limit=3&marker=${ids[2]}`,
      },
    ]);
  });

  it('takes a smaller limit, caps a larger one, and answers limit=0 with nothing', async () => {
    expect((await walk('/compute/v2.1/servers/detail?limit=2')).map((p) => p.length)).toEqual([2, 2, 1]);
    const capped = await get('/compute/v2.1/servers/detail?limit=5000');
    expect(capped.json.servers.map((s: { id: string }) => s.id)).toEqual(ids.slice(0, 3));
    const none = await get('/compute/v2.1/servers/detail?limit=0');
    expect(none.json).toEqual({ servers: [] });
    // The last page has no link.
    const last = await get(`/compute/v2.1/servers/detail?marker=${ids[2]}`);
    expect(last.json.servers.map((s: { id: string }) => s.id)).toEqual(ids.slice(3));
    expect(last.json).not.toHaveProperty('servers_links');
  });

  it('keeps the filters in the next link', async () => {
    await api.store.db
      .updateTable('servers')
      .set({ status: 'SHUTOFF' })
      .where('id', 'in', [ids[0] as string, ids[1] as string, ids[4] as string])
      .execute();
    const pages = await walk('/compute/v2.1/servers?status=SHUTOFF&limit=2');
    expect(pages.flat().map((s) => s.id)).toEqual([ids[0], ids[1], ids[4]]);
    const first = await get('/compute/v2.1/servers?status=SHUTOFF&limit=2');
    expect(first.json.servers_links[0].href).toBe(
      `${PUBLIC_URL}/compute/v2.1/servers?status=SHUTOFF&limit=2&marker=${ids[1]}`,
    );
  });

  it("refuses a marker it cannot list (unknown, or another project's server) with 400, leaking nothing", async () => {
    for (const marker of ['no-such-server', otherId]) {
      const r = await get(`/compute/v2.1/servers/detail?marker=${marker}`);
      expect(r.status).toBe(400);
      expect(r.json.badRequest.message).toBe(`marker [${marker}] not found`);
    }
    const theirs = await get(`/compute/v2.1/servers/detail?marker=${ids[0]}`, other.token);
    expect(theirs.status).toBe(400);
    expect((await get('/compute/v2.1/servers/detail?limit=-1')).status).toBe(400);
  });

  it("holds in each page exactly the view GET /servers/ID answers, and the admin's across projects", async () => {
    for (const s of (await walk('/compute/v2.1/servers/detail')).flat())
      expect(s).toEqual((await get(`/compute/v2.1/servers/${s.id}`)).json.server);
    const all = await walk('/compute/v2.1/servers/detail?all_tenants=1', 'admin');
    const seen = all.flat().map((s) => s.id);
    expect(seen).toHaveLength(6);
    expect(seen).toContain(otherId);
    for (const s of all.flat() as Record<string, unknown>[]) {
      expect(s).toHaveProperty('OS-EXT-SRV-ATTR:host');
      expect(s).toEqual((await api.call('GET', `/compute/v2.1/servers/${s.id}`)).json.server);
    }
  });
});

describe('bulwark server list and delete --wait over pages (SQLite)', () => {
  let api: TestApi;
  let h: Awaited<ReturnType<typeof startCliHarness>>;

  beforeAll(async () => {
    api = await startTestApi('sqlite', { maxListLimit: 2 });
    const member = await api.persona('pcli', 'pcli-member', 'member');
    const { flavorId, imageId } = await api.bootable(member.token, 'pcli');
    for (let i = 0; i < 5; i++)
      await api.call('POST', '/compute/v2.1/servers', member.token, {
        server: { name: `p-${i}`, imageRef: imageId, flavorRef: flavorId, networks: 'none' },
      });
    await api.platform.compute.servers.settled();
    h = await startCliHarness(api, registerComputeCommands);
    h.loginAs('pcli-member', PASSWORD, 'pcli');
  });
  afterAll(async () => {
    await h?.close();
    await api?.close();
  });

  it('lists every server, not just the first page', async () => {
    const names = ((await h.json('server', 'list')) as { name: string }[]).map((s) => s.name);
    expect(names.sort()).toEqual(['p-0', 'p-1', 'p-2', 'p-3', 'p-4']);
  });

  it('waits for a delete of a server that is not on the first page', async () => {
    // The oldest server is on the last page; --wait must see it there until it is gone.
    await h.cli('server', 'delete', 'p-0', '--wait');
    const names = ((await h.json('server', 'list')) as { name: string }[]).map((s) => s.name);
    expect(names.sort()).toEqual(['p-1', 'p-2', 'p-3', 'p-4']);
  });
});
