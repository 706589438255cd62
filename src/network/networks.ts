import { randomBytes } from 'node:crypto';
import { type Kysely, type Selectable, sql } from 'kysely';
import { badRequest, conflict, forbidden, notFound } from '../errors.js';
import type { AuthContext } from '../policy/context.js';
import type { Store } from '../store/database.js';
import type { NetworksTable, PortsTable, Schema, SubnetsTable } from '../store/schema.js';
import { nowIso, uuid } from '../util/ids.js';
import {
  contains,
  defaultLayout,
  firstFree,
  overlaps,
  type Pool,
  parseAddress,
  parseCidr,
  validateLayout,
} from './ipam.js';
import { requireZone } from './zones.js';

export type Network = Selectable<NetworksTable>;
export type Subnet = Selectable<SubnetsTable>;
export type Port = Selectable<PortsTable>;

/** Called after any change that alters what the firewall must enforce. */
export interface DataplaneSync {
  sync(reason: string): Promise<void>;
  /**
   * Only these groups' rules changed: a dataplane that can change them in
   * place does (one small transaction); without it, `sync`.
   */
  syncGroups?(groupIds: readonly string[], reason: string): Promise<void>;
}

/** Tells the dataplane that only these groups' rules changed (in place where it can). */
export const syncGroups = (dp: DataplaneSync, groupIds: readonly string[], reason: string): Promise<void> =>
  dp.syncGroups ? dp.syncGroups(groupIds, reason) : dp.sync(reason);

export const ZONE_PATTERN = /^[a-z][a-z0-9-]{0,31}$/;

/** OpenStack's locally administered MAC prefix. */
const randomMac = () =>
  `fa:16:3e:${[...randomBytes(3)].map((b) => b.toString(16).padStart(2, '0')).join(':')}`;

/** A tap name for a port: at most 15 characters, derived from its id. */
export { tapName } from './model.js';

/**
 * Neutron networks, subnets and ports, scoped by project. Shared networks are
 * visible to every project; only admins make them.
 */
export class NetworkService {
  constructor(
    private readonly store: Store,
    private readonly dataplane: DataplaneSync,
  ) {}

  private get db() {
    return this.store.db;
  }

  private scope<T extends { project_id: string; shared?: number; router_external?: number }>(
    auth: AuthContext,
    rows: T[],
  ): T[] {
    // External networks (router:external) are visible to every project, read-only, as in Neutron.
    return auth.isAdmin
      ? rows
      : rows.filter((r) => r.project_id === auth.projectId || r.shared === 1 || r.router_external === 1);
  }

  // ---- networks -------------------------------------------------------------

  async listNetworks(auth: AuthContext, filter: { name?: string | undefined }) {
    let q = this.db.selectFrom('networks').selectAll().orderBy('created_at');
    if (filter.name !== undefined) q = q.where('name', '=', filter.name);
    if (!auth.isAdmin)
      q = q.where((eb) =>
        eb.or([
          eb('project_id', '=', auth.projectId ?? ''),
          eb('shared', '=', 1),
          eb('router_external', '=', 1),
        ]),
      );
    return q.execute();
  }

  async getNetwork(auth: AuthContext, id: string): Promise<Network> {
    const n = await this.db.selectFrom('networks').selectAll().where('id', '=', id).executeTakeFirst();
    if (!n || this.scope(auth, [n]).length === 0) throw notFound('network', id);
    return n;
  }

  private owned<T extends { project_id: string }>(auth: AuthContext, row: T, what: string): T {
    if (!auth.isAdmin && row.project_id !== auth.projectId) throw forbidden(`You do not own this ${what}.`);
    return row;
  }

