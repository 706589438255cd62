import type { Store } from '../store/database.js';
import type { CompileInput, GroupState, PortState, ZonePolicy } from './compile.js';
import { normaliseRule, tapName } from './model.js';

export interface LoadOptions {
  /**
   * Which ports have their device on this host. Default: every port a server
   * owns (`device_owner` `compute:*`), which is right for a single-host
   * install. Other ports still count as remote-group members by address.
   */
  isLocal?: (port: { id: string; device_id: string; device_owner: string }) => boolean;
  zones?: ZonePolicy[];
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
    ...(opts.zones ? { zones: opts.zones } : {}),
  };
}
