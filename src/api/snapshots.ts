import { Type } from '@fastify/type-provider-typebox';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Static } from 'typebox';
import type { Action } from '../policy/rules.js';
import type { LifecyclePolicy } from '../snapshots/lifecycle.js';
import type { PolicyScope } from '../snapshots/policies.js';
import type { Snapshot } from '../snapshots/snapshots.js';
import { BULWARK_PREFIX } from './bulwark.js';
import { cinderListQuery } from './cinder-query.js';
import type { ApiContext } from './server.js';

/**
 * Snapshots (docs/snapshots.md): Cinder v3's volume snapshots (registered
 * into the volume API's routes, both URL forms), and under /bulwark/v1
 * server snapshots (disk, or disk and memory), one list of both kinds, and
 * the lifecycle policies. A snapshot without a description is refused (400).
 */
const Opt = Type.Optional;
const Nullable = <T extends ReturnType<typeof Type.String>>(t: T) => Type.Union([t, Type.Null()]);
const Text = Type.String({ maxLength: 255, pattern: '^[^\\x00-\\x1f]*$' });
const Id = Type.String({ minLength: 1, maxLength: 64, pattern: '^[A-Za-z0-9_.-]+$' });
const MetaMap = Type.Record(Type.String({ minLength: 1, maxLength: 255 }), Type.String({ maxLength: 255 }), {
  maxProperties: 64,
});
/** What cinderclient sends for `openstack volume snapshot create`. */
const VolumeSnapshotBody = Type.Object(
  {
    snapshot: Type.Object(
      {
        volume_id: Id,
        name: Opt(Nullable(Text)),
        description: Opt(Nullable(Text)),
        force: Opt(Type.Union([Type.Boolean(), Type.Null()])),
        metadata: Opt(Type.Union([MetaMap, Type.Null()])),
      },
      { additionalProperties: false },
    ),
  },
  { additionalProperties: false },
);
const ServerSnapshotBody = Type.Object(
  {
    snapshot: Type.Object(
      {
        name: Text,
        description: Opt(Nullable(Text)),
        memory: Opt(Type.Boolean()),
        metadata: Opt(MetaMap),
      },
      { additionalProperties: false },
    ),
  },
  { additionalProperties: false },
);
const Limit = (max: number) => Opt(Type.Union([Type.Integer({ minimum: 1, maximum: max }), Type.Null()]));
const PolicyBody = Type.Object(
  {
    snapshot_policy: Type.Object(
      { max_count: Limit(1000), max_age_days: Limit(3650), prune_oldest: Opt(Type.Boolean()) },
      { additionalProperties: false },
    ),
  },
  { additionalProperties: false },
);
const CinderListQuery = cinderListQuery({ volume_id: Opt(Type.String()), project_id: Opt(Type.String()) });
const ListQuery = Type.Object(
  {
    kind: Opt(Type.Union([Type.Literal('server'), Type.Literal('volume')])),
    server: Opt(Id),
    volume: Opt(Id),
    all_projects: Opt(Type.Boolean()),
  },
  { additionalProperties: false },
);
const IdParam = Type.Object({ id: Id });
const ProjectParam = Type.Object({ project_id: Id });

type Handler = (req: FastifyRequest, reply: FastifyReply) => Promise<unknown>;
/** The volume API's route helper (both `/volume/v3` URL forms). */
export type CinderRoute = (
  method: 'GET' | 'POST' | 'PUT' | 'DELETE',
  path: string,
  action: Action,
  schema: Record<string, unknown>,
  handler: Handler,
  targetType?: string,
) => void;

const WARNING_HEADER = 'x-bulwark-snapshot-warning';
const meta = (s: Snapshot) => JSON.parse(s.metadata) as Record<string, string>;
const param = (req: FastifyRequest, k: string) => String((req.params as Record<string, string>)[k]);

/** Cinder's snapshot view, plus the purpose, the fault and (on create) the policy's warning. */
const cinderView = (s: Snapshot, warning: string | null = null) => ({
  id: s.id,
  name: s.name,
  description: s.description,
  volume_id: s.resource_id,
  status: s.status,
  size: s.size,
  metadata: meta(s),
  created_at: s.created_at,
  updated_at: s.updated_at,
  'os-extended-snapshot-attributes:project_id': s.project_id,
  'os-extended-snapshot-attributes:progress': s.status === 'available' ? '100%' : '0%',
  'bulwark:purpose': s.purpose,
  'bulwark:fault': s.fault,
  ...(warning ? { 'bulwark:warning': warning } : {}),
});

