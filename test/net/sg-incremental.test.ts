import { execFileSync } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { applyRuleset, deleteTables } from '../../src/host/net/nft.js';
import { NftDataplane } from '../../src/host/net/nft-dataplane.js';
import {
  type CompileInput,
  compileRuleset,
  type GroupState,
  type PortState,
} from '../../src/network/compile.js';
import { loadDataplaneState, loadGroupStates } from '../../src/network/dataplane-state.js';
import { normaliseRule, type RuleInput } from '../../src/network/model.js';
import type { DataplaneSync } from '../../src/network/networks.js';
import { groupNames } from '../../src/network/sg-sets.js';
import { startTestApi, type TestApi } from '../helpers/api.js';
import { dialects } from '../helpers/store.js';
import { type Guest, guestPort, hasTools, isRoot, Topology } from './topology.js';

/**
 * A security-group rule change applied in place (NftDataplane#syncGroups)
 * must leave the kernel exactly as a full recompile of the same state would:
 * every step's `nft -j list table` (handles and counter values aside, set
 * elements in any order) is compared with a fresh full compile of that state
 * applied to a second table. Real nft, in a network namespace of its own.
 */
const canRun = isRoot() && hasTools();

/**
 * An nft that logs every run's arguments, and every line a long-lived `nft -i` session is fed
 * (one batch line is one transaction, each followed by its end marker, `describe meta mark`), then runs the real nft.
 */
const nftWrapper = (logFile: string, flags = '/nonexistent') =>
  [
    '#!/bin/sh',
    `echo "$*" >> ${logFile}`,
    'if [ "$1" = "-i" ]; then',
    // Test switches: a session that dies after the first bytes of a batch, or one that never answers.
    `  if [ -e ${flags}/session-dies ]; then head -c 20 >/dev/null; exit 1; fi`,
    `  if [ -e ${flags}/session-hangs ]; then exec sleep 60; fi`,
    // Logged before nft reads it, so a count taken after the batch's answer includes it.
    `  while IFS= read -r l; do printf '%s\\n' "$l" >> ${logFile}; printf '%s\\n' "$l"; done | nft "$@"; exit`,
    'fi',
    'exec nft "$@"',
    '',
  ].join('\n');
/** Transactions in a wrapper log: `nft -f` runs and the lines fed to a session. */
const transactions = (text: string) =>
  text.split('\n').filter((l) => /(^| )-f( |$)/.test(l) || /^(add|delete|flush) /.test(l)).length;

/** `nft -j list table inet T` without what legitimately differs: handles, counter values, element order, the name. */
function listing(netns: string, table: string): string {
  const out = execFileSync('ip', [
    'netns',
    'exec',
    netns,
    'nft',
    '-j',
    'list',
    'table',
    'inet',
    table,
  ]).toString();
  const items = (JSON.parse(out) as { nftables: Record<string, Record<string, unknown>>[] }).nftables;
  // Objects in any order (a group placed in place is listed last), rules in their chain's order.
  const ordinal = new Map<string, number>();
  const norm = items
    .filter((i) => !('metainfo' in i))
    .map((i) => {
      const [kind, body] = Object.entries(i)[0] as [string, Record<string, unknown>];
      const { handle: _h, table: _t, name, packets: _p, bytes: _b, ...rest } = body;
      if (Array.isArray(rest.elem)) rest.elem = rest.elem.map((e) => JSON.stringify(e)).sort();
      const line = JSON.stringify({ kind, name: kind === 'table' ? '' : name, ...rest });
      if (kind !== 'rule') return { key: `${kind} ${line}`, line };
      const n = ordinal.get(String(rest.chain)) ?? 0;
      ordinal.set(String(rest.chain), n + 1);
      return { key: `rule ${String(rest.chain)} ${String(n).padStart(6, '0')}`, line };
    })
    .sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  return norm.map((n) => n.line).join('\n');
}

