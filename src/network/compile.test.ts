import { describe, expect, it } from 'vitest';
import { refuses } from '../../test/helpers/refuses.js';
import {
  type CompileInput,
  compileGroupMembers,
  compileQuarantine,
  compileRuleset,
  type GroupState,
  NETWORK_MARK_MASK,
  NO_ROUTE_OUT_COUNTER,
  names,
  networkCounterName,
  type PortState,
  portCounterNames,
  ZONE_MARK_MASK,
  type ZonePolicy,
} from './compile.js';
import { normaliseRule, type RuleInput } from './model.js';
import type { Json, NftChain, NftCommand, NftMap, NftRule, NftRuleset, NftSet } from './nft-json.js';
import { PS_SETS } from './port-security.js';
import { EGRESS_OK_MARK, groupNames } from './sg-sets.js';

// ---- helpers to look into a compiled batch -------------------------------------

const adds = (rs: NftRuleset) => rs.nftables.flatMap((c) => ('add' in c ? [c.add] : []));
const chains = (rs: NftRuleset, family = 'inet'): NftChain[] =>
  adds(rs).flatMap((o) => ('chain' in o && o.chain.family === family ? [o.chain] : []));
const chain = (rs: NftRuleset, name: string, family = 'inet') =>
  chains(rs, family).find((c) => c.name === name);
const rules = (rs: NftRuleset, chainName: string, family = 'inet'): NftRule[] =>
  adds(rs).flatMap((o) =>
    'rule' in o && o.rule.family === family && o.rule.chain === chainName ? [o.rule] : [],
  );
const sets = (rs: NftRuleset, family = 'inet'): NftSet[] =>
  adds(rs).flatMap((o) => ('set' in o && o.set.family === family ? [o.set] : []));
const setNamed = (rs: NftRuleset, name: string, family = 'inet') =>
  sets(rs, family).find((s) => s.name === name);
const map = (rs: NftRuleset, name: string, family = 'inet'): NftMap | undefined =>
  adds(rs).flatMap((o) => ('map' in o && o.map.family === family && o.map.name === name ? [o.map] : []))[0];
const counters = (rs: NftRuleset, family = 'inet') =>
  adds(rs).flatMap((o) => ('counter' in o && o.counter.family === family ? [o.counter.name] : []));
const text = (x: unknown) => JSON.stringify(x);
const verdictOf = (r: NftRule) => Object.keys(r.expr[r.expr.length - 1] ?? {})[0];
/** Every value of key `key` anywhere inside `x`. */
function collect(x: Json | object, key: string, out: unknown[] = []): unknown[] {
  if (Array.isArray(x)) for (const v of x) collect(v, key, out);
  else if (x && typeof x === 'object')
    for (const [k, v] of Object.entries(x)) {
      if (k === key) out.push(v);
      collect(v as Json, key, out);
    }
  return out;
}

// ---- fixtures -------------------------------------------------------------------------

const group = (id: string, rs: RuleInput[], stateful = true): GroupState => ({
  id,
  stateful,
  rules: rs.map(normaliseRule),
});
const EGRESS: RuleInput[] = [
  { direction: 'egress', ethertype: 'IPv4' },
  { direction: 'egress', ethertype: 'IPv6' },
];
const hex = (n: number) => n.toString(16).padStart(2, '0');
const port = (n: number, groupIds: string[], extra: Partial<PortState> = {}): PortState => ({
  id: `00000000-0000-0000-0000-0000000000${hex(n)}`,
  device: `tapp${hex(n)}`,
  mac: `fa:16:3e:00:00:${hex(n)}`,
  ips: [`10.0.0.${n}`, `fd00::${n}`],
  allowedAddressPairs: [],
  portSecurity: true,
  groupIds,
  ...extra,
});
const GROUPS = [
  group('default', EGRESS),
  group('web', [
    ...EGRESS,
    {
      direction: 'ingress',
      protocol: 'tcp',
      port_range_min: 443,
      port_range_max: 443,
      remote_ip_prefix: '10.0.0.0/8',
    },
  ]),
  group('app', [
    {
      direction: 'ingress',
      protocol: 'tcp',
      port_range_min: 8080,
      port_range_max: 8080,
      remote_group_id: 'web',
    },
  ]),
  group('sl', [{ direction: 'ingress', protocol: 'udp', port_range_min: 53 }], false),
];
const compile = (ports: PortState[], extra: Partial<CompileInput> = {}) =>
  compileRuleset({ table: 'bulwark', ports, groups: GROUPS, ...extra });