  async createNetwork(
    auth: AuthContext,
    input: {
      name: string;
      description?: string;
      adminStateUp?: boolean;
      shared?: boolean;
      mtu?: number;
      portSecurity?: boolean;
      zone?: string;
      projectId?: string;
      /** Neutron `router:external`. */
      external?: boolean;
    },
  ): Promise<Network> {
    if (input.shared && !auth.isAdmin) throw forbidden('Only administrators can create shared networks.');
    if (input.external && !auth.isAdmin)
      throw forbidden('Only administrators can create external networks (router:external).');
    if (input.projectId && input.projectId !== auth.projectId && !auth.isAdmin)
      throw forbidden('Only administrators can create networks for other projects.');
    if (input.zone !== undefined && !ZONE_PATTERN.test(input.zone))
      throw badRequest(`Zone '${input.zone}' must be lowercase letters, digits and dashes.`);
    if (input.zone !== undefined && input.zone !== 'default' && !auth.isAdmin)
      throw forbidden('Only administrators place networks in security zones.');
    const now = nowIso();
    const row: Network = {
      id: uuid(),
      name: input.name,
      project_id: input.projectId ?? auth.projectId ?? '',
      description: input.description ?? '',
      admin_state_up: input.adminStateUp === false ? 0 : 1,
      shared: input.shared ? 1 : 0,
      mtu: input.mtu ?? 1500,
      port_security_enabled: input.portSecurity === false ? 0 : 1,
      zone: input.zone ?? 'default',
      router_external: input.external ? 1 : 0,
      created_at: now,
      updated_at: now,
    };
    await this.db.transaction().execute(async (tx) => {
      await requireZone(tx, this.store.dialect, row.zone); // the zone must exist (network/zones.ts)
      await tx.insertInto('networks').values(row).execute();
    });
    return row;
  }

  async updateNetwork(
    auth: AuthContext,
    id: string,
    patch: { name?: string; description?: string; adminStateUp?: boolean; shared?: boolean; zone?: string },
  ) {
    this.owned(auth, await this.getNetwork(auth, id), 'network');
    if (patch.shared !== undefined && !auth.isAdmin)
      throw forbidden('Only administrators can share networks.');
    if (patch.zone !== undefined && !auth.isAdmin)
      throw forbidden('Only administrators change security zones.');
    if (patch.zone !== undefined && !ZONE_PATTERN.test(patch.zone))
      throw badRequest(`Zone '${patch.zone}' must be lowercase letters, digits and dashes.`);
    await this.db.transaction().execute(async (tx) => {
      if (patch.zone !== undefined) await requireZone(tx, this.store.dialect, patch.zone);
      await tx
        .updateTable('networks')
        .set({
          ...(patch.name !== undefined ? { name: patch.name } : {}),
          ...(patch.description !== undefined ? { description: patch.description } : {}),
          ...(patch.adminStateUp !== undefined ? { admin_state_up: patch.adminStateUp ? 1 : 0 } : {}),
          ...(patch.shared !== undefined ? { shared: patch.shared ? 1 : 0 } : {}),
          ...(patch.zone !== undefined ? { zone: patch.zone } : {}),
          updated_at: nowIso(),
        })
        .where('id', '=', id)
        .execute();
    });
    if (patch.zone !== undefined || patch.adminStateUp !== undefined)
      await this.dataplane.sync(`network ${id} changed`);
    return this.getNetwork(auth, id);
  }

  async deleteNetwork(auth: AuthContext, id: string) {
    this.owned(auth, await this.getNetwork(auth, id), 'network');
    const inUse = await this.db
      .selectFrom('ports')
      .select('id')
      .where('network_id', '=', id)
      .where('device_owner', 'like', 'compute:%')
      .executeTakeFirst();
    if (inUse)
      throw conflict(
        `Unable to complete operation on network ${id}. There are one or more ports still in use on the network.`,
      );
    await assertNoRouterUses(this.db, { networkId: id });
    await this.db.transaction().execute(async (tx) => {
      await tx.deleteFrom('ports').where('network_id', '=', id).execute();
      await tx.deleteFrom('subnets').where('network_id', '=', id).execute();
      await tx.deleteFrom('networks').where('id', '=', id).execute();
    });
    await this.dataplane.sync(`network ${id} deleted`);
  }

  async subnetIdsOf(networkId: string): Promise<string[]> {
    return (
      await this.db.selectFrom('subnets').select('id').where('network_id', '=', networkId).execute()
    ).map((r) => r.id);
  }

  // ---- subnets ----------------------------------------------------------------

