import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { registerZoneCommands } from '../../src/cli/commands/zones.js';
import { loadDataplaneState } from '../../src/network/dataplane-state.js';
import { startTestApi, type TestApi } from '../helpers/api.js';
import { startCliHarness } from '../helpers/cli.js';
import { dialects } from '../helpers/store.js';

const N = '/network/v2.0';
const Z = `${N}/bulwark-zones`;
const R = `${N}/bulwark-zone-rules`;

describe.each(dialects())('security zone API on %s', (dialect) => {
  let api: TestApi;
  let member: { token: string; projectId: string };
  let reader: { token: string; projectId: string };

  beforeAll(async () => {
    api = await startTestApi(dialect);
    member = await api.persona('zone-p', 'zone-member', 'member');
    reader = await api.persona('zone-p', 'zone-reader', 'reader');
  });
  afterAll(async () => api?.close());

  /** Everything a refused write could have touched. */
  const snapshot = async () => ({
    zones: await api.store.db.selectFrom('zones').selectAll().orderBy('name').execute(),
    rules: await api.store.db.selectFrom('zone_rules').selectAll().orderBy('id').execute(),
    networks: await api.store.db.selectFrom('networks').select(['id', 'zone']).orderBy('id').execute(),
    syncs: api.dataplane.reasons.length,
  });
  const audited = async (action: string, outcome: string) =>
    (
      await api.store.db
        .selectFrom('audit_events')
        .select(['action', 'outcome', 'status'])
        .where('action', '=', action)
        .where('outcome', '=', outcome)
        .execute()
    ).length;

  it('refuses every write from non-admins and changes nothing (written first: deny by default)', async () => {
    await api.call('POST', Z, undefined, { bulwark_zone: { name: 'fixture' } });
    const before = await snapshot();
    for (const who of [member, reader]) {
      const writes: [string, string, unknown][] = [
        ['POST', Z, { bulwark_zone: { name: 'sneaky' } }],
        ['PUT', `${Z}/fixture`, { bulwark_zone: { host_access: false } }],
        ['DELETE', `${Z}/fixture`, undefined],
        ['PUT', `${Z}/default`, { bulwark_zone: { description: 'x' } }],
        ['POST', R, { bulwark_zone_rule: { from_zone: 'fixture', to_zone: 'default' } }],
      ];
      for (const [m, url, body] of writes) {
        const r = await api.call(m as 'POST', url, who.token, body);
        expect(r.status, `${m} ${url}`).toBe(403);
        expect(r.json.NeutronError.type).toBe('PolicyNotAuthorized');
      }
    }
    const noToken = await api.call('POST', Z, null, { bulwark_zone: { name: 'anon' } });
    expect(noToken.status).toBe(401);
    expect(await snapshot()).toEqual(before);
    expect(await audited('network:create_zone', 'denied')).toBeGreaterThanOrEqual(3);
    // A member cannot put a network into a zone either.
    const n = await api.call('POST', `${N}/networks`, member.token, {
      network: { name: 'n', zone: 'fixture' },
    });
    expect(n.status).toBe(403);
  });

  it('lets an admin manage zones; anyone authenticated reads them', async () => {
    const c = await api.call('POST', Z, undefined, {
      bulwark_zone: { name: 'dmz', description: 'Internet-facing', host_access: true },
    });
    expect(c.status).toBe(201);
    expect(c.json.bulwark_zone).toMatchObject({
      name: 'dmz',
      description: 'Internet-facing',
      host_access: true,
    });
    expect((await api.call('POST', Z, undefined, { bulwark_zone: { name: 'internal' } })).status).toBe(201);
    const u = await api.call('POST', Z, undefined, {
      bulwark_zone: { name: 'untrusted', host_access: false },
    });
    expect(u.json.bulwark_zone.host_access).toBe(false);
    expect(api.dataplane.reasons.at(-1)).toMatch(/zone untrusted created/);

    const list = await api.call('GET', Z, reader.token);
    expect(list.status).toBe(200);
    expect(list.json.bulwark_zones.map((z: { name: string }) => z.name)).toEqual([
      'default',
      'dmz',
      'fixture',
      'internal',
      'untrusted',
    ]);
    expect(list.json.bulwark_zones[0]).toMatchObject({ name: 'default', host_access: true });
    expect((await api.call('GET', `${Z}?name=dmz`, member.token)).json.bulwark_zones).toHaveLength(1);
    expect((await api.call('GET', `${Z}/dmz`, member.token)).json.bulwark_zone.name).toBe('dmz');
    expect((await api.call('GET', Z, null)).status).toBe(401);

    const upd = await api.call('PUT', `${Z}/dmz`, undefined, { bulwark_zone: { host_access: false } });
    expect(upd.status).toBe(200);
    expect(upd.json.bulwark_zone.host_access).toBe(false);
    expect(api.dataplane.reasons.at(-1)).toMatch(/zone dmz host access changed/);
    await api.call('PUT', `${Z}/dmz`, undefined, { bulwark_zone: { host_access: true } });
    expect(await audited('network:update_zone', 'success')).toBe(2);
  });

  it('manages inter-zone rules: dmz may reach internal on tcp/443', async () => {
    const syncs = api.dataplane.reasons.length;
    const r = await api.call('POST', R, undefined, {
      bulwark_zone_rule: {
        from_zone: 'dmz',
        to_zone: 'internal',
        protocol: 'tcp',
        port_range_min: 443,
        port_range_max: 443,
        description: 'web tier to app tier',
      },
    });
    expect(r.status).toBe(201);
    expect(r.json.bulwark_zone_rule).toMatchObject({
      from_zone: 'dmz',
      to_zone: 'internal',
      protocol: 'tcp',
      port_range_min: 443,
      port_range_max: 443,
    });
    expect(api.dataplane.reasons.length).toBe(syncs + 1);
    const id = r.json.bulwark_zone_rule.id as string;
    // Protocol numbers normalise: 6 is tcp, so this is the same rule.
    const dup = await api.call('POST', R, undefined, {
      bulwark_zone_rule: {
        from_zone: 'dmz',
        to_zone: 'internal',
        protocol: 6,
        port_range_min: 443,
        port_range_max: 443,
      },
    });
    expect(dup.status).toBe(409);
    expect((await api.call('GET', `${R}/${id}`, member.token)).json.bulwark_zone_rule.id).toBe(id);
    const listed = await api.call('GET', `${R}?to_zone=internal`, reader.token);
    expect(listed.json.bulwark_zone_rules.map((x: { id: string }) => x.id)).toEqual([id]);
    expect((await api.call('GET', `${R}?from_zone=internal`, reader.token)).json.bulwark_zone_rules).toEqual(
      [],
    );

    // The stored policy is what the dataplane compiles.
    const state = await loadDataplaneState(api.store);
    expect(state.zones).toContainEqual({
      name: 'internal',
      hostAccess: true,
      rules: [{ from: 'dmz', protocol: 'tcp', portMin: 443, portMax: 443 }],
    });
    expect(state.zones).toContainEqual({ name: 'untrusted', hostAccess: false, rules: [] });

    const any = await api.call('POST', R, undefined, {
      bulwark_zone_rule: { from_zone: 'internal', to_zone: 'dmz' },
    });
    expect(any.json.bulwark_zone_rule).toMatchObject({ protocol: 'any', port_range_min: null });
    expect((await api.call('DELETE', `${R}/${any.json.bulwark_zone_rule.id}`)).status).toBe(204);
    expect((await api.call('DELETE', `${R}/${any.json.bulwark_zone_rule.id}`)).status).toBe(404);
  });

  it.each([
    ['an unknown from zone', { from_zone: 'nowhere', to_zone: 'internal' }, 400, /does not exist/],
    ['an unknown to zone', { from_zone: 'dmz', to_zone: 'nowhere' }, 400, /does not exist/],
    ['the same zone twice', { from_zone: 'dmz', to_zone: 'dmz' }, 400, /reaches itself/],
    [
      'a reversed port range',
      { from_zone: 'dmz', to_zone: 'internal', protocol: 'tcp', port_range_min: 500, port_range_max: 400 },
      400,
      /greater than/,
    ],
    [
      'port 0',
      { from_zone: 'dmz', to_zone: 'internal', protocol: 'tcp', port_range_min: 0, port_range_max: 10 },
      400,
      /1-65535/,
    ],
    [
      'ports on icmp',
      { from_zone: 'dmz', to_zone: 'internal', protocol: 'icmp', port_range_min: 1, port_range_max: 1 },
      400,
      /tcp and udp only/,
    ],
    [
      'ports without a protocol',
      { from_zone: 'dmz', to_zone: 'internal', port_range_min: 22, port_range_max: 22 },
      400,
      /tcp and udp only/,
    ],
    [
      'an unknown protocol',
      { from_zone: 'dmz', to_zone: 'internal', protocol: 'smtp' },
      400,
      /must be any, tcp, udp, icmp/,
    ],
    ['protocol 300', { from_zone: 'dmz', to_zone: 'internal', protocol: 300 }, 400, /0-255/],
    ['an unknown field', { from_zone: 'dmz', to_zone: 'internal', action: 'allow' }, 400, /./],
    [
      'a bad zone name',
      { from_zone: 'DMZ!', to_zone: 'internal' },
      400,
      /must start with a lowercase letter/,
    ],
  ])('refuses a rule with %s and changes nothing', async (_n, body, status, msg) => {
    const before = await snapshot();
    const r = await api.call('POST', R, undefined, { bulwark_zone_rule: body });
    expect(r.status).toBe(status);
    expect(r.json.NeutronError.message).toMatch(msg);
    expect(await snapshot()).toEqual(before);
  });

  it.each([
    ['a duplicate name', { name: 'dmz' }, 409, /already exists/],
    ['an uppercase name', { name: 'DMZ' }, 400, /lowercase/],
    ['a name too long', { name: `z${'a'.repeat(40)}` }, 400, /./],
    ['a string for host_access', { name: 'x1', host_access: 'no' }, 400, /./],
    ['an unknown field', { name: 'x2', allow_from: ['dmz'] }, 400, /./],
  ])('refuses a zone with %s and changes nothing', async (_n, body, status, msg) => {
    const before = await snapshot();
    const r = await api.call('POST', Z, undefined, { bulwark_zone: body });
    expect(r.status).toBe(status);
    expect(r.json.NeutronError.message).toMatch(msg);
    expect(await snapshot()).toEqual(before);
  });

  it('places networks only in existing zones, and keeps a zone in use from being deleted', async () => {
    const before = await snapshot();
    const bad = await api.call('POST', `${N}/networks`, undefined, {
      network: { name: 'x', zone: 'nowhere' },
    });
    expect(bad.status).toBe(400);
    expect(bad.json.NeutronError.message).toMatch(/does not exist/);
    expect(await snapshot()).toEqual(before);

    const n = await api.call('POST', `${N}/networks`, undefined, { network: { name: 'web', zone: 'dmz' } });
    expect(n.status).toBe(201);
    expect(n.json.network.zone).toBe('dmz');
    const netId = n.json.network.id as string;
    const move = await api.call('PUT', `${N}/networks/${netId}`, undefined, { network: { zone: 'nowhere' } });
    expect(move.status).toBe(400);
    expect((await api.call('GET', `${N}/networks/${netId}`)).json.network.zone).toBe('dmz');
    // A member sees the zone of its own networks (and may create in `default`).
    const own = await api.call('POST', `${N}/networks`, member.token, { network: { name: 'mine' } });
    expect(own.json.network.zone).toBe('default');

    const del = await api.call('DELETE', `${Z}/dmz`);
    expect(del.status).toBe(409);
    expect(del.json.NeutronError.message).toMatch(/used by 1 network/);
    expect((await api.call('GET', `${Z}/dmz`)).status).toBe(200);
    expect((await api.call('DELETE', `${Z}/default`)).status).toBe(409);

    // Move the network out; now the zone goes, and its rules with it.
    expect(
      (await api.call('PUT', `${N}/networks/${netId}`, undefined, { network: { zone: 'internal' } })).status,
    ).toBe(200);
    expect((await api.call('DELETE', `${Z}/dmz`)).status).toBe(204);
    expect(api.dataplane.reasons.at(-1)).toMatch(/zone dmz deleted/);
    expect((await api.call('GET', `${Z}/dmz`)).status).toBe(404);
    expect((await api.call('GET', `${R}?from_zone=dmz`)).json.bulwark_zone_rules).toEqual([]);
    expect((await api.call('DELETE', `${Z}/dmz`)).status).toBe(404);
    expect(
      (await api.call('PUT', `${Z}/dmz`, undefined, { bulwark_zone: { description: 'x' } })).status,
    ).toBe(404);
    expect(await audited('network:delete_zone', 'success')).toBe(1);
  });
});