describe('compileRuleset: layout', () => {
  const p1 = port(1, ['web']);
  const rs = compile([p1, port(2, ['default'])]);

  it('builds an inet and an arp table with accept-policy base chains on the right hooks', () => {
    const tables = adds(rs).flatMap((o) => ('table' in o ? [o.table] : []));
    expect(tables).toEqual([
      { family: 'inet', name: 'bulwark' },
      { family: 'arp', name: 'bulwark' },
    ]);
    expect(chain(rs, 'prerouting')).toMatchObject({ hook: 'prerouting', prio: -300, policy: 'accept' });
    expect(chain(rs, 'forward')).toMatchObject({ hook: 'forward', prio: 0, policy: 'accept' });
    expect(chain(rs, 'input')).toMatchObject({ hook: 'input' });
    expect(chain(rs, 'output')).toMatchObject({ hook: 'output' });
    expect(chain(rs, 'input', 'arp')).toMatchObject({ hook: 'input' });
  });

  it('never rejects: every refusal is a silent drop', () => {
    expect(text(rs)).not.toContain('reject');
  });

  it('dispatches per port through verdict maps, so base chains do not grow with ports', () => {
    const dispatch = map(rs, 'out_dispatch');
    expect(dispatch).toMatchObject({ type: 'ifname', map: 'verdict' });
    expect(dispatch?.elem).toContainEqual([p1.device, { jump: { target: names.egressChain(p1.id) } }]);
    expect(map(rs, 'in_dispatch')?.elem).toContainEqual([
      p1.device,
      { jump: { target: names.ingressChain(p1.id) } },
    ]);
    expect(rules(rs, 'forward').map((r) => text(r.expr))).toContain(
      text([{ vmap: { key: { meta: { key: 'iifname' } }, data: '@out_dispatch' } }]),
    );
    const big = compile(Array.from({ length: 60 }, (_, i) => port(i + 1, ['web'])));
    for (const base of ['prerouting', 'forward', 'input', 'output'])
      expect(rules(big, base).length).toBe(rules(rs, base).length);
  });

  it('declares every counter and chain it references', () => {
    for (const family of ['inet', 'arp']) {
      const declared = new Set(counters(rs, family));
      const names = new Set(chains(rs, family).map((c) => c.name));
      const rulesOf = adds(rs).flatMap((o) => ('rule' in o && o.rule.family === family ? [o.rule] : []));
      for (const used of collect(rulesOf, 'counter'))
        if (typeof used === 'string') expect(declared).toContain(used);
      const targets = collect(
        adds(rs).filter((o) => text(o).includes(`"family":"${family}"`)),
        'target',
      );
      for (const t of targets) expect(names).toContain(t);
    }
  });

  it('is deterministic', () => {
    expect(text(compile([p1, port(2, ['default'])]))).toBe(text(rs));
  });
});

