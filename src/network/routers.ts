import type { Selectable } from 'kysely';
import { badRequest, conflict, forbidden, notFound } from '../errors.js';
import type { AuthContext } from '../policy/context.js';
import type { Store } from '../store/database.js';
import type { RouterInterfacesTable, RoutersTable } from '../store/schema.js';
import { nowIso, uuid } from '../util/ids.js';
import type { DataplaneSync } from './networks.js';

export type Router = Selectable<RoutersTable>;
export type RouterInterface = Selectable<RouterInterfacesTable>;

/**
 * Neutron routers, minimal but real: a router joins the networks of the
 * subnets attached to it (without one, networks are isolated from each other
 * by the dataplane), and an external gateway (a `router:external` network)
 * makes the host SNAT the attached subnets out of its uplink. Tenants own
 * their routers; another project's router is 404, as if it did not exist.
 */
export class RouterService {
  constructor(
    private readonly store: Store,
    private readonly dataplane: DataplaneSync,
  ) {}

  private get db() {
    return this.store.db;
  }

  async list(auth: AuthContext, filter: { name?: string | undefined } = {}): Promise<Router[]> {
    let q = this.db.selectFrom('routers').selectAll().orderBy('created_at');
    if (filter.name !== undefined) q = q.where('name', '=', filter.name);
    if (!auth.isAdmin) q = q.where('project_id', '=', auth.projectId ?? '');
    return q.execute();
  }

  async get(auth: AuthContext, id: string): Promise<Router> {
    let q = this.db.selectFrom('routers').selectAll().where('id', '=', id);
    if (!auth.isAdmin) q = q.where('project_id', '=', auth.projectId ?? '');
    const r = await q.executeTakeFirst();
    if (!r) throw notFound('router', id);
    return r;
  }

  async interfacesOf(routerIds: readonly string[]): Promise<RouterInterface[]> {
    if (routerIds.length === 0) return [];
    return this.db
      .selectFrom('router_interfaces')
      .selectAll()
      .where('router_id', 'in', routerIds)
      .orderBy('created_at')
      .execute();
  }

  /** The external network a gateway may use: visible, and `router:external` (else 400, as Neutron). */
  private async externalNetwork(auth: AuthContext, networkId: string): Promise<string> {
    const n = await this.db.selectFrom('networks').selectAll().where('id', '=', networkId).executeTakeFirst();
    const visible =
      n && (auth.isAdmin || n.project_id === auth.projectId || n.shared === 1 || n.router_external === 1);
    if (!n || !visible) throw notFound('network', networkId);
    if (n.router_external !== 1)
      throw badRequest(
        `Bad router request: Network ${networkId} is not an external network. ` +
          'An administrator creates external networks with `openstack network create --external`.',
      );
    return n.id;
  }

  async create(
    auth: AuthContext,
    input: {
      name: string;
      description?: string;
      adminStateUp?: boolean;
      externalNetworkId?: string | null;
      projectId?: string;
    },
  ): Promise<Router> {
    if (input.projectId && input.projectId !== auth.projectId && !auth.isAdmin)
      throw forbidden('Only administrators can create routers for other projects.');
    const ext =
      input.externalNetworkId != null ? await this.externalNetwork(auth, input.externalNetworkId) : null;
    const now = nowIso();
    const row: Router = {
      id: uuid(),
      name: input.name,
      project_id: input.projectId ?? auth.projectId ?? '',
      description: input.description ?? '',
      admin_state_up: input.adminStateUp === false ? 0 : 1,
      external_network_id: ext,
      created_at: now,
      updated_at: now,
    };
    await this.db.insertInto('routers').values(row).execute();
    if (ext) await this.dataplane.sync(`router ${row.id} created with an external gateway`);
    return row;
  }