describe('bulwark zone CLI (in-process, against a listening API on SQLite)', () => {
  let api: TestApi;
  let h: Awaited<ReturnType<typeof startCliHarness>>;
  beforeAll(async () => {
    api = await startTestApi('sqlite');
    h = await startCliHarness(api, registerZoneCommands);
  });
  afterAll(async () => {
    await h?.close();
    await api?.close();
  });
  const cli = (...args: string[]) => h.cli(...args);

  it('creates zones and rules, lists and shows them, and deletes them', async () => {
    const created = JSON.parse(await cli('zone', 'create', 'dmz', '--description', 'web tier', '-f', 'json'));
    expect(created).toMatchObject({ name: 'dmz', host_access: true, description: 'web tier' });
    await cli('zone', 'create', 'internal');
    expect(
      JSON.parse(await cli('zone', 'create', 'untrusted', '--no-host-access', '-f', 'json')).host_access,
    ).toBe(false);
    const rule = JSON.parse(
      await cli(
        'zone',
        'rule',
        'add',
        '--from',
        'dmz',
        '--to',
        'internal',
        '--protocol',
        'tcp',
        '--dst-port',
        '443',
        '-f',
        'json',
      ),
    );
    expect(rule).toMatchObject({
      from_zone: 'dmz',
      to_zone: 'internal',
      protocol: 'tcp',
      port_range_min: 443,
    });
    const ranged = JSON.parse(
      await cli(
        'zone',
        'rule',
        'add',
        '--from',
        'internal',
        '--to',
        'dmz',
        '--protocol',
        '17',
        '--dst-port',
        '5000:5010',
        '-f',
        'json',
      ),
    );
    expect(ranged).toMatchObject({ protocol: 'udp', port_range_min: 5000, port_range_max: 5010 });

    const list = JSON.parse(await cli('zone', 'list', '-f', 'json')) as Record<string, unknown>[];
    expect(list.find((z) => z.name === 'internal')?.reachable_from).toBe('dmz tcp/443');
    expect(list.find((z) => z.name === 'untrusted')).toMatchObject({
      host_access: false,
      reachable_from: '',
    });
    const table = await cli('zone', 'list');
    expect(table).toMatch(/\| name +\| host_access \| reachable_from/);
    const shown = JSON.parse(await cli('zone', 'show', 'dmz', '-f', 'json'));
    expect(shown.allowed_out).toEqual([`internal tcp/443 (${rule.id})`]);
    expect(shown.allowed_in).toEqual([`internal udp/5000-5010 (${ranged.id})`]);
    const rules = JSON.parse(await cli('zone', 'rule', 'list', '--to', 'internal', '-f', 'json'));
    expect(rules.map((r: { id: string }) => r.id)).toEqual([rule.id]);

    await cli('zone', 'set', 'untrusted', '--host-access');
    expect(JSON.parse(await cli('zone', 'show', 'untrusted', '-f', 'json')).host_access).toBe(true);
    await cli('zone', 'rule', 'remove', rule.id, ranged.id);
    expect(JSON.parse(await cli('zone', 'rule', 'list', '-f', 'json'))).toEqual([]);
    await cli('zone', 'delete', 'untrusted', 'internal');
    expect(
      (JSON.parse(await cli('zone', 'list', '-f', 'json')) as { name: string }[]).map((z) => z.name),
    ).toEqual(['default', 'dmz']);
  });

  it('reports refusals with the server’s reason', async () => {
    await expect(cli('zone', 'delete', 'default')).rejects.toThrow(/cannot be deleted/);
    await expect(cli('zone', 'rule', 'add', '--from', 'dmz', '--to', 'nowhere')).rejects.toThrow(
      /does not exist/,
    );
    await expect(
      cli('zone', 'rule', 'add', '--from', 'dmz', '--to', 'default', '--dst-port', 'web'),
    ).rejects.toThrow(/PORT or MIN:MAX/);
    await expect(cli('zone', 'set', 'dmz')).rejects.toThrow(/Nothing to change/);
    await expect(cli('zone', 'show', 'nowhere')).rejects.toThrow(/Could not find security zone/);
  });
});