const snapshotView = (s: Snapshot, warning: string | null = null) => ({
  id: s.id,
  kind: s.kind,
  ...(s.kind === 'server' ? { server_id: s.resource_id } : { volume_id: s.resource_id }),
  name: s.name,
  purpose: s.purpose,
  description: s.description,
  memory: s.memory === 1,
  status: s.status,
  fault: s.fault,
  size: s.size,
  project_id: s.project_id,
  user_id: s.user_id,
  metadata: meta(s),
  created_at: s.created_at,
  updated_at: s.updated_at,
  ...(warning ? { warning } : {}),
});

const policyView = (p: LifecyclePolicy | null) =>
  p ? { max_count: p.maxCount, max_age_days: p.maxAgeDays, prune_oldest: p.pruneOldest } : null;

/** Cinder v3 snapshots, registered by api/volumes.ts with its route helper. */
export function registerVolumeSnapshotRoutes(route: CinderRoute, ctx: ApiContext): void {
  const { snapshots } = ctx.snapshots;
  const list = (detail: boolean) => async (req: FastifyRequest) => {
    const q = req.query as Static<typeof CinderListQuery>;
    const all = q.all_tenants !== undefined && !['0', 'false', 'False'].includes(q.all_tenants);
    const rows = await snapshots.list(req.auth!, {
      kind: 'volume',
      allProjects: all,
      name: q.name,
      status: q.status,
      resourceId: q.volume_id,
    });
    const views = rows.map((s) => cinderView(s));
    return {
      snapshots: detail
        ? views
        : views.map((v) => ({
            id: v.id,
            name: v.name,
            status: v.status,
            volume_id: v.volume_id,
            size: v.size,
          })),
    };
  };
  route('GET', '/snapshots', 'volume:snapshots:list', { querystring: CinderListQuery }, list(false));
  route('GET', '/snapshots/detail', 'volume:snapshots:list', { querystring: CinderListQuery }, list(true));
  route('GET', '/snapshots/:id', 'volume:snapshots:show', {}, async (req) => ({
    snapshot: cinderView(await snapshots.get(req.auth!, param(req, 'id'), 'volume')),
  }));
  route(
    'POST',
    '/snapshots',
    'volume:snapshots:create',
    { body: VolumeSnapshotBody },
    async (req, reply) => {
      const b = (req.body as Static<typeof VolumeSnapshotBody>).snapshot;
      const { snapshot, warning } = await snapshots.create(req.auth!, 'volume', b.volume_id, {
        name: b.name,
        description: b.description,
        force: b.force === true,
        metadata: b.metadata ?? undefined,
      });
      req.auditNote.targetId = snapshot.id;
      if (warning) reply.header(WARNING_HEADER, warning);
      return reply.code(202).send({ snapshot: cinderView(snapshot, warning) });
    },
    'snapshot',
  );
  route(
    'DELETE',
    '/snapshots/:id',
    'volume:snapshots:delete',
    {},
    async (req, reply) => {
      await snapshots.delete(req.auth!, param(req, 'id'), 'volume');
      return reply.code(202).send();
    },
    'snapshot',
  );
}