describe('compileRuleset: security groups', () => {
  it('denies by default: a port without groups has only drops', () => {
    const p = port(3, []);
    const rs = compile([p]);
    const inn = rules(rs, names.ingressChain(p.id));
    const out = rules(rs, names.egressChain(p.id));
    expect(inn.filter((r) => verdictOf(r) === 'accept').map((r) => text(r.expr))).toEqual([
      // Only the stateful reply rule: nothing new gets in.
      text([
        { match: { op: 'in', left: { ct: { key: 'state' } }, right: ['established', 'related'] } },
        { accept: null },
      ]),
    ]);
    expect(out.filter((r) => verdictOf(r) === 'return')).toHaveLength(1);
    expect(inn.at(-1)?.expr).toEqual([{ counter: portCounterNames(p.id).ingress }, { drop: null }]);
    expect(out.at(-1)?.expr).toEqual([{ counter: portCounterNames(p.id).egress }, { drop: null }]);
  });

  it('stateful: replies pass, invalid is dropped, before the groups’ allows', () => {
    const p = port(1, ['web']);
    const inn = rules(compile([p]), names.ingressChain(p.id)).map((r) => text(r.expr));
    expect(inn[0]).toContain('"established","related"');
    expect(inn[1]).toContain('"invalid"');
    expect(inn[2]).toBe(text([{ jump: { target: groupNames.chain('web', 'ingress') } }]));
  });

  it('the spec rule "tcp dport 443 from 10.0.0.0/8" is one element of the group’s set, looked up once', () => {
    const p = port(1, ['web']);
    const rs = compile([p]);
    const tset = groupNames.set('web', 'ingress', 4, 't');
    expect(setNamed(rs, tset)).toMatchObject({
      type: ['ipv4_addr', 'inet_proto', 'inet_service'],
      flags: ['interval'],
      elem: [{ concat: [{ prefix: { addr: '10.0.0.0', len: 8 } }, 6, 443] }],
    });
    expect(rules(rs, groupNames.chain('web', 'ingress')).map((r) => r.expr)).toEqual([
      [
        {
          match: {
            op: '==',
            left: {
              concat: [
                { payload: { protocol: 'ip', field: 'saddr' } },
                { meta: { key: 'l4proto' } },
                { payload: { protocol: 'th', field: 'dport' } },
              ],
            },
            right: `@${tset}`,
          },
        },
        { accept: null },
      ],
    ]);
  });

  it('shares a group’s objects among its ports: 60 ports, one chain and one set per group', () => {
    const ports = Array.from({ length: 60 }, (_, i) => port(i + 1, ['web']));
    const rs = compile(ports);
    expect(chains(rs).filter((c) => c.name === groupNames.chain('web', 'ingress'))).toHaveLength(1);
    for (const p of ports)
      expect(rules(rs, names.ingressChain(p.id)).map((r) => text(r.expr))).toContain(
        text([{ jump: { target: groupNames.chain('web', 'ingress') } }]),
      );
    // Egress: the group's chain marks what it allows; the port returns on the mark, else drops.
    const out = rules(rs, names.egressChain(ports[0]?.id ?? '')).map((r) => text(r.expr));
    const j = out.indexOf(text([{ jump: { target: groupNames.chain('web', 'egress') } }]));
    expect(j).toBeGreaterThan(0);
    expect(out[j - 1]).toContain(String(~EGRESS_OK_MARK >>> 0));
    expect(out[j + 1]).toContain(String(EGRESS_OK_MARK));
    expect(out[j + 1]).toContain('"return"');
    expect(text(rules(rs, groupNames.chain('web', 'egress'))[0]?.expr)).toContain(
      text({
        mangle: {
          key: { meta: { key: 'mark' } },
          value: { '|': [{ meta: { key: 'mark' } }, EGRESS_OK_MARK] },
        },
      }),
    );
  });

  it('cuts the union of a group’s rules into disjoint boxes (ports merged, nested prefixes split)', () => {
    const g = group('a', [
      { direction: 'ingress', protocol: 'tcp', port_range_min: 22, remote_ip_prefix: '10.0.0.0/8' },
      {
        direction: 'ingress',
        protocol: 'tcp',
        port_range_min: 8000,
        port_range_max: 8080,
        remote_ip_prefix: '10.0.0.0/8',
      },
      {
        direction: 'ingress',
        protocol: 'tcp',
        port_range_min: 8050,
        port_range_max: 8090,
        remote_ip_prefix: '10.0.0.0/8',
      },
      { direction: 'ingress', protocol: 'tcp', port_range_min: 80, remote_ip_prefix: '10.1.0.0/16' },
      { direction: 'ingress', protocol: 'udp', port_range_min: 53, remote_ip_prefix: '192.168.0.0/16' },
      { direction: 'ingress', protocol: 'udp', port_range_min: 53, remote_ip_prefix: '192.168.1.0/24' },
      { direction: 'ingress', protocol: 'icmp', port_range_min: 8 },
      { direction: 'ingress', protocol: 'icmp', port_range_min: 0 },
      { direction: 'ingress', protocol: 'icmp', port_range_min: 3, port_range_max: 4 },
    ]);
    const p = { ...port(1, ['a']), ips: ['10.0.0.1'] };
    const rs = compileRuleset({ table: 'bulwark', ports: [p], groups: [g] });
    const pfx = (addr: string, len: number) => ({ prefix: { addr, len } });
    const ports = (...xs: unknown[]) => xs;
    expect(setNamed(rs, groupNames.set('a', 'ingress', 4, 't'))?.elem).toEqual([
      // 10.0.0.0/8 minus 10.1.0.0/16: 22 and 8000-8090; inside 10.1.0.0/16 also 80.
      ...ports(22, { range: [8000, 8090] }).map((x) => ({ concat: [pfx('10.0.0.0', 16), 6, x] })),
      ...ports(22, 80, { range: [8000, 8090] }).map((x) => ({ concat: [pfx('10.1.0.0', 16), 6, x] })),
      ...ports(22, { range: [8000, 8090] }).map((x) => ({
        concat: [{ range: ['10.2.0.0', '10.255.255.255'] }, 6, x],
      })),
      // 192.168.1.0/24 lies inside 192.168.0.0/16 with the same port: it disappears.
      { concat: [pfx('192.168.0.0', 16), 17, 53] },
    ]);
    // ICMP types and codes stay rules in the group's chain (sets hold address, protocol and port).
    const icmp = rules(rs, groupNames.chain('a', 'ingress')).filter((r) => text(r.expr).includes('"icmp"'));
    expect(icmp.map((r) => text(r.expr))).toEqual([
      expect.stringContaining(text({ set: [0, 8] })),
      expect.stringMatching(/"field":"type"}},"right":3}.*"field":"code"}},"right":4}/),
    ]);
  });

  it('edge cases: 1-65535 is the whole protocol, protocol numbers, IPv6, overlapping CIDRs, empty groups', () => {
    const g = group('edge', [
      { direction: 'ingress', protocol: 'tcp', port_range_min: 1, port_range_max: 65535 },
      { direction: 'ingress', protocol: '132', port_range_min: 9000, port_range_max: 9000 },
      { direction: 'ingress', protocol: '47' },
      {
        direction: 'ingress',
        ethertype: 'IPv6',
        protocol: 'udp',
        port_range_min: 53,
        remote_ip_prefix: 'fd00:1::/64',
      },
      { direction: 'ingress', ethertype: 'IPv6', protocol: 'icmp', port_range_min: 128 },
      { direction: 'ingress', protocol: 'udp', port_range_min: 123, remote_ip_prefix: '10.0.0.0/8' },
      { direction: 'ingress', protocol: 'udp', port_range_min: 123, remote_ip_prefix: '10.1.0.0/16' },
      { direction: 'ingress', protocol: 'udp', port_range_min: 123, remote_ip_prefix: '10.1.2.3/32' },
      { direction: 'ingress' },
      { direction: 'ingress', remote_ip_prefix: '10.9.0.0/16' },
    ]);
    const empty = group('empty', []);
    const p = port(1, ['edge', 'empty']);
    const rs = compileRuleset({ table: 'bulwark', ports: [p], groups: [g, empty] });
    const elems = (fam: 4 | 6, kind: 'p' | 't') =>
      setNamed(rs, groupNames.set('edge', 'ingress', fam, kind))?.elem;
    const ANY4 = { prefix: { addr: '0.0.0.0', len: 0 } };
    // Any protocol from anywhere covers 10.9.0.0/16's any protocol; whole protocols (tcp, 47) keep their own boxes.
    expect(elems(4, 'p')).toEqual([{ concat: [ANY4, { range: [0, 255] }] }]);
    expect(elems(4, 't')).toEqual([
      { concat: [{ prefix: { addr: '10.0.0.0', len: 8 } }, 17, 123] },
      { concat: [ANY4, 132, 9000] },
    ]);
    expect(elems(6, 't')).toEqual([{ concat: [{ prefix: { addr: 'fd00:1::', len: 64 } }, 17, 53] }]);
    expect(text(rules(rs, groupNames.chain('edge', 'ingress')))).toContain('"icmpv6"');
    // The port jumps to both groups; the empty group's chain and sets are empty.
    expect(rules(rs, names.ingressChain(p.id)).filter((r) => text(r.expr).includes('"jump"'))).toHaveLength(
      2,
    );
    expect(rules(rs, groupNames.chain('empty', 'ingress'))).toHaveLength(0);
    expect(rules(rs, groupNames.chain('empty', 'egress'))).toHaveLength(0);
    expect(setNamed(rs, groupNames.set('empty', 'ingress', 4, 't'))?.elem).toBeUndefined();
    // Without the catch-alls, tcp 1-65535 is the whole protocol: an (address . protocol) element.
    const g2 = group('edge2', [
      { direction: 'ingress', protocol: 'tcp', port_range_min: 1, port_range_max: 65535 },
    ]);
    const rs2 = compileRuleset({ table: 'bulwark', ports: [port(2, ['edge2'])], groups: [g2] });
    expect(setNamed(rs2, groupNames.set('edge2', 'ingress', 4, 'p'))?.elem).toEqual([{ concat: [ANY4, 6] }]);
    expect(setNamed(rs2, groupNames.set('edge2', 'ingress', 4, 't'))?.elem).toBeUndefined();
  });

  it('remote groups match a named set per group and family (members incl. address pairs), never per member', () => {
    const members = Array.from({ length: 40 }, (_, i) =>
      port(i + 10, ['web'], {
        allowedAddressPairs: i === 0 ? [{ ip: '10.9.0.0/24' }, { ip: 'fd09::/64' }] : [],
      }),
    );
    const server = port(1, ['app']);
    const rs = compile([server, ...members]);
    const v4 = setNamed(rs, names.groupSet('web', 4));
    expect(v4).toMatchObject({ type: 'ipv4_addr', flags: ['interval'] });
    expect(v4?.elem).toHaveLength(41);
    expect(v4?.elem).toContainEqual({ prefix: { addr: '10.9.0.0', len: 24 } });
    expect(setNamed(rs, names.groupSet('web', 6))?.elem).toContainEqual({
      prefix: { addr: 'fd09::', len: 64 },
    });
    const allows = rules(rs, groupNames.chain('app', 'ingress'));
    expect(allows).toHaveLength(1);
    expect(text(allows[0]?.expr)).toContain(`"@${names.groupSet('web', 4)}"`);
    // Same rule count with one member.
    const small = compile([server, port(10, ['web'])]);
    expect(rules(small, groupNames.chain('app', 'ingress'))).toHaveLength(allows.length);
  });

  it('replaces a group’s members in place with a flush and an add in one batch', () => {
    const cmds = compileGroupMembers('bulwark', 'web', ['10.0.0.7', '10.0.0.0/24', 'fd00::7']);
    expect(cmds).toEqual<NftCommand[]>([
      { flush: { set: { family: 'inet', table: 'bulwark', name: 'sg_web_v4' } } },
      {
        add: {
          element: {
            family: 'inet',
            table: 'bulwark',
            name: 'sg_web_v4',
            elem: [{ prefix: { addr: '10.0.0.0', len: 24 } }],
          },
        },
      },
      { flush: { set: { family: 'inet', table: 'bulwark', name: 'sg_web_v6' } } },
      { add: { element: { family: 'inet', table: 'bulwark', name: 'sg_web_v6', elem: ['fd00::7'] } } },
    ]);
  });

  it('stateless groups: no conntrack matches in their chains, and notrack only where no stateful port is involved', () => {
    const sl = port(5, ['sl']);
    const rs = compile([sl, port(1, ['web'])]);
    expect(text(rules(rs, names.ingressChain(sl.id)))).not.toContain('"ct"');
    expect(text(rules(rs, names.egressChain(sl.id)))).not.toContain('"ct"');
    const sel = rules(rs, 'notrack_select').map((r) => verdictOf(r));
    expect(sel).toEqual(['return', 'return', 'return', 'notrack', 'notrack', 'notrack']);
    expect(setNamed(rs, 'stateless_v4')?.elem).toEqual(['10.0.0.5']);
    expect(chain(rs, 'output_raw')).toMatchObject({ hook: 'output', prio: -300 });
    // Without stateless ports nothing of this is emitted.
    expect(chain(compile([port(1, ['web'])]), 'notrack_select')).toBeUndefined();
  });
});

