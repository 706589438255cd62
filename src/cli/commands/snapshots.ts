import type { Command } from 'commander';
import type { BulwarkClient } from '../client.js';
import { findByNameOrId, withClient, withFormat } from '../common.js';
import { printList, printObject } from '../output.js';

/**
 * `bulwark snapshot ...` (docs/snapshots.md): server and volume snapshots
 * with a required description, and their lifecycle policies. Volume
 * snapshots are Cinder's (`openstack volume snapshot ...` works the same).
 */

type Obj = { id: string; name?: string } & Record<string, unknown>;
const globals = (cmd: Command) =>
  cmd.optsWithGlobals<{ osCloud?: string; format: 'table' | 'json' | 'value' }>();
const COLUMNS = ['id', 'kind', 'name', 'status', 'memory', 'description', 'created_at'];

interface Target {
  server?: string;
  volume?: string;
  project?: string;
}

const server = (c: BulwarkClient, ref: string) => findByNameOrId<Obj>(c, 'compute', 'servers', 'server', ref);
const volume = (c: BulwarkClient, ref: string) =>
  findByNameOrId<Obj>(c, 'volumev3', 'volumes', 'volume', ref);

/** `none` or a whole number. */
const limit = (flag: string) => (v: string) => {
  if (v === 'none') return null;
  if (!/^\d+$/.test(v)) throw new Error(`${flag} takes a whole number or "none"`);
  return Number(v);
};

/** The policy URL for --server, --volume, --project, or (none given) the token's project. */
async function policyPath(c: BulwarkClient, o: Target): Promise<string> {
  if ([o.server, o.volume, o.project].filter(Boolean).length > 1)
    throw new Error('Give one of --server, --volume or --project.');
  if (o.server) return `/snapshot-policies/servers/${(await server(c, o.server)).id}`;
  if (o.volume) return `/snapshot-policies/volumes/${(await volume(c, o.volume)).id}`;
  if (!o.project) await c.authenticate();
  const pid = o.project
    ? (await findByNameOrId<Obj>(c, 'identity', 'projects', 'project', o.project)).id
    : (c.tokenInfo.project as { id?: string } | undefined)?.id;
  if (!pid) throw new Error('No project: use a project-scoped token or --project.');
  return `/snapshot-policies/projects/${String(pid)}`;
}

const printPolicy = (format: 'table' | 'json' | 'value', p: Obj) => {
  const fmt = (x: unknown) => {
    const v = x as { max_count: number | null; max_age_days: number | null; prune_oldest: boolean } | null;
    return v
      ? `max_count=${v.max_count ?? 'none'} max_age_days=${v.max_age_days ?? 'none'} prune_oldest=${v.prune_oldest}`
      : 'none';
  };
  if (format === 'json') return printObject(format, p);
  printObject(format, {
    scope: p.scope,
    target_id: p.target_id,
    project: fmt(p.project),
    ...(p.scope === 'project' ? {} : { resource: fmt(p.resource) }),
    effective: fmt(p.effective),
  });
};