describe.skipIf(!canRun)('security-group changes in place equal a full recompile (real nft)', () => {
  let topo: Topology;
  let g1: Guest;
  let g2: Guest;
  let dir: string;
  let dataplane: NftDataplane;
  const table = `bwinc_${Math.random().toString(16).slice(2, 8)}`;
  const ref = `${table}_ref`;
  const log = () => join(dir, 'nft.log');
  const batches = () => transactions(readFileSync(log(), 'utf8'));
  const rules = (...rs: RuleInput[]) => rs.map((r) => normaliseRule(r));
  const web: GroupState = {
    id: 'web',
    stateful: true,
    rules: rules({ direction: 'egress' }, { direction: 'egress', ethertype: 'IPv6' }),
  };
  const app: GroupState = { id: 'app', stateful: true, rules: rules({ direction: 'egress' }) };
  const udp: GroupState = { id: 'udp', stateful: false, rules: rules({ direction: 'egress' }) };
  let state: Omit<CompileInput, 'table'>;

  /** The in-place result equals the full compile of the same state. */
  async function expectSameAsFull() {
    await applyRuleset(compileRuleset({ table: ref, ...state }), { netns: topo.hv, keepCounters: false });
    try {
      expect(listing(topo.hv, table)).toBe(listing(topo.hv, ref));
    } finally {
      await deleteTables(ref, { netns: topo.hv });
    }
  }
  const change = async (group: GroupState, edit: (rs: GroupState['rules']) => GroupState['rules']) => {
    group.rules = edit(group.rules);
    const before = batches();
    await dataplane.syncGroups([group.id], 'test');
    return batches() - before;
  };
  const tcp = async (from: Guest, to: Guest, port: number) =>
    (await from.agent.call('connect', { host: to.ip, port, timeoutMs: 800 })).result;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'bulwark-sginc-'));
    const wrapper = join(dir, 'nft');
    writeFileSync(wrapper, nftWrapper(log(), dir));
    chmodSync(wrapper, 0o755);
    writeFileSync(log(), '');
    topo = await Topology.create(['10.93.0.1']);
    g1 = await topo.addGuest('i1', {
      ip: '10.93.0.11',
      prefixLen: 24,
      gateway: '10.93.0.1',
      mac: 'fa:16:3e:00:93:11',
    });
    g2 = await topo.addGuest('i2', {
      ip: '10.93.0.12',
      prefixLen: 24,
      gateway: '10.93.0.1',
      mac: 'fa:16:3e:00:93:12',
    });
    for (const p of [443, 8443]) await g2.agent.call('listenTcp', { port: p });
    const extra: PortState = {
      id: 'c0ffee00-0000-0000-0000-000000000003',
      device: 'tapinc3',
      mac: 'fa:16:3e:00:93:13',
      ips: ['10.93.0.13', 'fd93::13'],
      allowedAddressPairs: [{ ip: '10.93.9.0/24' }],
      portSecurity: true,
      groupIds: ['udp'],
    };
    state = {
      ports: [guestPort(g1, { groupIds: ['app'] }), guestPort(g2, { groupIds: ['web', 'app'] }), extra],
      groups: [web, app, udp],
    };
    dataplane = new NftDataplane({
      netns: topo.hv,
      nft: wrapper,
      table,
      load: async () => structuredClone(state),
      loadGroups: async (ids) => structuredClone(state.groups.filter((g) => ids.includes(g.id))),
      sessionTimeoutMs: 2_000,
    });
    await dataplane.sync('test setup');
  }, 60_000);

  afterAll(async () => {
    dataplane?.close();
    await topo?.destroy();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('each kind of rule change is one small batch, enforced, and equal to a full compile', async () => {
    expect(await tcp(g1, g2, 443)).toBe('timeout');
    // A port range from a prefix: the group's (address . protocol . port) set gains it.
    const add443 = rules({
      direction: 'ingress',
      protocol: 'tcp',
      port_range_min: 443,
      port_range_max: 443,
      remote_ip_prefix: '10.93.0.0/24',
    });
    expect(await change(web, (rs) => [...rs, ...add443])).toBe(1);
    await expectSameAsFull();
    expect(await tcp(g1, g2, 443)).toBe('connected');
    expect(await tcp(g1, g2, 8443)).toBe('timeout');
    const steps: RuleInput[][] = [
      // Nested prefixes with overlapping ranges: the elements are cut into disjoint boxes.
      [
        {
          direction: 'ingress',
          protocol: 'tcp',
          port_range_min: 1,
          port_range_max: 1000,
          remote_ip_prefix: '10.0.0.0/8',
        },
      ],
      [
        {
          direction: 'ingress',
          protocol: 'tcp',
          port_range_min: 400,
          port_range_max: 9000,
          remote_ip_prefix: '10.93.0.11/32',
        },
      ],
      [{ direction: 'ingress', protocol: 'udp', remote_ip_prefix: '10.93.0.11' }],
      [{ direction: 'ingress', protocol: '47' }],
      // Rules a set cannot hold: a remote group and an ICMP type/code (the group's chain is rebuilt).
      [
        {
          direction: 'ingress',
          protocol: 'tcp',
          port_range_min: 22,
          port_range_max: 22,
          remote_group_id: 'app',
        },
      ],
      [{ direction: 'ingress', protocol: 'icmp', port_range_min: 8, port_range_max: 0 }],
      [
        {
          direction: 'ingress',
          ethertype: 'IPv6',
          protocol: 'tcp',
          port_range_min: 80,
          port_range_max: 80,
          remote_ip_prefix: 'fd00::/8',
        },
      ],
      [{ direction: 'egress', protocol: 'udp', port_range_min: 53, port_range_max: 53 }],
    ];
    for (const s of steps) {
      expect(await change(web, (rs) => [...rs, ...rules(...s)])).toBe(1);
      await expectSameAsFull();
    }
    expect(await tcp(g1, g2, 8443)).toBe('connected');
    // Deletes, one at a time, back to the start (the 400-9000 range goes: 8443 is closed again).
    const keyOf = (r: GroupState['rules'][number]) => JSON.stringify(r);
    const added = [...add443, ...steps.flatMap((s) => rules(...s))].map(keyOf);
    for (const k of [added[2], ...added.filter((x) => x !== added[2])]) {
      // At most one batch: none where another rule still covers what this one allowed (443 inside 1-1000 from 10/8).
      expect(await change(web, (rs) => rs.filter((r) => keyOf(r) !== k)), k).toBeLessThanOrEqual(1);
      await expectSameAsFull();
      if (k === added[2]) expect(await tcp(g1, g2, 8443)).toBe('timeout');
    }
    expect(await tcp(g1, g2, 443)).toBe('timeout');
    // Stateless groups and ports with address pairs and IPv6 take the same path.
    expect(
      await change(udp, (rs) => [
        ...rs,
        ...rules({ direction: 'ingress', protocol: 'udp', port_range_min: 53, port_range_max: 53 }),
      ]),
    ).toBe(1);
    await expectSameAsFull();
  });

  it('changes that arrive together are neither lost nor reordered', async () => {
    const r1 = rules({ direction: 'ingress', protocol: 'tcp', port_range_min: 5001, port_range_max: 5001 });
    const r2 = rules({
      direction: 'ingress',
      protocol: 'tcp',
      port_range_min: 5002,
      port_range_max: 5003,
      remote_ip_prefix: '192.0.2.0/24',
    });
    web.rules = [...web.rules, ...r1];
    const a = dataplane.syncGroups(['web'], 'first');
    web.rules = [...web.rules, ...r2];
    app.rules = [...app.rules, ...rules({ direction: 'ingress', protocol: 'udp' })];
    const b = dataplane.syncGroups(['web', 'app'], 'second');
    const c = dataplane.sync('a full sync in between');
    web.rules = web.rules.filter((r) => JSON.stringify(r) !== JSON.stringify(r1[0]));
    const d = dataplane.syncGroups(['web'], 'third');
    await Promise.all([a, b, c, d]);
    await expectSameAsFull();
  });

  it('a kernel table edited by hand: the in-place batch fails, the full apply heals it, nothing stays open', async () => {
    const r = rules({ direction: 'ingress', protocol: 'tcp', port_range_min: 7000, port_range_max: 7001 });
    await change(web, (rs) => [...rs, ...r]);
    // Someone removes the element behind our back; deleting the rule then cannot delete it.
    const set = groupNames.set('web', 'ingress', 4, 't');
    await topo.exec(topo.hv, 'nft', ['flush', 'set', 'inet', table, set]);
    const before = batches();
    web.rules = web.rules.filter((x) => JSON.stringify(x) !== JSON.stringify(r[0]));
    await dataplane.syncGroups(['web'], 'rule removed');
    expect(batches() - before).toBeGreaterThanOrEqual(2);
    await expectSameAsFull();
    expect(dataplane.lockedDown).toBe(false);
  });

  /** Ends the long-lived nft and waits until the dataplane has seen it go. */
  async function killSession() {
    const pid = dataplane.sessionPid;
    expect(pid).toBeDefined();
    process.kill(pid as number, 'SIGKILL');
    for (let i = 0; i < 100 && dataplane.sessionPid !== undefined; i++)
      await new Promise((r) => setTimeout(r, 20));
    expect(dataplane.sessionPid).toBeUndefined();
  }
  const fullApplies = () =>
    readFileSync(log(), 'utf8')
      .split('\n')
      .filter((l) => /^-j -f /.test(l)).length;
  const port9443 = rules({
    direction: 'ingress',
    protocol: 'tcp',
    port_range_min: 9443,
    port_range_max: 9443,
    remote_ip_prefix: '10.93.0.0/24',
  });

  it('the long-lived nft killed between batches: the next change starts a new one and stays in place', async () => {
    await g2.agent.call('listenTcp', { port: 9443 });
    // A change through the session, so one is running.
    expect(
      await change(web, (rs) => [
        ...rs,
        ...rules({ direction: 'ingress', protocol: 'tcp', port_range_min: 9000, port_range_max: 9000 }),
      ]),
    ).toBe(1);
    await killSession();
    const full = fullApplies();
    expect(await change(web, (rs) => [...rs, ...port9443])).toBe(1);
    expect(fullApplies()).toBe(full);
    expect(dataplane.sessionPid).toBeDefined();
    await expectSameAsFull();
    expect(await tcp(g1, g2, 9443)).toBe('connected');
  });

  for (const how of ['dies', 'hangs'] as const)
    it(`a long-lived nft that ${how} mid-batch fails closed: the full apply enforces the change (a revocation here)`, async () => {
      if (!web.rules.some((r) => JSON.stringify(r) === JSON.stringify(port9443[0])))
        await change(web, (rs) => [...rs, ...port9443]);
      expect(await tcp(g1, g2, 9443)).toBe('connected');
      if (dataplane.sessionPid !== undefined) await killSession();
      const flag = join(dir, `session-${how}`);
      writeFileSync(flag, '');
      try {
        const full = fullApplies();
        web.rules = web.rules.filter((r) => JSON.stringify(r) !== JSON.stringify(port9443[0]));
        await dataplane.syncGroups(['web'], 'rule removed while nft dies');
        // The batch never committed; the full apply did, and nothing is locked down or left open.
        expect(fullApplies()).toBe(full + 1);
        expect(dataplane.lockedDown).toBe(false);
        await expectSameAsFull();
        expect(await tcp(g1, g2, 9443)).toBe('timeout');
      } finally {
        rmSync(flag, { force: true });
      }
      if (dataplane.sessionPid !== undefined) await killSession();
      // Back to normal: the next change is in place again.
      expect(await change(web, (rs) => [...rs, ...port9443])).toBe(1);
      await expectSameAsFull();
    });

  it('a new group goes in, and a deleted one comes out, in place: one batch each, equal to a full compile', async () => {
    const fresh: GroupState = {
      id: 'fresh',
      stateful: true,
      // Its own members as a remote group: the batch declares its member sets before its chain names them.
      rules: rules(
        { direction: 'egress' },
        { direction: 'ingress', protocol: 'tcp', remote_group_id: 'fresh' },
      ),
    };
    state.groups.push(fresh);
    let before = batches();
    await dataplane.syncGroups(['fresh'], 'new group');
    expect(batches() - before).toBe(1);
    await expectSameAsFull();
    expect(listing(topo.hv, table)).toContain(groupNames.chain('fresh', 'ingress'));
    state.groups = state.groups.filter((g) => g.id !== 'fresh');
    before = batches();
    await dataplane.syncGroups(['fresh'], 'group deleted');
    expect(batches() - before).toBe(1);
    await expectSameAsFull();
    expect(listing(topo.hv, table)).not.toContain('fresh');
    // Made and deleted before its turn: nothing to do.
    before = batches();
    await dataplane.syncGroups(['never-applied'], 'gone already');
    expect(batches() - before).toBe(0);
  });

  it('a deleted group a rule still names: the in-place batch fails, the full apply keeps what is referenced', async () => {
    const named: GroupState = { id: 'named', stateful: true, rules: rules({ direction: 'egress' }) };
    state.groups.push(named);
    await dataplane.syncGroups(['named'], 'new group');
    app.rules = [...app.rules, ...rules({ direction: 'ingress', protocol: 'tcp', remote_group_id: 'named' })];
    await dataplane.syncGroups(['app'], 'rule naming it');
    // Deleted behind the rule's back (the API refuses this): its member set is still in use.
    state.groups = state.groups.filter((g) => g.id !== 'named');
    const before = batches();
    await dataplane.syncGroups(['named'], 'group deleted');
    expect(batches() - before).toBeGreaterThanOrEqual(2);
    await expectSameAsFull();
    expect(dataplane.lockedDown).toBe(false);
    // Tidy up with a full apply: the member sets stay until one (in-place changes touch only their groups).
    app.rules = app.rules.filter((r) => r.remoteGroupId !== 'named');
    await dataplane.sync('rule removed');
    await expectSameAsFull();
  });

  it('changes waiting for their turn go in together: one batch for many, none lost', async () => {
    const before = batches();
    const waits: Promise<void>[] = [];
    for (let port = 6001; port <= 6010; port++) {
      const g = port % 2 ? web : app;
      g.rules = [
        ...g.rules,
        ...rules({ direction: 'ingress', protocol: 'tcp', port_range_min: port, port_range_max: port }),
      ];
      waits.push(dataplane.syncGroups([g.id], `rule ${port}`));
    }
    await Promise.all(waits);
    expect(batches() - before).toBe(1);
    await expectSameAsFull();
    // A full sync waiting for its turn carries the group changes that come after it.
    const full = batches();
    const fulls = fullApplies();
    web.rules = web.rules.filter((r) => r.portRangeMin === null || r.portRangeMin < 6001);
    await Promise.all([
      dataplane.sync('full'),
      dataplane.sync('full again'),
      dataplane.syncGroups(['web'], 'x'),
    ]);
    expect(fullApplies() - fulls).toBe(1);
    // That one full apply, and the session's cache warm-up after it (one element already in force).
    expect(batches() - full).toBe(2);
    await expectSameAsFull();
  });
});