describe('compileRuleset: port security, zones, quarantine', () => {
  it('anti-spoofing: own MAC and IPs (plus pairs) only, no DHCP server, no router advertisements', () => {
    const p = port(1, ['web'], { allowedAddressPairs: [{ ip: '10.5.0.0/24', mac: 'fa:16:3e:00:00:99' }] });
    const rs = compile([p]);
    const pre = rules(rs, names.preChain(p.id)).map((r) => text(r.expr));
    expect(pre[0]).toContain(text({ set: ['fa:16:3e:00:00:01', 'fa:16:3e:00:00:99'] }));
    // Sources live in shared sets keyed by device (no anonymous set per port): own IP and the pair's prefix.
    expect(pre.find((r) => r.includes(`"@${PS_SETS.srcV4}"`))).toContain('"!="');
    const dev = (elem: unknown) => ({ concat: [p.device, ...(elem as unknown[])] });
    expect(setNamed(rs, PS_SETS.srcV4)).toMatchObject({
      type: ['ifname', 'ether_addr', 'ipv4_addr'],
      flags: ['interval'],
      elem: [
        dev(['fa:16:3e:00:00:01', '10.0.0.1']),
        dev(['fa:16:3e:00:00:99', { prefix: { addr: '10.5.0.0', len: 24 } }]),
      ],
    });
    expect(pre.some((r) => r.includes(`"@${PS_SETS.serverPorts}"`) && r.endsWith('{"drop":null}]'))).toBe(
      true,
    );
    expect(setNamed(rs, PS_SETS.serverPorts)?.elem).toEqual([67, 547]);
    expect(pre.some((r) => r.includes(`"@${PS_SETS.raTypes}"`) && r.endsWith('{"drop":null}]'))).toBe(true);
    // EUI-64 link-local of the port MAC is a valid IPv6 source.
    expect(setNamed(rs, PS_SETS.srcV6)?.elem).toContainEqual(
      dev(['fa:16:3e:00:00:01', 'fe80::f816:3eff:fe00:1']),
    );
    // ARP: sender must be the port's (MAC . IP); 0.0.0.0 probes allowed.
    const arp = rules(rs, names.arpChain(p.id), 'arp').map((r) => text(r.expr));
    expect(arp.some((r) => r.includes(`"@${PS_SETS.arpSrc}"`) && r.endsWith('{"return":null}]'))).toBe(true);
    expect(setNamed(rs, PS_SETS.arpSrc, 'arp')?.elem).toEqual([
      dev(['fa:16:3e:00:00:01', '0.0.0.0']),
      dev(['fa:16:3e:00:00:01', '10.0.0.1']),
      dev(['fa:16:3e:00:00:99', '0.0.0.0']),
      dev(['fa:16:3e:00:00:99', { prefix: { addr: '10.5.0.0', len: 24 } }]),
    ]);
    // Per port, anonymous sets only where a port has more than one: its MACs, its ND targets (two each here).
    expect(collect(rules(rs, names.preChain(p.id)), 'set')).toHaveLength(2);
    const lone = compile([{ ...port(2, ['web']), ips: ['10.0.0.2'] }]);
    expect(collect(rules(lone, names.preChain(port(2, []).id)), 'set')).toHaveLength(0);
    expect(arp.at(-1)).toBe(text([{ counter: portCounterNames(p.id).arp }, { drop: null }]));
    expect(map(rs, 'pre_dispatch')?.elem).toContainEqual([
      p.device,
      { jump: { target: names.preChain(p.id) } },
    ]);
  });

  it('port security off: no anti-spoofing, everything allowed, and groups are refused', () => {
    const p = port(1, [], { portSecurity: false });
    const rs = compile([p]);
    expect(chain(rs, names.preChain(p.id))).toBeUndefined();
    expect(rules(rs, names.ingressChain(p.id)).map((r) => verdictOf(r))).toEqual(['accept']);
    refuses(() => compile([port(1, ['web'], { portSecurity: false })]), /port security is disabled/);
  });

  it('zones: isolation rules come first in ingress, before established; egress tags the sender’s zone', () => {
    const a = port(1, ['web'], { zone: 'dmz' });
    const b = port(2, ['web'], { zone: 'internal' });
    const rs = compile([a, b], { zones: [{ name: 'internal', allowFrom: ['dmz'] }] });
    const inB = rules(rs, names.ingressChain(b.id));
    expect(inB.slice(0, 3).every((r) => text(r.expr).includes(portCounterNames(b.id).zone))).toBe(true);
    expect(text(inB[3]?.expr)).toContain('established');
    // dmz=1, internal=2 (sorted), marks in bits 16-27; internal takes anything from itself and from dmz.
    expect(text(inB[0]?.expr)).toContain('"@zone_in_2"');
    const ANY = [{ range: [0, 255] }, { range: [0, 65535] }];
    expect(setNamed(rs, 'zone_in_2')?.elem).toEqual([
      { concat: [0x10000, ...ANY] },
      { concat: [0x20000, ...ANY] },
    ]);
    // dmz takes new connections from itself only, and replies from internal (it may connect there).
    expect(setNamed(rs, 'zone_in_1')?.elem).toEqual([{ concat: [0x10000, ...ANY] }]);
    expect(setNamed(rs, 'zone_reply_1')?.elem).toEqual([
      { concat: [0x10000, ...ANY] },
      { concat: [0x20000, ...ANY] },
    ]);
    expect(setNamed(rs, 'zone_reply_2')?.elem).toEqual([{ concat: [0x20000, ...ANY] }]);
    expect(text(rules(rs, names.egressChain(a.id))[0]?.expr)).toContain('"mangle"');
    // One zone only: no zone rules or marks at all.
    const one = text(compile([port(1, ['web']), port(2, ['web'])]));
    expect(one).not.toContain('@zone_in_');
    expect(one).not.toContain(String(~ZONE_MARK_MASK >>> 0));
    refuses(() => compile([port(1, ['web'], { zone: 'Bad Zone' })]), /not a valid zone/);
  });

  it('zones: protocol/port allows become set elements, not rules; replies are keyed by source port', () => {
    const a = port(1, ['web'], { zone: 'dmz' });
    const b = port(2, ['web'], { zone: 'internal' });
    const c = port(3, ['web'], { zone: 'untrusted' });
    const many = Array.from({ length: 50 }, (_, i) => ({
      from: 'dmz',
      protocol: 'udp',
      portMin: 2000 + i * 2,
      portMax: 2000 + i * 2,
    }));
    const zones = [
      {
        name: 'internal',
        rules: [
          { from: 'dmz', protocol: 'tcp', portMin: 443, portMax: 443 },
          // Overlapping and adjacent ranges merge; the kernel refuses overlapping elements.
          { from: 'dmz', protocol: 6, portMin: 440, portMax: 444 },
          { from: 'dmz', protocol: 'tcp', portMin: 445, portMax: 445 },
          { from: 'dmz', protocol: 'icmp' },
        ],
      },
      { name: 'untrusted', hostAccess: false },
    ];
    const rs = compile([a, b, c], { zones });
    const ANYPORT = { range: [0, 65535] };
    expect(setNamed(rs, 'zone_in_2')?.elem).toEqual([
      { concat: [0x10000, 1, ANYPORT] },
      { concat: [0x10000, 6, { range: [440, 445] }] },
      { concat: [0x10000, 58, ANYPORT] },
      { concat: [0x20000, { range: [0, 255] }, ANYPORT] },
    ]);
    expect(setNamed(rs, 'zone_reply_1')?.elem).toContainEqual({
      concat: [0x20000, 6, { range: [440, 445] }],
    });
    expect(setNamed(rs, 'zone_in_3')?.elem).toEqual([{ concat: [0x30000, { range: [0, 255] }, ANYPORT] }]);
    expect(setNamed(rs, 'zone_reply_3')?.elem).toEqual([{ concat: [0x30000, { range: [0, 255] }, ANYPORT] }]);
    expect(setNamed(rs, 'zone_in_2')?.type).toEqual(['mark', 'inet_proto', 'inet_service']);
    // Per-packet cost does not grow with the rules: the same three zone rules per port with 50 more allows.
    const more = compile([a, b, c], {
      zones: [{ ...(zones[0] as ZonePolicy), rules: [...(zones[0]?.rules ?? []), ...many] }],
    });
    const zoneRules = (r: typeof rs) =>
      rules(r, names.ingressChain(b.id)).filter((x) => text(x.expr).includes(portCounterNames(b.id).zone));
    expect(zoneRules(more)).toHaveLength(3);
    expect(zoneRules(rs)).toHaveLength(3);
    // The stateless/invalid rule needs neither direction to match.
    const last = text(zoneRules(rs)[2]?.expr);
    expect(last).toContain('"@zone_in_2"');
    expect(last).toContain('"@zone_reply_2"');
    expect(last).toContain('untracked');
    expect(last).toContain('invalid');
  });

  it('zones: a zone without host access reaches the host for DHCP and neighbour discovery only', () => {
    const a = port(1, ['web'], { zone: 'untrusted' });
    const b = port(2, ['web'], { zone: 'internal' });
    const rs = compile([a, b], { zones: [{ name: 'untrusted', hostAccess: false }] });
    expect(setNamed(rs, 'zone_no_host')?.elem).toEqual([a.device]);
    const g2h = rules(rs, 'guest_to_host').map((r) => text(r.expr));
    const noHost = g2h.findIndex((r) => r.includes('@zone_no_host'));
    expect(g2h[noHost]).toMatch(/host_input.*"drop"/);
    // Before it: exactly DHCP, DHCPv6 and ND; after it the egress dispatch and host services.
    expect(noHost).toBe(3);
    expect(g2h.slice(0, 2).every((r) => r.includes('"udp"'))).toBe(true);
    expect(g2h[2]).toContain('nd-neighbor-solicit');
    expect(g2h.slice(noHost).findIndex((r) => r.includes('out_dispatch'))).toBeGreaterThan(0);
    // Host access by default, and no set when every zone has it.
    expect(setNamed(compile([a, b]), 'zone_no_host')).toBeUndefined();
  });

  it('host services: by default a guest reaches the host for DHCP, ND and ICMP echo only (no DNS, nothing listens)', () => {
    const rs = compile([port(1, ['web'])]);
    const g2h = rules(rs, 'guest_to_host').map((r) => text(r.expr));
    expect(g2h.filter((r) => r.includes('"tcp"'))).toEqual([]);
    // The only UDP the host takes from a guest is DHCP (client port 68 to server port 67) and DHCPv6.
    expect(g2h.filter((r) => r.includes('"udp"') && !/"right":6[78]\b|"right":54[67]\b/.test(r))).toEqual([]);
    expect(g2h.some((r) => r.includes('echo-request'))).toBe(true);
    // An operator may still open a host service on purpose.
    const open = compile([port(1, ['web'])], { hostServices: { tcp: [53], udp: [53], icmpEcho: false } });
    expect(rules(open, 'guest_to_host').some((r) => text(r.expr).includes('"right":53'))).toBe(true);
  });

  it('zones: refuses bad zone rules', () => {
    const a = port(1, ['web'], { zone: 'dmz' });
    const z = (r: object) => () => compile([a], { zones: [{ name: 'internal', rules: [r as never] }] });
    refuses(z({ from: 'dmz', protocol: 'tcp', portMin: 500, portMax: 400 }), /greater than/);
    refuses(z({ from: 'dmz', protocol: 'tcp', portMin: 0, portMax: 4 }), /not 1-65535/);
    refuses(z({ from: 'dmz', protocol: 'icmp', portMin: 1, portMax: 4 }), /tcp and udp only/);
    refuses(z({ from: 'dmz', protocol: 'gre' }), /must be any, tcp, udp, icmp/);
    refuses(z({ from: 'dmz', protocol: 256 }), /0-255/);
    refuses(z({ from: 'Bad', protocol: 'any' }), /not a valid zone/);
    refuses(() => compile([a], { zones: [{ name: 'x' }, { name: 'x' }] }), /two policies/);
  });

  it('quarantine: the device is in the quarantined sets both tables check first', () => {
    const p = port(1, ['web'], { quarantined: true });
    const rs = compile([p, port(2, ['web'])]);
    expect(setNamed(rs, 'quarantined')?.elem).toEqual([p.device]);
    expect(setNamed(rs, 'quarantined', 'arp')?.elem).toEqual([p.device]);
    for (const [c, fam] of [
      ['prerouting', 'inet'],
      ['forward', 'inet'],
      ['output', 'inet'],
      ['input', 'arp'],
      ['output', 'arp'],
    ] as const)
      expect(text(rules(rs, c, fam)[0]?.expr)).toContain('"@quarantined"');
    expect(compileQuarantine('bulwark', [p.device], true)).toEqual([
      { add: { element: { family: 'inet', table: 'bulwark', name: 'quarantined', elem: [p.device] } } },
      { add: { element: { family: 'arp', table: 'bulwark', name: 'quarantined', elem: [p.device] } } },
    ]);
    expect(compileQuarantine('bulwark', [p.device], false).map((c) => Object.keys(c)[0])).toEqual([
      'add',
      'delete',
      'add',
      'delete',
    ]);
    refuses(() => compileQuarantine('bulwark', ['bad name'], true), /not a valid interface/);
  });

  it('fails closed for unknown devices with a VM prefix', () => {
    const rs = compile([port(1, ['web'])], { devicePrefixes: ['tap', 'vm'] });
    const pre = rules(rs, 'prerouting').map((r) => text(r.expr));
    expect(pre.filter((r) => r.includes('unknown_device'))).toHaveLength(2);
    expect(pre.some((r) => r.includes('"vm*"'))).toBe(true);
  });
});