  async listSubnets(
    auth: AuthContext,
    filter: { name?: string | undefined; networkId?: string | undefined },
  ) {
    let q = this.db
      .selectFrom('subnets as s')
      .innerJoin('networks as n', 'n.id', 's.network_id')
      .selectAll('s')
      .select(['n.shared', 'n.router_external'])
      .orderBy('s.created_at');
    if (filter.name !== undefined) q = q.where('s.name', '=', filter.name);
    if (filter.networkId !== undefined) q = q.where('s.network_id', '=', filter.networkId);
    return this.scope(auth, await q.execute());
  }

  async getSubnet(auth: AuthContext, id: string): Promise<Subnet> {
    const s = (await this.listSubnets(auth, {})).find((x) => x.id === id);
    if (!s) throw notFound('subnet', id);
    return s;
  }

  async createSubnet(
    auth: AuthContext,
    input: {
      name: string;
      networkId: string;
      ipVersion: number;
      cidr: string;
      gatewayIp?: string | null;
      enableDhcp?: boolean;
      pools?: Pool[];
      dns?: string[];
      description?: string;
    },
  ): Promise<Subnet> {
    const net = this.owned(auth, await this.getNetwork(auth, input.networkId), 'network');
    const cidr = parseCidr(input.cidr, input.ipVersion);
    const layout = defaultLayout(cidr);
    const gateway = input.gatewayIp === undefined ? layout.gateway : input.gatewayIp;
    const pools =
      input.pools ??
      (gateway === layout.gateway
        ? layout.pools
        : [{ start: layout.gateway, end: layout.pools[0]?.end ?? layout.gateway }]);
    validateLayout(cidr, gateway, pools);
    for (const d of input.dns ?? []) parseAddress(d);
    // Overlapping subnets on one network would make addresses ambiguous.
    for (const other of await this.db
      .selectFrom('subnets')
      .select(['cidr', 'ip_version'])
      .where('network_id', '=', net.id)
      .execute()) {
      const o = parseCidr(other.cidr);
      if (overlaps(o, cidr)) {
        throw badRequest(
          `Requested subnet with cidr: ${cidr.text} for network: ${net.id} overlaps with another subnet.`,
        );
      }
    }
    const now = nowIso();
    const row: Subnet = {
      id: uuid(),
      name: input.name,
      network_id: net.id,
      project_id: net.project_id,
      description: input.description ?? '',
      ip_version: cidr.version,
      cidr: cidr.text,
      gateway_ip: gateway === null ? null : parseAddress(gateway).text,
      enable_dhcp: input.enableDhcp === false ? 0 : 1,
      allocation_pools: JSON.stringify(pools),
      dns_nameservers: JSON.stringify(input.dns ?? []),
      created_at: now,
      updated_at: now,
    };
    await this.db.transaction().execute(async (tx) => {
      // One routing table for every guest (docs/network.md): no two networks may hold overlapping
      // ranges. Serialised so two concurrent creates cannot both pass the check.
      if (this.store.dialect === 'postgres')
        await sql`select pg_advisory_xact_lock(hashtext('bulwark:subnet-ranges'))`.execute(tx);
      const others = await tx
        .selectFrom('subnets')
        .select(['cidr'])
        .where('network_id', '!=', net.id)
        .where('ip_version', '=', cidr.version)
        .execute();
      if (others.some((o) => overlaps(parseCidr(o.cidr), cidr)))
        throw conflict(
          `Subnet ${cidr.text} overlaps a subnet of another network on this platform. Bulwark routes every ` +
            'guest network in one routing table, so subnet ranges must be unique across all networks and ' +
            'projects; choose a range that does not overlap (for example another /24 in 10.0.0.0/8).',
        );
      await tx.insertInto('subnets').values(row).execute();
    });
    await this.dataplane.sync(`subnet ${row.id} created`);
    return row;
  }