export function registerSnapshotCommands(program: Command): void {
  const snapshot = program
    .command('snapshot')
    .description('Server and volume snapshots (a description is required) and their lifecycle policies');

  withFormat(
    snapshot
      .command('create <purpose>')
      .description('Snapshot a server or a volume; the name becomes <purpose>-<UTC time>')
      .option('--server <server>', 'snapshot this server’s disk')
      .option('--volume <volume>', 'snapshot this volume')
      .requiredOption('--description <text>', 'why the snapshot is taken (required)')
      .option('--memory', 'server: RAM and device state too (the server must be running)')
      .option('--force', 'volume: allow an in-use volume'),
  ).action(
    async (
      purpose: string,
      o: { server?: string; volume?: string; description: string; memory?: boolean; force?: boolean },
      cmd: Command,
    ) => {
      const g = globals(cmd);
      if (!o.server === !o.volume) throw new Error('Give one of --server or --volume.');
      await withClient(g, async (c) => {
        let s: Obj;
        if (o.server) {
          const id = (await server(c, o.server)).id;
          s = (
            await c.request<{ snapshot: Obj }>('bulwark', 'POST', `/servers/${id}/snapshots`, {
              snapshot: { name: purpose, description: o.description, memory: o.memory === true },
            })
          ).snapshot;
        } else {
          const id = (await volume(c, o.volume as string)).id;
          const v = (
            await c.request<{ snapshot: Obj }>('volumev3', 'POST', '/snapshots', {
              snapshot: { volume_id: id, name: purpose, description: o.description, force: o.force === true },
            })
          ).snapshot;
          s = { ...v, warning: v['bulwark:warning'] };
        }
        if (typeof s.warning === 'string') process.stderr.write(`Warning: ${s.warning}\n`);
        printObject(g.format, s);
      });
    },
  );

  withFormat(
    snapshot
      .command('list')
      .description('List snapshots of both kinds in your project')
      .option('--server <server>', 'only this server’s')
      .option('--volume <volume>', 'only this volume’s')
      .option('--all-projects', 'cloud admin: every project'),
  ).action(async (o: { server?: string; volume?: string; allProjects?: boolean }, cmd: Command) => {
    const g = globals(cmd);
    await withClient(g, async (c) => {
      const q = new URLSearchParams();
      if (o.server) q.set('server', String((await server(c, o.server)).id));
      if (o.volume) q.set('volume', String((await volume(c, o.volume)).id));
      if (o.allProjects) q.set('all_projects', 'true');
      const r = await c.request<{ snapshots: Obj[] }>('bulwark', 'GET', `/snapshots?${q}`);
      printList(g.format, COLUMNS, r.snapshots);
    });
  });

  withFormat(snapshot.command('show <id>').description('Show a snapshot')).action(
    async (id: string, _o, cmd: Command) => {
      const g = globals(cmd);
      await withClient(g, async (c) => {
        printObject(
          g.format,
          (await c.request<{ snapshot: Obj }>('bulwark', 'GET', `/snapshots/${encodeURIComponent(id)}`))
            .snapshot,
        );
      });
    },
  );

  snapshot
    .command('delete <id...>')
    .description('Delete snapshots')
    .action(async (ids: string[], _o, cmd: Command) => {
      await withClient(globals(cmd), async (c) => {
        for (const id of ids) await c.request('bulwark', 'DELETE', `/snapshots/${encodeURIComponent(id)}`);
      });
    });

  const policy = snapshot
    .command('policy')
    .description('Lifecycle policies: maximum count and age, per project (admin) or per server/volume');
  const targetOptions = (c: Command) =>
    c
      .option('--server <server>', 'this server’s own policy')
      .option('--volume <volume>', 'this volume’s own policy')
      .option('--project <project>', 'this project’s policy (default: your token’s project)');

  withFormat(
    targetOptions(
      policy.command('show').description('Show the project’s, the resource’s and the effective policy'),
    ),
  ).action(async (o: Target, cmd: Command) => {
    const g = globals(cmd);
    await withClient(g, async (c) => {
      const r = await c.request<{ snapshot_policy: Obj }>('bulwark', 'GET', await policyPath(c, o));
      printPolicy(g.format, r.snapshot_policy);
    });
  });

  withFormat(
    targetOptions(
      policy
        .command('set')
        .description('Set a policy (project: admin; server/volume: members, can only tighten the project’s)')
        .option('--max-count <n|none>', 'most snapshots each server or volume keeps', limit('--max-count'))
        .option('--max-age-days <n|none>', 'the scheduler prunes older snapshots', limit('--max-age-days'))
        .option('--prune-oldest', 'at the count, a new snapshot prunes the oldest')
        .option('--no-prune-oldest', 'at the count, a new snapshot is refused'),
    ),
  ).action(
    async (
      o: Target & { maxCount?: number | null; maxAgeDays?: number | null; pruneOldest?: boolean },
      cmd: Command,
    ) => {
      const g = globals(cmd);
      await withClient(g, async (c) => {
        const body = {
          ...(o.maxCount !== undefined ? { max_count: o.maxCount } : {}),
          ...(o.maxAgeDays !== undefined ? { max_age_days: o.maxAgeDays } : {}),
          ...(o.pruneOldest !== undefined ? { prune_oldest: o.pruneOldest } : {}),
        };
        const r = await c.request<{ snapshot_policy: Obj }>('bulwark', 'PUT', await policyPath(c, o), {
          snapshot_policy: body,
        });
        printPolicy(g.format, r.snapshot_policy);
      });
    },
  );

  targetOptions(policy.command('unset').description('Remove a policy')).action(
    async (o: Target, cmd: Command) => {
      await withClient(globals(cmd), async (c) => {
        await c.request('bulwark', 'DELETE', await policyPath(c, o));
      });
    },
  );
}