describe('compileRuleset: refusals', () => {
  it('refuses invalid state with 400 (409 for mixed statefulness)', () => {
    refuses(() => compile([port(1, ['web', 'sl'])]), /may not mix stateful and stateless/, 'Conflict');
    refuses(() => compile([port(1, ['nope'])]), /unknown security group nope/);
    refuses(() => compile([port(1, ['web'], { device: 'tap-name-too-long' })]), /not a valid interface name/);
    refuses(() => compile([port(1, ['web'], { device: 'tap"x' })]), /not a valid interface name/);
    refuses(() => compile([port(1, ['web']), port(2, ['web'], { device: 'tapp01' })]), /used by two ports/);
    refuses(() => compile([port(1, ['web'], { mac: '01:00:5e:00:00:01' })]), /multicast/);
    refuses(() => compile([port(1, ['web'], { ips: ['10.0.0.300'] })]), /not a valid IPv4 or IPv6/);
    refuses(
      () =>
        compile([
          port(1, ['web'], {
            allowedAddressPairs: Array.from({ length: 11 }, (_, i) => ({ ip: `10.8.0.${i}` })),
          }),
        ]),
      /more than 10 allowed address pairs/,
    );
    refuses(
      () => compile([port(1, ['web']), { ...port(2, ['web']), id: '00000000-0000-0000-0000-000000000001' }]),
      /same nftables name/,
    );
    refuses(() => compileRuleset({ table: 'Bad-Table', ports: [], groups: [] }), /Table name/);
    refuses(() => compile([], { hostServices: { tcp: [0], udp: [], icmpEcho: false } }), /not 1-65535/);
  });

  it('compiles an empty host (no ports) to tables that still fail closed', () => {
    const rs = compile([]);
    expect(setNamed(rs, 'ports')?.elem).toBeUndefined();
    expect(rules(rs, 'prerouting').some((r) => text(r.expr).includes('unknown_device'))).toBe(true);
  });
});