  async deleteSubnet(auth: AuthContext, id: string) {
    const s = this.owned(auth, await this.getSubnet(auth, id), 'subnet');
    if (
      await this.db.selectFrom('port_ips').select('port_id').where('subnet_id', '=', s.id).executeTakeFirst()
    ) {
      throw conflict(
        `Unable to complete operation on subnet ${id}: one or more ports have an IP allocation from this subnet.`,
      );
    }
    await assertNoRouterUses(this.db, { subnetId: id });
    await this.db.deleteFrom('subnets').where('id', '=', id).execute();
    await this.dataplane.sync(`subnet ${id} deleted`);
  }

  // ---- ports -----------------------------------------------------------------

  async listPorts(
    auth: AuthContext,
    filter: { networkId?: string | undefined; deviceId?: string | undefined; name?: string | undefined },
  ) {
    let q = this.db.selectFrom('ports').selectAll().orderBy('created_at');
    if (!auth.isAdmin) q = q.where('project_id', '=', auth.projectId ?? '');
    if (filter.networkId !== undefined) q = q.where('network_id', '=', filter.networkId);
    if (filter.deviceId !== undefined) q = q.where('device_id', '=', filter.deviceId);
    if (filter.name !== undefined) q = q.where('name', '=', filter.name);
    return q.execute();
  }

  async getPort(auth: AuthContext, id: string): Promise<Port> {
    let q = this.db.selectFrom('ports').selectAll().where('id', '=', id);
    if (!auth.isAdmin) q = q.where('project_id', '=', auth.projectId ?? '');
    const p = await q.executeTakeFirst();
    if (!p) throw notFound('port', id);
    return p;
  }

  async portIps(portIds: readonly string[]) {
    if (portIds.length === 0) return [];
    return this.db.selectFrom('port_ips').selectAll().where('port_id', 'in', portIds).execute();
  }

  async portGroups(portIds: readonly string[]) {
    if (portIds.length === 0) return [];
    return this.db.selectFrom('port_security_groups').selectAll().where('port_id', 'in', portIds).execute();
  }

