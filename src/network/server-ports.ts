import { badRequest, conflict, notFound } from '../errors.js';
import type { AuthContext } from '../policy/context.js';
import type { Store } from '../store/database.js';
import { type NetworkService, tapName } from './networks.js';
import type { SecurityGroupService } from './security-groups.js';

export interface RequestedNic {
  uuid?: string | undefined;
  port?: string | undefined;
  fixed_ip?: string | undefined;
}

export interface ServerNic {
  portId: string;
  tap: string;
  mac: string;
  ips: string[];
  /** IPv4 gateways of the port's subnets, `GW/LEN`. */
  gateways: string[];
}

/** Fixed addresses of servers, keyed by network name, the way Nova shows them. */
export type Addresses = Record<
  string,
  { addr: string; version: number; 'OS-EXT-IPS:type': 'fixed'; 'OS-EXT-IPS-MAC:mac_addr': string }[]
>;

/**
 * Where compute meets network: ports for a server's NICs, its addresses and
 * security groups. Nova's view of a server's groups is the union over its ports.
 */
export class ServerPorts {
  constructor(
    private readonly store: Store,
    private readonly networks: NetworkService,
    private readonly groups: SecurityGroupService,
  ) {}

  /** Creates (or claims) one port per requested NIC; on any failure, none are left behind. */
  async attach(
    auth: AuthContext,
    serverId: string,
    nics: RequestedNic[],
    groupRefs: string[] | undefined,
  ): Promise<ServerNic[]> {
    const groupIds =
      groupRefs === undefined
        ? undefined
        : await Promise.all(groupRefs.map(async (g) => (await this.groups.findByNameOrId(auth, g)).id));
    const made: string[] = [];
    try {
      const out: ServerNic[] = [];
      for (const nic of nics) {
        let portId: string;
        if (nic.port) {
          const p = await this.networks.getPort(auth, nic.port);
          if (p.device_id) throw conflict(`Port ${p.id} is still in use by ${p.device_id}.`);
          await this.store.db
            .updateTable('ports')
            .set({ device_id: serverId, device_owner: 'compute:nova' })
            .where('id', '=', p.id)
            .where('device_id', '=', '')
            .execute();
          portId = p.id;
        } else if (nic.uuid) {
          const p = await this.networks
            .createPort(
              auth,
              {
                networkId: nic.uuid,
                deviceId: serverId,
                deviceOwner: 'compute:nova',
                ...(nic.fixed_ip ? { fixedIps: [{ ipAddress: nic.fixed_ip }] } : {}),
                ...(groupIds ? { securityGroupIds: groupIds } : {}),
              },
              (ids) => this.groups.resolveForPort(auth, ids),
            )
            .catch((err: unknown) => {
              throw err instanceof Error && /Could not find network/.test(err.message)
                ? badRequest(`Network ${nic.uuid} could not be found.`)
                : err;
            });
          made.push(p.id);
          portId = p.id;
        } else {
          throw badRequest('Each network needs a uuid or a port.');
        }
        out.push(...(await this.nicsWhere('id', portId)));
      }
      return out;
    } catch (err) {
      for (const id of made)
        await this.networks.deletePort(auth, id, { fromCompute: true }).catch(() => undefined);
      throw err;
    }
  }

  nics(serverId: string): Promise<ServerNic[]> {
    return this.nicsWhere('device_id', serverId);
  }