/** /bulwark/v1 snapshots: server snapshots, both kinds listed, lifecycle policies. */
export async function registerSnapshotApi(app: FastifyInstance, ctx: ApiContext): Promise<void> {
  const { snapshots, policies } = ctx.snapshots;
  const { servers } = ctx.compute;
  const { volumes } = ctx.volume;

  app.post(
    `${BULWARK_PREFIX}/servers/:id/snapshots`,
    {
      schema: { params: IdParam, body: ServerSnapshotBody },
      config: { action: 'snapshot:server:create', targetType: 'server' },
    },
    async (req, reply) => {
      const b = (req.body as Static<typeof ServerSnapshotBody>).snapshot;
      const { snapshot, warning } = await snapshots.create(req.auth!, 'server', param(req, 'id'), {
        name: b.name,
        description: b.description,
        memory: b.memory === true,
        metadata: b.metadata,
      });
      if (warning) reply.header(WARNING_HEADER, warning);
      return reply.code(202).send({ snapshot: snapshotView(snapshot, warning) });
    },
  );
  app.get(
    `${BULWARK_PREFIX}/snapshots`,
    { schema: { querystring: ListQuery }, config: { action: 'snapshot:list' } },
    async (req) => {
      const q = req.query as Static<typeof ListQuery>;
      const rows = await snapshots.list(req.auth!, {
        kind: q.server ? 'server' : q.volume ? 'volume' : q.kind,
        resourceId: q.server ?? q.volume,
        allProjects: q.all_projects,
      });
      return { snapshots: rows.map((s) => snapshotView(s)) };
    },
  );
  app.get(
    `${BULWARK_PREFIX}/snapshots/:id`,
    { schema: { params: IdParam }, config: { action: 'snapshot:show' } },
    async (req) => ({ snapshot: snapshotView(await snapshots.get(req.auth!, param(req, 'id'))) }),
  );
  app.delete(
    `${BULWARK_PREFIX}/snapshots/:id`,
    { schema: { params: IdParam }, config: { action: 'snapshot:delete', targetType: 'snapshot' } },
    async (req, reply) => {
      await snapshots.delete(req.auth!, param(req, 'id'));
      return reply.code(202).send();
    },
  );

  // ---- lifecycle policies --------------------------------------------------------------------
  const view = (scope: PolicyScope, targetId: string, p: Awaited<ReturnType<typeof policies.show>>) => ({
    snapshot_policy: {
      scope,
      target_id: targetId,
      project: policyView(p.project),
      ...(scope === 'project' ? {} : { resource: policyView(p.resource) }),
      effective: policyView(p.effective),
    },
  });
  const body = (req: FastifyRequest) => {
    const b = (req.body as Static<typeof PolicyBody>).snapshot_policy;
    return { maxCount: b.max_count, maxAgeDays: b.max_age_days, pruneOldest: b.prune_oldest };
  };
  const projectUrl = `${BULWARK_PREFIX}/snapshot-policies/projects/:project_id`;
  const projectTarget = (r: { params: unknown }) => ({
    project_id: (r.params as { project_id: string }).project_id,
  });
  app.get(
    projectUrl,
    { schema: { params: ProjectParam }, config: { action: 'snapshot:policy:show', target: projectTarget } },
    async (req) => {
      const pid = param(req, 'project_id');
      return view('project', pid, await policies.show(pid, 'project', pid));
    },
  );
  app.put(
    projectUrl,
    {
      schema: { params: ProjectParam, body: PolicyBody },
      config: { action: 'snapshot:policy:project:update', target: projectTarget, targetType: 'project' },
    },
    async (req) => {
      const pid = param(req, 'project_id');
      req.auditNote.targetId = pid;
      return view('project', pid, await policies.set(req.auth!, 'project', pid, pid, body(req)));
    },
  );
  app.delete(
    projectUrl,
    {
      schema: { params: ProjectParam },
      config: { action: 'snapshot:policy:project:delete', target: projectTarget, targetType: 'project' },
    },
    async (req, reply) => {
      req.auditNote.targetId = param(req, 'project_id');
      await policies.unset('project', param(req, 'project_id'));
      return reply.code(204).send();
    },
  );

  // A server's or volume's own policy: resolved as the caller sees it (another project's: 404).
  const owner = async (req: FastifyRequest, scope: 'server' | 'volume') =>
    scope === 'server'
      ? (await servers.get(req.auth!, param(req, 'id'))).project_id
      : (await volumes.get(req.auth!, param(req, 'id'))).project_id;
  for (const scope of ['server', 'volume'] as const) {
    const url = `${BULWARK_PREFIX}/snapshot-policies/${scope}s/:id`;
    app.get(url, { schema: { params: IdParam }, config: { action: 'snapshot:policy:show' } }, async (req) => {
      const pid = await owner(req, scope);
      return view(scope, param(req, 'id'), await policies.show(pid, scope, param(req, 'id')));
    });
    app.put(
      url,
      {
        schema: { params: IdParam, body: PolicyBody },
        config: { action: 'snapshot:policy:resource:update', targetType: scope },
      },
      async (req) => {
        const pid = await owner(req, scope);
        return view(
          scope,
          param(req, 'id'),
          await policies.set(req.auth!, scope, param(req, 'id'), pid, body(req)),
        );
      },
    );
    app.delete(
      url,
      {
        schema: { params: IdParam },
        config: { action: 'snapshot:policy:resource:delete', targetType: scope },
      },
      async (req, reply) => {
        await owner(req, scope);
        await policies.unset(scope, param(req, 'id'));
        return reply.code(204).send();
      },
    );
  }
}