  /**
   * Creates a port with an address from each subnet of the network (or the
   * fixed IPs asked for), the given security groups, and port security on.
   * Allocation retries on a unique-key clash, so concurrent creates never share an IP.
   */
  async createPort(
    auth: AuthContext,
    input: {
      networkId: string;
      name?: string;
      deviceId?: string;
      deviceOwner?: string;
      fixedIps?: { subnetId?: string; ipAddress?: string }[];
      securityGroupIds?: string[];
      portSecurity?: boolean;
      allowedAddressPairs?: { ip_address: string; mac_address?: string }[];
      macAddress?: string;
    },
    resolveGroups: (ids: string[] | undefined) => Promise<string[]>,
  ): Promise<Port> {
    const net = await this.getNetwork(auth, input.networkId);
    if (net.project_id !== auth.projectId && net.shared !== 1 && !auth.isAdmin)
      throw notFound('network', input.networkId);
    const subnets = await this.db
      .selectFrom('subnets')
      .selectAll()
      .where('network_id', '=', net.id)
      .execute();
    const portSecurity = input.portSecurity ?? net.port_security_enabled === 1;
    const groups = portSecurity ? await resolveGroups(input.securityGroupIds) : [];
    if (!portSecurity && (input.securityGroupIds?.length ?? 0) > 0) {
      throw badRequest('Port security must be enabled to have security groups on a port.');
    }
    const pairs = input.allowedAddressPairs ?? [];
    if (pairs.length > 10) throw badRequest('At most 10 allowed address pairs per port.');
    if (pairs.length > 0 && !portSecurity)
      throw badRequest('Allowed address pairs need port security enabled.');
    for (const p of pairs) {
      if (p.ip_address.includes('/')) parseCidr(p.ip_address);
      else parseAddress(p.ip_address);
    }
    const mac = input.macAddress ?? randomMac();
    if (!/^([0-9a-f]{2}:){5}[0-9a-f]{2}$/.test(mac) || (Number.parseInt(mac.slice(0, 2), 16) & 1) === 1) {
      throw badRequest(`Invalid MAC address ${mac}: use a unicast address like fa:16:3e:00:00:01.`);
    }
    const wanted: { subnetId?: string; ipAddress?: string }[] =
      input.fixedIps ?? subnets.map((s) => ({ subnetId: s.id }));
    for (let attempt = 0; attempt < 5; attempt++) {
      const now = nowIso();
      const port: Port = {
        id: uuid(),
        name: input.name ?? '',
        network_id: net.id,
        project_id: auth.projectId ?? net.project_id,
        description: '',
        mac_address: mac,
        device_id: input.deviceId ?? '',
        device_owner: input.deviceOwner ?? '',
        admin_state_up: 1,
        port_security_enabled: portSecurity ? 1 : 0,
        allowed_address_pairs: JSON.stringify(
          pairs.map((p) => ({ ip_address: p.ip_address, mac_address: p.mac_address ?? mac })),
        ),
        quarantined: 0,
        created_at: now,
        updated_at: now,
      };
      try {
        await this.db.transaction().execute(async (tx) => {
          // PostgreSQL runs concurrent allocations in parallel: serialise them per network (SQLite already does).
          await tx
            .selectFrom('subnets')
            .select('id')
            .where('network_id', '=', net.id)
            .$if(this.store.dialect === 'postgres', (q) => q.forUpdate())
            .execute();
          await tx.insertInto('ports').values(port).execute();
          for (const w of wanted) {
            const subnet = w.subnetId
              ? subnets.find((s) => s.id === w.subnetId)
              : subnets.find((s) => {
                  if (w.ipAddress === undefined) return false;
                  const cidr = parseCidr(s.cidr);
                  const a = parseAddress(w.ipAddress);
                  return cidr.version === a.version && contains(cidr, a.value);
                });
            if (!subnet)
              throw badRequest(
                `No subnet of network ${net.id} matches fixed IP ${w.ipAddress ?? w.subnetId}.`,
              );
            const used = new Set(
              (
                await tx
                  .selectFrom('port_ips')
                  .select('ip_address')
                  .where('subnet_id', '=', subnet.id)
                  .execute()
              ).map((r) => r.ip_address),
            );
            if (subnet.gateway_ip) used.add(subnet.gateway_ip);
            let ip: string | null;
            if (w.ipAddress !== undefined) {
              const asked = parseAddress(w.ipAddress);
              ip = asked.text;
              if (!contains(parseCidr(subnet.cidr), asked.value))
                throw badRequest(`IP address ${ip} is not in subnet ${subnet.cidr}.`);
              if (used.has(ip)) throw conflict(`IP address ${ip} already allocated in subnet ${subnet.id}.`);
            } else {
              ip = firstFree(subnet.ip_version as 4 | 6, JSON.parse(subnet.allocation_pools) as Pool[], used);
              if (ip === null) throw conflict(`No more IP addresses available on network ${net.id}.`);
            }
            await tx
              .insertInto('port_ips')
              .values({ port_id: port.id, subnet_id: subnet.id, ip_address: ip })
              .execute();
          }
          for (const g of groups)
            await tx
              .insertInto('port_security_groups')
              .values({ port_id: port.id, security_group_id: g })
              .execute();
        });
        await this.dataplane.sync(`port ${port.id} created`);
        return port;
      } catch (err) {
        if (isUniqueViolation(err) && attempt < 4) continue;
        if (isUniqueViolation(err)) throw conflict('Could not allocate an address or MAC; try again.');
        throw err;
      }
    }
    throw conflict('Could not allocate an address; try again.');
  }

