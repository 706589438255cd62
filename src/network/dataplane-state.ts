import type { Store } from '../store/database.js';
import type { CompileInput, GroupState, PortState, RouterState, ZonePolicy } from './compile.js';
import { normaliseRule, tapName } from './model.js';
import { loadZonePolicies } from './zones.js';

export interface LoadOptions {
  /**
   * Which ports have their device on this host. Default: every port a server
   * owns (`device_owner` `compute:*`), which is right for a single-host
   * install. Other ports still count as remote-group members by address.
   */
  isLocal?: (port: { id: string; device_id: string; device_owner: string }) => boolean;
  /** Zone policies to use instead of the stored ones. */
  zones?: ZonePolicy[];
  /** The host's uplink device (`--uplink-device`): external-gateway routers SNAT out of it. */
  uplink?: string | undefined;
}

/** Allowed address pairs as stored (JSON text); anything malformed counts as none rather than failing the host. */
function pairsOf(json: string): { ip: string; mac?: string }[] {
  let v: unknown;
  try {
    v = JSON.parse(json);
  } catch {
    return [];
  }
  if (!Array.isArray(v)) return [];
  const out: { ip: string; mac?: string }[] = [];
  for (const p of v) {
    if (typeof p !== 'object' || p === null || Array.isArray(p)) continue;
    const ip: unknown = Reflect.get(p, 'ip_address');
    const mac: unknown = Reflect.get(p, 'mac_address');
    if (typeof ip !== 'string') continue;
    out.push(typeof mac === 'string' ? { ip, mac } : { ip });
  }
  return out;
}

/**
 * Reads the desired dataplane state from the store: every local port with its
 * addresses, groups, zone (its network's) and quarantine flag, and every
 * security group with its rules and its non-local members' addresses.
 */
export async function loadDataplaneState(
  store: Store,
  opts: LoadOptions = {},
): Promise<Omit<CompileInput, 'table'>> {
  const db = store.db;
  const isLocal = opts.isLocal ?? ((p) => p.device_owner.startsWith('compute:'));
  const [ports, ips, links, groups, rules] = await Promise.all([
    db
      .selectFrom('ports as p')
      .innerJoin('networks as n', 'n.id', 'p.network_id')
      .select([
        'p.id',
        'p.device_id',
        'p.device_owner',
        'p.mac_address',
        'p.port_security_enabled',
        'p.allowed_address_pairs',
        'p.quarantined',
        'n.zone',
        'p.network_id',
      ])
      .orderBy('p.id')
      .execute(),
    db.selectFrom('port_ips').select(['port_id', 'ip_address']).execute(),
    db.selectFrom('port_security_groups').select(['port_id', 'security_group_id']).execute(),
    db.selectFrom('security_groups').select(['id', 'stateful']).orderBy('id').execute(),
    db.selectFrom('security_group_rules').selectAll().orderBy('created_at').execute(),
  ]);
  const ipsOf = new Map<string, string[]>();
  for (const r of ips) ipsOf.set(r.port_id, [...(ipsOf.get(r.port_id) ?? []), r.ip_address]);
  const groupsOf = new Map<string, string[]>();
  for (const l of links) groupsOf.set(l.port_id, [...(groupsOf.get(l.port_id) ?? []), l.security_group_id]);

  const local: PortState[] = [];
  const remoteMembers = new Map<string, string[]>();
  for (const p of ports) {
    const pairs = pairsOf(p.allowed_address_pairs);
    const gids = groupsOf.get(p.id) ?? [];
    if (isLocal(p)) {
      local.push({
        id: p.id,
        device: tapName(p.id),
        mac: p.mac_address,
        ips: ipsOf.get(p.id) ?? [],
        allowedAddressPairs: pairs,
        portSecurity: p.port_security_enabled === 1,
        groupIds: gids,
        zone: p.zone,
        quarantined: p.quarantined === 1,
        network: p.network_id,
      });
    } else {
      for (const g of gids)
        remoteMembers.set(g, [
          ...(remoteMembers.get(g) ?? []),
          ...(ipsOf.get(p.id) ?? []),
          ...pairs.map((x) => x.ip),
        ]);
    }
  }
  const rulesOf = new Map<string, GroupState['rules']>();
  for (const r of rules)
    rulesOf.set(r.security_group_id, [...(rulesOf.get(r.security_group_id) ?? []), normaliseRule(r)]);
  return {
    ports: local,
    groups: groups.map((g) => ({
      id: g.id,
      stateful: g.stateful === 1,
      rules: rulesOf.get(g.id) ?? [],
      remoteMembers: remoteMembers.get(g.id) ?? [],
    })),
    // Zone policies come from the store (zones, zone_rules); `opts.zones` overrides them (tests).
    zones: opts.zones ?? (await loadZonePolicies(store)),
    routers: await loadRouters(store),
    ...(opts.uplink ? { uplink: opts.uplink } : {}),
  };
}