describe('compileRuleset: network isolation, routers and SNAT', () => {
  const NET_A = 'aaaaaaaa-0000-0000-0000-000000000000';
  const NET_B = 'bbbbbbbb-0000-0000-0000-000000000000';
  const netRule = (rs: NftRuleset, p: PortState) =>
    rules(rs, names.ingressChain(p.id)).find((r) => text(r.expr).includes(networkCounterName(p.id)));

  it('refuses traffic between networks no router joins, before established and any allow', () => {
    const a = port(1, ['default'], { network: NET_A });
    const b = port(2, ['default'], { network: NET_B });
    const rs = compile([a, b]);
    const inB = rules(rs, names.ingressChain(b.id));
    // The first ingress rule is the network check; established comes after it.
    expect(text(inB[0]?.expr)).toContain(networkCounterName(b.id));
    expect(verdictOf(inB[0] as NftRule)).toBe('drop');
    expect(text(inB[1]?.expr)).toContain('established');
    // A=1, B=2 (sorted by id), in mark bits 0-15; B accepts only its own network.
    expect(text(inB[0]?.expr)).toContain(text({ set: [2] }));
    expect(text(inB[0]?.expr)).toContain(text({ '&': [{ meta: { key: 'mark' } }, 0xffff] }));
    expect(text(netRule(rs, a)?.expr)).toContain(text({ set: [1] }));
    // Egress tags the sender's network without touching the zone bits.
    const tag = rules(rs, names.egressChain(a.id))[0];
    expect(text(tag?.expr)).toContain(text({ '&': [{ meta: { key: 'mark' } }, 0xffff0000] }));
    expect(text(tag?.expr)).toContain('"mangle"');
    expect(counters(rs)).toContain(networkCounterName(a.id));
  });

  it('port security off does not bypass network isolation', () => {
    const a = port(1, [], { network: NET_A, portSecurity: false });
    const b = port(2, [], { network: NET_B, portSecurity: false });
    const inB = rules(compile([a, b]), names.ingressChain(b.id));
    expect(verdictOf(inB[0] as NftRule)).toBe('drop');
    expect(text(inB[0]?.expr)).toContain(networkCounterName(b.id));
    expect(verdictOf(inB.at(-1) as NftRule)).toBe('accept');
  });

  it('a router with subnets of both networks joins them (and only them)', () => {
    const NET_C = 'cccccccc-0000-0000-0000-000000000000';
    const a = port(1, ['default'], { network: NET_A });
    const b = port(2, ['default'], { network: NET_B });
    const c = port(3, ['default'], { network: NET_C });
    const rs = compile([a, b, c], { routers: [{ id: 'r1', networks: [NET_A, NET_B] }] });
    expect(text(netRule(rs, a)?.expr)).toContain(text({ set: [1, 2] }));
    expect(text(netRule(rs, b)?.expr)).toContain(text({ set: [1, 2] }));
    expect(text(netRule(rs, c)?.expr)).toContain(text({ set: [3] }));
    // Not transitive: B-C via a second router does not join A and C.
    const rs2 = compile([a, b, c], {
      routers: [
        { id: 'r1', networks: [NET_A, NET_B] },
        { id: 'r2', networks: [NET_B, NET_C] },
      ],
    });
    expect(text(netRule(rs2, a)?.expr)).toContain(text({ set: [1, 2] }));
    expect(text(netRule(rs2, c)?.expr)).toContain(text({ set: [2, 3] }));
  });

  it('without routers, guests cannot leave the host; unsolicited traffic from outside is dropped', () => {
    const a = port(1, ['default'], { network: NET_A });
    const fwd = rules(compile([a]), 'forward').map((r) => text(r.expr));
    const out = fwd.find((r) => r.includes(NO_ROUTE_OUT_COUNTER));
    expect(out).toBeDefined();
    expect(out).not.toContain('"set"'); // no network may go out
    expect(fwd.some((r) => r.includes('from_outside'))).toBe(true);
    const fromOutside = rules(compile([a]), 'from_outside');
    expect(text(fromOutside[0]?.expr)).toContain('established');
    expect(verdictOf(fromOutside.at(-1) as NftRule)).toBe('drop');
  });

  it('an external gateway SNATs the router’s subnets out of the uplink, and only there', () => {
    const a = port(1, ['default'], { network: NET_A });
    const b = port(2, ['default'], { network: NET_B });
    const rs = compile([a, b], {
      uplink: 'uplink0',
      routers: [{ id: 'r1', networks: [NET_A], snat: ['10.0.0.0/24'] }],
    });
    const nat = chain(rs, 'postrouting');
    expect(nat).toMatchObject({ type: 'nat', hook: 'postrouting', prio: 100 });
    expect(setNamed(rs, 'snat_v4')?.elem).toEqual([{ prefix: { addr: '10.0.0.0', len: 24 } }]);
    const masq = rules(rs, 'postrouting');
    expect(masq).toHaveLength(1);
    expect(text(masq[0]?.expr)).toContain('uplink0');
    expect(text(masq[0]?.expr)).toContain('masquerade');
    const fwd = rules(rs, 'forward').map((r) => text(r.expr));
    // Anything but the uplink is refused; out of the uplink only network A (mark 1).
    expect(
      fwd.some((r) => r.includes('"!="') && r.includes('uplink0') && r.includes(NO_ROUTE_OUT_COUNTER)),
    ).toBe(true);
    expect(fwd.some((r) => r.includes(text({ set: [1] })) && r.includes(NO_ROUTE_OUT_COUNTER))).toBe(true);
    // No gateway: no NAT chain.
    expect(chain(compile([a, b], { uplink: 'uplink0' }), 'postrouting')).toBeUndefined();
  });

  it('without network ids nothing changes (no marks, no isolation rules)', () => {
    const rs = compile([port(1, ['web']), port(2, ['web'])]);
    expect(text(rs)).not.toContain(String(~NETWORK_MARK_MASK >>> 0));
    expect(text(rs)).not.toContain(NO_ROUTE_OUT_COUNTER);
  });

  it('refuses a bad uplink or SNAT source', () => {
    refuses(() => compile([], { uplink: 'tap0' }), /VM device prefix/);
    refuses(() => compile([], { uplink: 'bad name' }), /not a valid interface/);
    refuses(
      () => compile([], { uplink: 'eth9', routers: [{ id: 'r', networks: [NET_A], snat: ['fd00::/64'] }] }),
      /not IPv4/,
    );
    refuses(
      () =>
        compile([], {
          routers: [
            { id: 'r', networks: [] },
            { id: 'r', networks: [] },
          ],
        }),
      /twice/,
    );
  });
});
