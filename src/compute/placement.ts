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
  const group = req.groupId ? await lockGroup(tx, dialect, req.groupId, null) : undefined;
  if (group) {
    if (group.size >= GROUP_QUOTA.members)
      throw forbidden(`Quota exceeded, too many servers in group (at most ${GROUP_QUOTA.members}).`);
    await tx
      .insertInto('server_group_members')
      .values({ server_id: req.serverId, group_id: group.view.id, created_at: nowIso() })
      .execute();
  }
  const hosts = await lockHosts(tx, dialect);
  const { serverId: _, groupId: __, eligible, ...want } = req;
  const candidates = hosts.filter((h) => eligible.has(h.name));
  const result = schedule(await HostService.views(tx, candidates), {
    ...want,
    ...(group ? { group: group.view } : {}),
  });
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

/**
 * The group row's lock, then its members' hosts (all but `except`), as the
 * scheduler sees them. Always before the hosts' locks (lockHosts).
 */
async function lockGroup(
  tx: Kysely<Schema>,
  dialect: Dialect,
  groupId: string,
  except: string | null,
): Promise<{ view: GroupView; size: number }> {
  const g = await tx
    .selectFrom('server_groups')
    .select(['id', 'policy', 'rules'])
    .where('id', '=', groupId)
    .$if(dialect === 'postgres', (q) => q.forUpdate())
    .executeTakeFirstOrThrow();
  const members = (
    await tx
      .selectFrom('server_group_members as m')
      .leftJoin('placements as p', 'p.server_id', 'm.server_id')
      .select(['m.server_id', 'p.host'])
      .where('m.group_id', '=', g.id)
      .execute()
  ).filter((m) => m.server_id !== except);
  const rules = JSON.parse(g.rules) as GroupRules;
  return {
    size: members.length,
    view: {
      id: g.id,
      policy: g.policy as GroupPolicy,
      memberHosts: members.flatMap((m) => (m.host ? [m.host] : [])),
      ...(rules.max_server_per_host ? { maxServerPerHost: rules.max_server_per_host } : {}),
    },
  };
}

/** Every up host, locked by name (PostgreSQL), so the usage read cannot change before the claim commits. */
function lockHosts(tx: Kysely<Schema>, dialect: Dialect) {
  return tx
    .selectFrom('hosts')
    .selectAll()
    .where('state', '=', 'up')
    .orderBy('name')
    .$if(dialect === 'postgres', (q) => q.forUpdate())
    .execute();
}

/**
 * Moves a placed server's claim to another host (live or cold migration,
 * evacuation), with the same filters, the same locks in the same order, and
 * its server group's policy counted without itself: never its current host,
 * only `host` when one is asked (Nova still checks it), only eligible hosts.
 */
export async function claimMove(
  tx: Kysely<Schema>,
  dialect: Dialect,
  req: Omit<PlacementRequest, 'group'> & {
    serverId: string;
    from: string;
    host?: string;
    eligible: ReadonlySet<string>;
  },
): Promise<ScheduleResult> {
  const m = await tx
    .selectFrom('server_group_members')
    .select('group_id')
    .where('server_id', '=', req.serverId)
    .executeTakeFirst();
  const group = m ? await lockGroup(tx, dialect, m.group_id, req.serverId) : undefined;
  const hosts = (await lockHosts(tx, dialect)).filter(
    (h) => req.eligible.has(h.name) && h.name !== req.from && (!req.host || h.name === req.host),
  );
  // Its own claim does not count against the candidates (it is on none of them).
  const { serverId, from: _, host: __, eligible: ___, ...want } = req;
  const result = schedule(await HostService.views(tx, hosts), {
    ...want,
    ...(group ? { group: group.view } : {}),
  });
  if (!result.ok) return result;
  await tx
    .updateTable('placements')
    .set({ host: result.ranked[0] as string })
    .where('server_id', '=', serverId)
    .execute();
  return result;
}

/** A deleted server's claim and group membership go (its host's capacity is free again). */
export async function releasePlacement(db: Kysely<Schema>, serverId: string): Promise<void> {
  await db.deleteFrom('placements').where('server_id', '=', serverId).execute();
  await db.deleteFrom('server_group_members').where('server_id', '=', serverId).execute();
}