/** Just these security groups with their rules: what an in-place group update reads (`NftDataplane#syncGroups`). */
export async function loadGroupStates(store: Store, ids: readonly string[]): Promise<GroupState[]> {
  if (ids.length === 0) return [];
  const [groups, rules] = await Promise.all([
    store.db
      .selectFrom('security_groups')
      .select(['id', 'stateful'])
      .where('id', 'in', ids)
      .orderBy('id')
      .execute(),
    store.db
      .selectFrom('security_group_rules')
      .selectAll()
      .where('security_group_id', 'in', ids)
      .orderBy('created_at')
      .execute(),
  ]);
  return groups.map((g) => ({
    id: g.id,
    stateful: g.stateful === 1,
    rules: rules.filter((r) => r.security_group_id === g.id).map(normaliseRule),
  }));
}

/**
 * Routers as the dataplane needs them: the networks each joins (network
 * isolation) and, with an external gateway, its attached IPv4 subnets (SNAT).
 * A router that is administratively down joins nothing.
 */
export async function loadRouters(store: Store): Promise<RouterState[]> {
  const [routers, ifaces] = await Promise.all([
    store.db
      .selectFrom('routers')
      .select(['id', 'external_network_id', 'admin_state_up'])
      .orderBy('id')
      .execute(),
    store.db
      .selectFrom('router_interfaces as i')
      .innerJoin('subnets as s', 's.id', 'i.subnet_id')
      .select(['i.router_id', 'i.network_id', 's.cidr', 's.ip_version'])
      .execute(),
  ]);
  return routers
    .filter((r) => r.admin_state_up === 1)
    .map((r) => {
      const mine = ifaces.filter((i) => i.router_id === r.id);
      return {
        id: r.id,
        networks: [...new Set(mine.map((i) => i.network_id))].sort(),
        ...(r.external_network_id
          ? {
              snat: mine
                .filter((i) => i.ip_version === 4)
                .map((i) => i.cidr)
                .sort(),
            }
          : {}),
      };
    });
}

/** Gateway addresses of every subnet: the host holds them, so guests reach their router. */
export async function loadGateways(store: Store): Promise<string[]> {
  const rows = await store.db.selectFrom('subnets').select('gateway_ip').execute();
  return rows.flatMap((r) => (r.gateway_ip ? [r.gateway_ip] : []));
}

/** What the DHCP servers need (`host/net/dhcp.ts#DhcpNetwork`), kept structural so the domain does not import host code. */
export interface DhcpNetworkState {
  id: string;
  mtu: number;
  subnets: { cidr: string; gateway: string | null; dns: string[] }[];
  hosts: { mac: string; ip: string }[];
  devices: string[];
}

/**
 * Every network with an IPv4 subnet that has DHCP on: its subnets, a static
 * lease (MAC → fixed IP) for each port with an address in them, and the taps
 * of its local ports. IPv6 subnets are not served (no DHCPv6/RA yet).
 */
export async function loadDhcpState(
  store: Store,
  opts: Pick<LoadOptions, 'isLocal'> = {},
): Promise<DhcpNetworkState[]> {
  const isLocal = opts.isLocal ?? ((p) => p.device_owner.startsWith('compute:'));
  const db = store.db;
  const [subnets, nets, ports, ips] = await Promise.all([
    db
      .selectFrom('subnets')
      .select(['id', 'network_id', 'cidr', 'gateway_ip', 'dns_nameservers'])
      .where('enable_dhcp', '=', 1)
      .where('ip_version', '=', 4)
      .orderBy('created_at')
      .execute(),
    db.selectFrom('networks').select(['id', 'mtu']).execute(),
    db.selectFrom('ports').select(['id', 'network_id', 'mac_address', 'device_id', 'device_owner']).execute(),
    db.selectFrom('port_ips').select(['port_id', 'subnet_id', 'ip_address']).execute(),
  ]);
  const mtuOf = new Map(nets.map((n) => [n.id, n.mtu]));
  const portById = new Map(ports.map((p) => [p.id, p]));
  const out = new Map<string, DhcpNetworkState>();
  for (const s of subnets) {
    let n = out.get(s.network_id);
    if (!n) {
      n = { id: s.network_id, mtu: mtuOf.get(s.network_id) ?? 1500, subnets: [], hosts: [], devices: [] };
      out.set(s.network_id, n);
    }
    let dns: unknown;
    try {
      dns = JSON.parse(s.dns_nameservers);
    } catch {
      dns = [];
    }
    n.subnets.push({
      cidr: s.cidr,
      gateway: s.gateway_ip,
      dns: Array.isArray(dns) ? dns.filter((d): d is string => typeof d === 'string') : [],
    });
    for (const ip of ips) {
      if (ip.subnet_id !== s.id) continue;
      const p = portById.get(ip.port_id);
      if (!p) continue;
      n.hosts.push({ mac: p.mac_address, ip: ip.ip_address });
      if (isLocal(p) && !n.devices.includes(tapName(p.id))) n.devices.push(tapName(p.id));
    }
  }
  return [...out.values()];
}