describe.skipIf(!canRun).each(dialects())(
  'through the API on %s: a rule add is one transaction; a bad rule changes nothing',
  (dialect) => {
    let api: TestApi;
    let dataplane: NftDataplane | undefined;
    let netns: string;
    let dir: string;
    const table = `bwapi_${Math.random().toString(16).slice(2, 8)}`;

    beforeAll(async () => {
      netns = `bwt-sgapi-${Math.random().toString(16).slice(2, 8)}`;
      execFileSync('ip', ['netns', 'add', netns]);
      dir = mkdtempSync(join(tmpdir(), 'bulwark-sgapi-'));
      writeFileSync(join(dir, 'nft'), nftWrapper(join(dir, 'nft.log')));
      chmodSync(join(dir, 'nft'), 0o755);
      writeFileSync(join(dir, 'nft.log'), '');
      const real: DataplaneSync = {
        sync: async (reason) => dataplane?.sync(reason),
        syncGroups: async (ids, reason) => dataplane?.syncGroups(ids, reason),
      };
      api = await startTestApi(dialect, {}, real);
      dataplane = new NftDataplane({
        netns,
        nft: join(dir, 'nft'),
        table,
        load: () => loadDataplaneState(api.store),
        loadGroups: (ids) => loadGroupStates(api.store, ids),
      });
      await dataplane.sync('test setup');
    }, 60_000);

    afterAll(async () => {
      dataplane?.close();
      await api?.close();
      if (netns) execFileSync('ip', ['netns', 'del', netns]);
      if (dir) rmSync(dir, { recursive: true, force: true });
    });

    it('adds and removes with one nft batch each; refused rules leave the kernel as it was', async () => {
      const admin = await api.login('admin', api.adminPassword, 'admin');
      const sg = await api.call('POST', '/network/v2.0/security-groups', admin, {
        security_group: { name: 'web' },
      });
      expect(sg.status).toBe(201);
      const id = sg.json.security_group.id as string;
      // nft runs and session batches (a session's start, `-i`, and its end-of-batch markers are no transaction).
      const runs = () =>
        readFileSync(join(dir, 'nft.log'), 'utf8')
          .split('\n')
          .filter((l) => l && l !== '-i' && l !== 'describe meta mark');
      // The group is new to the kernel: the first change places it (in place too).
      await api.call('POST', '/network/v2.0/security-group-rules', admin, {
        security_group_rule: {
          security_group_id: id,
          direction: 'ingress',
          protocol: 'tcp',
          port_range_min: 22,
          port_range_max: 22,
        },
      });
      const before = runs().length;
      const add = await api.call('POST', '/network/v2.0/security-group-rules', admin, {
        security_group_rule: {
          security_group_id: id,
          direction: 'ingress',
          protocol: 'tcp',
          port_range_min: 443,
          port_range_max: 443,
          remote_ip_prefix: '10.0.0.0/8',
        },
      });
      expect(add.status).toBe(201);
      // One line fed to the long-lived nft: one transaction.
      expect(runs().slice(before)).toEqual([expect.stringMatching(/^(add|delete) element inet [^\n]*$/)]);
      const kernel = () =>
        execFileSync('ip', ['netns', 'exec', netns, 'nft', 'list', 'table', 'inet', table]).toString();
      expect(kernel()).toMatch(/10\.0\.0\.0\/8 \. tcp \. 443/);
      const snapshot = kernel();
      const bad = [
        {
          security_group_id: id,
          direction: 'ingress',
          protocol: 'tcp',
          port_range_min: 0,
          port_range_max: 80,
        },
        {
          security_group_id: id,
          direction: 'ingress',
          protocol: 'tcp',
          port_range_min: 90,
          port_range_max: 80,
        },
        { security_group_id: id, direction: 'ingress', protocol: 'udp', remote_ip_prefix: '10.0.0.0/33' },
        { security_group_id: id, direction: 'sideways', protocol: 'tcp' },
        { security_group_id: id, direction: 'ingress', ethertype: 'IPv4', remote_ip_prefix: 'fd00::/8' },
        {
          security_group_id: id,
          direction: 'ingress',
          protocol: 'tcp',
          port_range_min: 443,
          port_range_max: 443,
          remote_ip_prefix: '10.0.0.0/8',
        },
      ];
      const runsBefore = runs().length;
      for (const rule of bad) {
        const res = await api.call('POST', '/network/v2.0/security-group-rules', admin, {
          security_group_rule: rule,
        });
        expect(res.status, JSON.stringify(rule)).toBeGreaterThanOrEqual(400);
        expect(res.status).toBeLessThan(500);
      }
      expect(runs().length).toBe(runsBefore);
      expect(kernel()).toBe(snapshot);
      const ruleId = add.json.security_group_rule.id as string;
      const del = await api.call('DELETE', `/network/v2.0/security-group-rules/${ruleId}`, admin);
      expect(del.status).toBe(204);
      expect(runs().slice(runsBefore)).toEqual([expect.stringMatching(/^delete element inet /)]);
      expect(kernel()).not.toMatch(/10\.0\.0\.0\/8 \. tcp \. 443/);
      // Deleting the group takes its chain out of the kernel, in one batch.
      const gone = runs().length;
      expect((await api.call('DELETE', `/network/v2.0/security-groups/${id}`, admin)).status).toBe(204);
      expect(runs().slice(gone)).toEqual([expect.stringMatching(/-j -f /)]);
      expect(kernel()).not.toContain(groupNames.chain(id, 'ingress'));
    });
  },
);