  async updatePort(
    auth: AuthContext,
    id: string,
    patch: {
      name?: string;
      securityGroupIds?: string[];
      portSecurity?: boolean;
      allowedAddressPairs?: { ip_address: string; mac_address?: string }[];
      adminStateUp?: boolean;
    },
    resolveGroups: (ids: string[] | undefined) => Promise<string[]>,
  ): Promise<Port> {
    const port = await this.getPort(auth, id);
    const currentGroups = (await this.portGroups([id])).map((g) => g.security_group_id);
    const portSecurity = patch.portSecurity ?? port.port_security_enabled === 1;
    const groups =
      patch.securityGroupIds !== undefined ? await resolveGroups(patch.securityGroupIds) : currentGroups;
    if (!portSecurity && groups.length > 0) {
      throw conflict(`Port ${id} has security groups: remove them before disabling port security.`);
    }
    const pairs = patch.allowedAddressPairs;
    if (pairs !== undefined) {
      if (pairs.length > 10) throw badRequest('At most 10 allowed address pairs per port.');
      for (const p of pairs) {
        if (p.ip_address.includes('/')) parseCidr(p.ip_address);
        else parseAddress(p.ip_address);
      }
    }
    await this.db.transaction().execute(async (tx) => {
      await tx
        .updateTable('ports')
        .set({
          ...(patch.name !== undefined ? { name: patch.name } : {}),
          ...(patch.adminStateUp !== undefined ? { admin_state_up: patch.adminStateUp ? 1 : 0 } : {}),
          port_security_enabled: portSecurity ? 1 : 0,
          ...(pairs !== undefined
            ? {
                allowed_address_pairs: JSON.stringify(
                  pairs.map((p) => ({
                    ip_address: p.ip_address,
                    mac_address: p.mac_address ?? port.mac_address,
                  })),
                ),
              }
            : {}),
          updated_at: nowIso(),
        })
        .where('id', '=', id)
        .execute();
      if (patch.securityGroupIds !== undefined) {
        await tx.deleteFrom('port_security_groups').where('port_id', '=', id).execute();
        for (const g of groups)
          await tx.insertInto('port_security_groups').values({ port_id: id, security_group_id: g }).execute();
      }
    });
    await this.dataplane.sync(`port ${id} updated`);
    return this.getPort(auth, id);
  }

  async deletePort(auth: AuthContext, id: string, opts: { fromCompute?: boolean } = {}) {
    const port = await this.getPort(auth, id);
    if (port.device_owner.startsWith('compute:') && !opts.fromCompute) {
      throw conflict(`Port ${id} is attached to server ${port.device_id}; detach it or delete the server.`);
    }
    await this.db.deleteFrom('ports').where('id', '=', id).execute();
    await this.dataplane.sync(`port ${id} deleted`);
  }

  /** Isolates or releases a port (incident response); admin only, enforced by policy. */
  async setQuarantine(portIds: readonly string[], on: boolean) {
    if (portIds.length === 0) return;
    await this.db
      .updateTable('ports')
      .set({ quarantined: on ? 1 : 0, updated_at: nowIso() })
      .where('id', 'in', portIds)
      .execute();
    await this.dataplane.sync(on ? 'quarantine' : 'release quarantine');
  }
}

/** 409 while a router uses the subnet (interface) or network (interface or external gateway). */
async function assertNoRouterUses(
  db: Kysely<Schema>,
  what: { subnetId?: string; networkId?: string },
): Promise<void> {
  let q = db.selectFrom('router_interfaces').select(['router_id']);
  q = what.subnetId
    ? q.where('subnet_id', '=', what.subnetId)
    : q.where('network_id', '=', what.networkId ?? '');
  const iface = await q.executeTakeFirst();
  if (iface)
    throw conflict(
      `Unable to complete operation: the ${what.subnetId ? `subnet ${what.subnetId}` : `network ${what.networkId}`} ` +
        `is attached to router ${iface.router_id}; remove it first with 'openstack router remove subnet'.`,
    );
  if (what.networkId) {
    const gw = await db
      .selectFrom('routers')
      .select('id')
      .where('external_network_id', '=', what.networkId)
      .executeTakeFirst();
    if (gw)
      throw conflict(
        `Unable to complete operation on network ${what.networkId}: router ${gw.id} uses it as its external gateway; ` +
          "clear it first with 'openstack router unset --external-gateway'.",
      );
  }
}

export function isUniqueViolation(err: unknown): boolean {
  const e = err as { code?: string; message?: string };
  return (
    e?.code === '23505' ||
    e?.code === 'SQLITE_CONSTRAINT_PRIMARYKEY' ||
    e?.code === 'SQLITE_CONSTRAINT_UNIQUE' ||
    /UNIQUE constraint failed/.test(e?.message ?? '')
  );
}