  async update(
    auth: AuthContext,
    id: string,
    patch: {
      name?: string;
      description?: string;
      adminStateUp?: boolean;
      /** null clears the gateway; undefined leaves it. */
      externalNetworkId?: string | null;
    },
  ): Promise<Router> {
    const r = await this.get(auth, id);
    const ext =
      patch.externalNetworkId === undefined
        ? undefined
        : patch.externalNetworkId === null
          ? null
          : await this.externalNetwork(auth, patch.externalNetworkId);
    await this.db
      .updateTable('routers')
      .set({
        ...(patch.name !== undefined ? { name: patch.name } : {}),
        ...(patch.description !== undefined ? { description: patch.description } : {}),
        ...(patch.adminStateUp !== undefined ? { admin_state_up: patch.adminStateUp ? 1 : 0 } : {}),
        ...(ext !== undefined ? { external_network_id: ext } : {}),
        updated_at: nowIso(),
      })
      .where('id', '=', r.id)
      .execute();
    if (ext !== undefined || patch.adminStateUp !== undefined)
      await this.dataplane.sync(`router ${id} updated`);
    return this.get(auth, id);
  }

  async delete(auth: AuthContext, id: string): Promise<void> {
    const r = await this.get(auth, id);
    if ((await this.interfacesOf([r.id])).length > 0)
      throw conflict(
        `Router ${id} still has one or more interfaces; remove them with 'openstack router remove subnet' first.`,
      );
    await this.db.deleteFrom('routers').where('id', '=', r.id).execute();
    if (r.external_network_id) await this.dataplane.sync(`router ${id} deleted`);
  }

  /** Attaches a subnet (its gateway address becomes the router's interface). */
  async addSubnet(auth: AuthContext, id: string, subnetId: string): Promise<RouterInterface> {
    const r = await this.get(auth, id);
    const s = await this.db
      .selectFrom('subnets as s')
      .innerJoin('networks as n', 'n.id', 's.network_id')
      .select(['s.id', 's.network_id', 's.project_id', 's.gateway_ip', 'n.shared', 'n.router_external'])
      .where('s.id', '=', subnetId)
      .executeTakeFirst();
    const visible = s && (auth.isAdmin || s.project_id === auth.projectId || s.shared === 1);
    if (!s || !visible) throw notFound('subnet', subnetId);
    if (!auth.isAdmin && s.project_id !== auth.projectId)
      throw forbidden(`You do not own subnet ${subnetId}; only its owner attaches it to a router.`);
    if (!auth.isAdmin && r.project_id !== s.project_id)
      throw forbidden('A router joins only subnets of its own project.');
    if (s.router_external === 1)
      throw badRequest(
        `Bad router request: subnet ${subnetId} is on an external network; set it as the gateway instead ` +
          "('openstack router set --external-gateway').",
      );
    if (s.gateway_ip === null)
      throw badRequest(`Bad router request: Subnet ${subnetId} does not have a gateway IP.`);
    const row: RouterInterface = {
      subnet_id: s.id,
      router_id: r.id,
      network_id: s.network_id,
      created_at: nowIso(),
    };
    try {
      await this.db.insertInto('router_interfaces').values(row).execute();
    } catch (err) {
      const e = err as { code?: string; message?: string };
      if (e?.code === '23505' || /UNIQUE|PRIMARY/i.test(e?.message ?? ''))
        throw conflict(
          `Router already has a port on subnet ${subnetId}, or another router does; a subnet joins one router.`,
        );
      throw err;
    }
    await this.dataplane.sync(`subnet ${subnetId} attached to router ${id}`);
    return row;
  }

  async removeSubnet(auth: AuthContext, id: string, subnetId: string): Promise<RouterInterface> {
    const r = await this.get(auth, id);
    const row = await this.db
      .selectFrom('router_interfaces')
      .selectAll()
      .where('router_id', '=', r.id)
      .where('subnet_id', '=', subnetId)
      .executeTakeFirst();
    if (!row) throw notFound('router interface for subnet', subnetId);
    await this.db
      .deleteFrom('router_interfaces')
      .where('router_id', '=', r.id)
      .where('subnet_id', '=', subnetId)
      .execute();
    await this.dataplane.sync(`subnet ${subnetId} detached from router ${id}`);
    return row;
  }
}