  private async nicsWhere(column: 'id' | 'device_id', value: string): Promise<ServerNic[]> {
    const ports = await this.store.db
      .selectFrom('ports')
      .select(['id', 'mac_address'])
      .where(column, '=', value)
      .orderBy('created_at')
      .orderBy('id')
      .execute();
    const ips = ports.length
      ? await this.store.db
          .selectFrom('port_ips as i')
          .innerJoin('subnets as s', 's.id', 'i.subnet_id')
          .select(['i.port_id', 'i.ip_address', 's.cidr', 's.gateway_ip', 's.ip_version'])
          .where(
            'i.port_id',
            'in',
            ports.map((p) => p.id),
          )
          .execute()
      : [];
    return ports.map((p) => {
      const mine = ips.filter((i) => i.port_id === p.id);
      return {
        portId: p.id,
        tap: tapName(p.id),
        mac: p.mac_address,
        ips: mine.map((i) => i.ip_address),
        gateways: mine.flatMap((i) =>
          i.ip_version === 4 && i.gateway_ip ? [`${i.gateway_ip}/${i.cidr.split('/')[1]}`] : [],
        ),
      };
    });
  }

  /** Deletes the ports Nova made for the server; ports the user brought are released, as Nova does. */
  async detachAll(serverId: string, admin: AuthContext): Promise<void> {
    const ports = await this.store.db
      .selectFrom('ports')
      .select(['id'])
      .where('device_id', '=', serverId)
      .execute();
    for (const p of ports) await this.networks.deletePort(admin, p.id, { fromCompute: true });
  }

  async addresses(serverIds: readonly string[]): Promise<Map<string, Addresses>> {
    const out = new Map<string, Addresses>();
    if (serverIds.length === 0) return out;
    const rows = await this.store.db
      .selectFrom('ports as p')
      .innerJoin('networks as n', 'n.id', 'p.network_id')
      .innerJoin('port_ips as i', 'i.port_id', 'p.id')
      .innerJoin('subnets as s', 's.id', 'i.subnet_id')
      .select(['p.device_id', 'p.mac_address', 'n.name as network', 'i.ip_address', 's.ip_version'])
      .where('p.device_id', 'in', serverIds)
      .execute();
    for (const r of rows) {
      const a = out.get(r.device_id) ?? {};
      const list = a[r.network] ?? [];
      a[r.network] = list;
      list.push({
        addr: r.ip_address,
        version: r.ip_version,
        'OS-EXT-IPS:type': 'fixed',
        'OS-EXT-IPS-MAC:mac_addr': r.mac_address,
      });
      out.set(r.device_id, a);
    }
    return out;
  }

  async groupNames(serverIds: readonly string[]): Promise<Map<string, { name: string }[]>> {
    const out = new Map<string, { name: string }[]>();
    if (serverIds.length === 0) return out;
    const rows = await this.store.db
      .selectFrom('ports as p')
      .innerJoin('port_security_groups as psg', 'psg.port_id', 'p.id')
      .innerJoin('security_groups as g', 'g.id', 'psg.security_group_id')
      .select(['p.device_id', 'g.name'])
      .distinct()
      .where('p.device_id', 'in', serverIds)
      .execute();
    for (const r of rows) out.set(r.device_id, [...(out.get(r.device_id) ?? []), { name: r.name }]);
    return out;
  }

  /** Nova's addSecurityGroup / removeSecurityGroup: applies to every port of the server. */
  async changeGroup(auth: AuthContext, serverId: string, groupRef: string, add: boolean): Promise<void> {
    const group = await this.groups.findByNameOrId(auth, groupRef);
    const ports = await this.store.db
      .selectFrom('ports')
      .select('id')
      .where('device_id', '=', serverId)
      .execute();
    if (ports.length === 0) throw badRequest('The server has no network ports to add a security group to.');
    for (const p of ports) {
      const current = (await this.networks.portGroups([p.id])).map((g) => g.security_group_id);
      if (add && current.includes(group.id))
        throw badRequest(`Security group ${groupRef} is already associated with the instance ${serverId}.`);
      if (!add && !current.includes(group.id))
        throw notFound('security group association', `${groupRef} on ${serverId}`);
      const next = add ? [...current, group.id] : current.filter((g) => g !== group.id);
      await this.networks.updatePort(auth, p.id, { securityGroupIds: next }, (ids) =>
        this.groups.resolveForPort(auth, ids),
      );
    }
  }
}
