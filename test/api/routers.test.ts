import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadDataplaneState } from '../../src/network/dataplane-state.js';
import { startTestApi, type TestApi } from '../helpers/api.js';
import { dialects } from '../helpers/store.js';

const N = '/network/v2.0';

describe.each(dialects())('routers, external networks and subnet overlap on %s', (dialect) => {
  let api: TestApi;
  let a: { token: string; projectId: string };
  let b: { token: string; projectId: string };
  let reader: { token: string; projectId: string };
  let netA: string;
  let subA: string;
  let netA2: string;
  let subA2: string;
  let netB: string;
  let subB: string;
  let ext: string;
  let extSub: string;
  let router: string;

  const net = async (token: string, name: string, cidr: string) => {
    const n = await api.call('POST', `${N}/networks`, token, { network: { name } });
    expect(n.status).toBe(201);
    const s = await api.call('POST', `${N}/subnets`, token, {
      subnet: { network_id: n.json.network.id, ip_version: 4, cidr },
    });
    expect(s.status).toBe(201);
    return [n.json.network.id as string, s.json.subnet.id as string] as const;
  };

  beforeAll(async () => {
    api = await startTestApi(dialect);
    a = await api.persona('rt-a', 'rt-member-a', 'member');
    b = await api.persona('rt-b', 'rt-member-b', 'member');
    reader = await api.persona('rt-a', 'rt-reader-a', 'reader');
    [netA, subA] = await net(a.token, 'a1', '10.71.0.0/24');
    [netA2, subA2] = await net(a.token, 'a2', '10.72.0.0/24');
    [netB, subB] = await net(b.token, 'b1', '10.73.0.0/24');
  });
  afterAll(async () => api?.close());

  describe('overlapping subnets (one routing table)', () => {
    it('refuses a subnet overlapping another network’s, even another project’s, with 409 and a reason', async () => {
      const before = (await api.call('GET', `${N}/subnets`)).json.subnets.length;
      const n = await api.call('POST', `${N}/networks`, b.token, { network: { name: 'clash' } });
      for (const cidr of ['10.71.0.0/24', '10.71.0.128/25', '10.0.0.0/8']) {
        const r = await api.call('POST', `${N}/subnets`, b.token, {
          subnet: { network_id: n.json.network.id, ip_version: 4, cidr },
        });
        expect(r.status).toBe(409);
        expect(r.json.NeutronError.message).toMatch(/overlaps a subnet of another network/);
        expect(r.json.NeutronError.message).toMatch(/one routing table.*choose a range/s);
        // Another project's subnet id or range is not revealed.
        expect(r.json.NeutronError.message).not.toContain(subA);
      }
      expect((await api.call('GET', `${N}/subnets`)).json.subnets.length).toBe(before);
      // A disjoint range is fine, and IPv6 ranges are checked separately.
      const ok = await api.call('POST', `${N}/subnets`, b.token, {
        subnet: { network_id: n.json.network.id, ip_version: 4, cidr: '10.74.0.0/24' },
      });
      expect(ok.status).toBe(201);
    });
  });

  describe('external networks', () => {
    it('only an admin creates one; every project sees it', async () => {
      const refused = await api.call('POST', `${N}/networks`, a.token, {
        network: { name: 'not-mine', 'router:external': true },
      });
      expect(refused.status).toBe(403);
      const n = await api.call('POST', `${N}/networks`, undefined, {
        network: { name: 'public', 'router:external': true },
      });
      expect(n.status).toBe(201);
      expect(n.json.network['router:external']).toBe(true);
      ext = n.json.network.id;
      const s = await api.call('POST', `${N}/subnets`, undefined, {
        subnet: { network_id: ext, ip_version: 4, cidr: '203.0.113.0/24', enable_dhcp: false },
      });
      expect(s.status).toBe(201);
      extSub = s.json.subnet.id;
      const seen = await api.call('GET', `${N}/networks?name=public`, a.token);
      expect(seen.json.networks.map((x: { id: string }) => x.id)).toEqual([ext]);
      // Visible is not owned: a member cannot change it or put ports on it.
      expect((await api.call('DELETE', `${N}/networks/${ext}`, a.token)).status).toBe(403);
      expect((await api.call('POST', `${N}/ports`, a.token, { port: { network_id: ext } })).status).toBe(404);
      const flip = await api.call('PUT', `${N}/networks/${ext}`, undefined, {
        network: { 'router:external': false },
      });
      expect(flip.status).toBe(400);
    });
  });

  describe('routers', () => {
    it('a reader cannot create one; a member can', async () => {
      expect((await api.call('POST', `${N}/routers`, reader.token, { router: { name: 'R' } })).status).toBe(
        403,
      );
      const r = await api.call('POST', `${N}/routers`, a.token, { router: { name: 'R' } });
      expect(r.status).toBe(201);
      expect(r.json.router).toMatchObject({
        name: 'R',
        project_id: a.projectId,
        external_gateway_info: null,
      });
      router = r.json.router.id;
    });

    it('another project’s router does not exist for them (404), and their subnet cannot be attached', async () => {
      const url = `${N}/routers/${router}`;
      expect((await api.call('GET', url, b.token)).status).toBe(404);
      expect((await api.call('PUT', url, b.token, { router: { name: 'mine' } })).status).toBe(404);
      expect((await api.call('DELETE', url, b.token)).status).toBe(404);
      expect(
        (await api.call('PUT', `${url}/add_router_interface`, b.token, { subnet_id: subB })).status,
      ).toBe(404);
      expect((await api.call('GET', `${N}/routers`, b.token)).json.routers).toEqual([]);
      // A's router, B's subnet: not visible to A.
      expect(
        (await api.call('PUT', `${url}/add_router_interface`, a.token, { subnet_id: subB })).status,
      ).toBe(404);
      expect((await api.call('GET', url, a.token)).json.router.name).toBe('R');
    });

    it('refuses a gateway on a network that is not external (400), or unknown (404), changing nothing', async () => {
      const url = `${N}/routers/${router}`;
      const own = await api.call('PUT', url, a.token, {
        router: { name: 'renamed', external_gateway_info: { network_id: netA } },
      });
      expect(own.status).toBe(400);
      expect(own.json.NeutronError.message).toMatch(/not an external network/);
      const other = await api.call('PUT', url, a.token, {
        router: { external_gateway_info: { network_id: netB } },
      });
      expect(other.status).toBe(404);
      const snatOff = await api.call('PUT', url, a.token, {
        router: { external_gateway_info: { network_id: ext, enable_snat: false } },
      });
      expect(snatOff.status).toBe(400);
      const created = await api.call('POST', `${N}/routers`, a.token, {
        router: { name: 'bad', external_gateway_info: { network_id: netA } },
      });
      expect(created.status).toBe(400);
      const after = await api.call('GET', url, a.token);
      expect(after.json.router).toMatchObject({ name: 'R', external_gateway_info: null });
      expect((await api.call('GET', `${N}/routers?name=bad`, a.token)).json.routers).toEqual([]);
    });

    it('a member sets and clears the external gateway on a router:external network', async () => {
      const url = `${N}/routers/${router}`;
      const set = await api.call('PUT', url, a.token, {
        router: { external_gateway_info: { network_id: ext } },
      });
      expect(set.status).toBe(200);
      expect(set.json.router.external_gateway_info).toMatchObject({ network_id: ext, enable_snat: true });
      // The external network cannot go while a router uses it.
      expect((await api.call('DELETE', `${N}/networks/${ext}`)).status).toBe(409);
      const unset = await api.call('PUT', url, a.token, { router: { external_gateway_info: {} } });
      expect(unset.json.router.external_gateway_info).toBeNull();
      await api.call('PUT', url, a.token, { router: { external_gateway_info: { network_id: ext } } });
    });

    it('attaches and detaches subnets, with the conflicts Neutron has', async () => {
      const url = `${N}/routers/${router}`;
      const add = await api.call('PUT', `${url}/add_router_interface`, a.token, { subnet_id: subA });
      expect(add.status).toBe(200);
      expect(add.json).toMatchObject({ id: router, subnet_id: subA, network_id: netA });
      expect(
        (await api.call('PUT', `${url}/add_router_interface`, a.token, { subnet_id: subA })).status,
      ).toBe(409);
      expect(
        (await api.call('PUT', `${url}/add_router_interface`, a.token, { subnet_id: subA2 })).status,
      ).toBe(200);
      // The external subnet is the gateway, never an interface.
      expect(
        (await api.call('PUT', `${url}/add_router_interface`, undefined, { subnet_id: extSub })).status,
      ).toBe(400);
      expect((await api.call('PUT', `${url}/add_router_interface`, a.token, {})).status).toBe(400);
      // Busy: the subnet, its network and the router cannot be deleted.
      expect((await api.call('DELETE', `${N}/subnets/${subA}`, a.token)).status).toBe(409);
      expect((await api.call('DELETE', `${N}/networks/${netA}`, a.token)).status).toBe(409);
      expect((await api.call('DELETE', url, a.token)).status).toBe(409);

      // What the host enforces: both networks joined, and A's subnets SNATed.
      const state = await loadDataplaneState(api.store);
      const r = state.routers?.find((x) => x.id === router);
      expect(r?.networks.sort()).toEqual([netA, netA2].sort());
      expect(r?.snat?.sort()).toEqual(['10.71.0.0/24', '10.72.0.0/24']);

      const rm = await api.call('PUT', `${url}/remove_router_interface`, a.token, { subnet_id: subA });
      expect(rm.status).toBe(200);
      expect(
        (await api.call('PUT', `${url}/remove_router_interface`, a.token, { subnet_id: subA })).status,
      ).toBe(404);
      await api.call('PUT', `${url}/remove_router_interface`, a.token, { subnet_id: subA2 });
      expect(api.dataplane.reasons.some((x) => x.includes(`detached from router ${router}`))).toBe(true);
      expect((await api.call('DELETE', url, a.token)).status).toBe(204);
      expect((await api.call('GET', url, a.token)).status).toBe(404);
    });

    it('an admin router may join two projects’ networks; a member may not', async () => {
      const r2 = await api.call('POST', `${N}/routers`, a.token, { router: { name: 'R2' } });
      const url = `${N}/routers/${r2.json.router.id}`;
      expect(
        (await api.call('PUT', `${url}/add_router_interface`, a.token, { subnet_id: subA })).status,
      ).toBe(200);
      expect(
        (await api.call('PUT', `${url}/add_router_interface`, a.token, { subnet_id: subB })).status,
      ).toBe(404);
      const admin = await api.call('POST', `${N}/routers`, undefined, { router: { name: 'joint' } });
      const aurl = `${N}/routers/${admin.json.router.id}`;
      expect(
        (await api.call('PUT', `${aurl}/add_router_interface`, undefined, { subnet_id: subB })).status,
      ).toBe(200);
      await api.call('PUT', `${aurl}/remove_router_interface`, undefined, { subnet_id: subB });
      await api.call('PUT', `${url}/remove_router_interface`, a.token, { subnet_id: subA });
    });
  });
});
