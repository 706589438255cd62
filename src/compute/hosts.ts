import type { Kysely, Selectable } from 'kysely';
import { badRequest, notFound } from '../errors.js';
import type { Store } from '../store/database.js';
import type { HostsTable, Schema } from '../store/schema.js';
import { nowIso } from '../util/ids.js';
import type { HostView, Resources } from './scheduler/index.js';

export type HostRow = Selectable<HostsTable>;

/** Nova's initial allocation ratios (cpu 4.0, ram 1.0, disk 1.0). */
export const DEFAULT_RATIOS: Resources = { vcpus: 4, ramMiB: 1, diskGiB: 1 };

/** What a host says about itself when it registers or reports (the agent's heartbeat). */
export interface HostReport {
  capacity: Resources;
  features: string[];
  health?: Record<string, unknown>;
}

export interface HostRegistration extends HostReport {
  name: string;
  zone?: string;
  aggregates?: string[];
  ratios?: Resources;
  local?: boolean;
  certFingerprint?: string | null;
}

const HOST_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/;

/**
 * The hypervisor hosts (docs/multi-host.md): registered, reporting
 * capacity and health, and marked down when they stop reporting. Decides
 * only; the agent (host/agent) and the local machine report here.
 */
export class HostService {
  constructor(private readonly store: Store) {}

  private get db() {
    return this.store.db;
  }

  static checkName(name: string): void {
    if (!HOST_NAME.test(name))
      throw badRequest(`Host name '${name}' is invalid: use 1-63 letters, digits, '.', '_' or '-'.`);
  }

  /** Adds the host or updates what it reports; a registered host is up. */
  async register(r: HostRegistration): Promise<HostRow> {
    HostService.checkName(r.name);
    const now = nowIso();
    const row: HostRow = {
      name: r.name,
      zone: r.zone ?? 'nova',
      aggregates: JSON.stringify(r.aggregates ?? []),
      features: JSON.stringify([...new Set(r.features)].sort()),
      vcpus: r.capacity.vcpus,
      ram_mib: r.capacity.ramMiB,
      disk_gib: r.capacity.diskGiB,
      ratios: JSON.stringify(r.ratios ?? DEFAULT_RATIOS),
      state: 'up',
      health: JSON.stringify(r.health ?? {}),
      local: r.local ? 1 : 0,
      cert_fingerprint: r.certFingerprint ?? null,
      last_heartbeat: now,
      created_at: now,
      updated_at: now,
    };
    const { created_at: _, name: __, state: ___, ...update } = row;
    await this.db
      .insertInto('hosts')
      .values(row)
      // Registering again (a restart, a replica) refreshes the report; an admin's `disabled` stays.
      .onConflict((oc) =>
        oc.column('name').doUpdateSet((eb) => ({
          ...update,
          state: eb.case().when('hosts.state', '=', 'disabled').then('disabled').else('up').end(),
        })),
      )
      .execute();
    return this.get(r.name);
  }

  async get(name: string): Promise<HostRow> {
    const h = await this.db.selectFrom('hosts').selectAll().where('name', '=', name).executeTakeFirst();
    if (!h) throw notFound('host', name);
    return h;
  }

  list(): Promise<HostRow[]> {
    return this.db.selectFrom('hosts').selectAll().orderBy('name').execute();
  }

  /** A heartbeat: fresh capacity and health; a down host that reports again is up (a disabled one stays so). */
  async heartbeat(name: string, report: HostReport): Promise<void> {
    const now = nowIso();
    const res = await this.db
      .updateTable('hosts')
      .set({
        vcpus: report.capacity.vcpus,
        ram_mib: report.capacity.ramMiB,
        disk_gib: report.capacity.diskGiB,
        features: JSON.stringify([...new Set(report.features)].sort()),
        health: JSON.stringify(report.health ?? {}),
        last_heartbeat: now,
        updated_at: now,
        state: (eb) => eb.case().when('state', '=', 'disabled').then('disabled').else('up').end(),
      })
      .where('name', '=', name)
      .executeTakeFirst();
    if (Number(res.numUpdatedRows) !== 1) throw notFound('host', name);
  }

  /** Marks down every remote host whose last report is older than `maxAgeMs`; returns their names. */
  async markStale(maxAgeMs: number, now = Date.now()): Promise<string[]> {
    const cutoff = new Date(now - maxAgeMs).toISOString();
    const stale = await this.db
      .selectFrom('hosts')
      .select('name')
      .where('local', '=', 0)
      .where('state', '=', 'up')
      .where('last_heartbeat', '<', cutoff)
      .execute();
    if (stale.length === 0) return [];
    await this.db
      .updateTable('hosts')
      .set({ state: 'down', updated_at: nowIso() })
      .where(
        'name',
        'in',
        stale.map((s) => s.name),
      )
      .where('state', '=', 'up')
      .execute();
    return stale.map((s) => s.name);
  }

  async setState(name: string, state: 'up' | 'disabled'): Promise<void> {
    const res = await this.db
      .updateTable('hosts')
      .set({ state, updated_at: nowIso() })
      .where('name', '=', name)
      .executeTakeFirst();
    if (Number(res.numUpdatedRows) !== 1) throw notFound('host', name);
  }

  /** Every host with what its placements use, as the scheduler sees them (inside the claim's transaction). */
  static async views(tx: Kysely<Schema>, rows: readonly HostRow[]): Promise<HostView[]> {
    const used = await tx
      .selectFrom('placements')
      .select((eb) => [
        'host',
        eb.fn.sum<number>('vcpus').as('vcpus'),
        eb.fn.sum<number>('ram_mib').as('ram'),
        eb.fn.sum<number>('disk_gib').as('disk'),
      ])
      .groupBy('host')
      .execute();
    const byHost = new Map(used.map((u) => [u.host, u]));
    return rows.map((h) => {
      const u = byHost.get(h.name);
      return {
        name: h.name,
        zone: h.zone,
        aggregates: JSON.parse(h.aggregates) as string[],
        features: JSON.parse(h.features) as string[],
        state: h.state as HostView['state'],
        capacity: { vcpus: h.vcpus, ramMiB: h.ram_mib, diskGiB: h.disk_gib },
        used: { vcpus: Number(u?.vcpus ?? 0), ramMiB: Number(u?.ram ?? 0), diskGiB: Number(u?.disk ?? 0) },
        ratios: JSON.parse(h.ratios) as Resources,
      };
    });
  }
}
