import type { Kysely } from 'kysely';
import { forbidden } from '../errors.js';
import type { Dialect } from '../store/database.js';
import type { Schema } from '../store/schema.js';
import { nowIso } from '../util/ids.js';
import { HostService } from './hosts.js';
import {
  type GroupPolicy,
  type GroupView,
  type PlacementRequest,
  type ScheduleResult,
  schedule,
} from './scheduler/index.js';
import { GROUP_QUOTA, type GroupRules } from './server-groups.js';

export interface ClaimRequest extends Omit<PlacementRequest, 'group'> {
  serverId: string;
  /** The server group the server joins (already checked to be the caller's). */
  groupId?: string;
  /** Hosts this control plane can build on (those with a hypervisor driver); others are not candidates. */
  eligible: ReadonlySet<string>;
}

/**
 * Places one server and claims its resources, inside the caller's
 * transaction (the one inserting the server). Race-free on both dialects:
 * PostgreSQL takes the group row's lock (members) and then every up host
 * row's lock, always in that order and by name (no deadlock), so the
 * scheduler reads usage no concurrent claim can change before this one
 * commits; SQLite serialises transactions. The server joins its group here
 * even when no host is found (Nova keeps failed members too).
 */
export async function claimPlacement(
  tx: Kysely<Schema>,
  dialect: Dialect,
  req: ClaimRequest,
): Promise<ScheduleResult> {
  const locking = dialect === 'postgres';
  let group: GroupView | undefined;
  if (req.groupId) {
    const g = await tx
      .selectFrom('server_groups')
      .select(['id', 'policy', 'rules'])
      .where('id', '=', req.groupId)
      .$if(locking, (q) => q.forUpdate())
      .executeTakeFirstOrThrow();
    const members = await tx
      .selectFrom('server_group_members as m')
      .leftJoin('placements as p', 'p.server_id', 'm.server_id')
      .select(['m.server_id', 'p.host'])
      .where('m.group_id', '=', g.id)
      .execute();
    if (members.length >= GROUP_QUOTA.members)
      throw forbidden(`Quota exceeded, too many servers in group (at most ${GROUP_QUOTA.members}).`);
    await tx
      .insertInto('server_group_members')
      .values({ server_id: req.serverId, group_id: g.id, created_at: nowIso() })
      .execute();
    const rules = JSON.parse(g.rules) as GroupRules;
    group = {
      id: g.id,
      policy: g.policy as GroupPolicy,
      memberHosts: members.flatMap((m) => (m.host ? [m.host] : [])),
      ...(rules.max_server_per_host ? { maxServerPerHost: rules.max_server_per_host } : {}),
    };
  }
  const hosts = await tx
    .selectFrom('hosts')
    .selectAll()
    .where('state', '=', 'up')
    .orderBy('name')
    .$if(locking, (q) => q.forUpdate())
    .execute();
  const { serverId: _, groupId: __, eligible, ...want } = req;
  const candidates = hosts.filter((h) => eligible.has(h.name));
  const result = schedule(await HostService.views(tx, candidates), { ...want, ...(group ? { group } : {}) });
  if (!result.ok) return result;
  await tx
    .insertInto('placements')
    .values({
      server_id: req.serverId,
      host: result.ranked[0] as string,
      vcpus: req.resources.vcpus,
      ram_mib: req.resources.ramMiB,
      disk_gib: req.resources.diskGiB,
      created_at: nowIso(),
    })
    .execute();
  return result;
}

/** A deleted server's claim and group membership go (its host's capacity is free again). */
export async function releasePlacement(db: Kysely<Schema>, serverId: string): Promise<void> {
  await db.deleteFrom('placements').where('server_id', '=', serverId).execute();
  await db.deleteFrom('server_group_members').where('server_id', '=', serverId).execute();
}
