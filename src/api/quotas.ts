import { Type } from '@fastify/type-provider-typebox';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { badRequest, forbidden, notFound } from '../errors.js';
import type { Action } from '../policy/rules.js';
import type { QuotaDeltas, QuotaValues } from '../quotas/service.js';
import type { ApiContext } from './server.js';

/**
 * Quotas (docs/quotas.md) in the three dialects the openstack CLI speaks:
 * Nova `os-quota-sets` and `limits`, Cinder `os-quota-sets` and `limits`,
 * Neutron `quotas`. The project named in the URL is the policy target: a
 * project reads its own; only the cloud admin sets or resets any.
 */
const Limit = Type.Integer({ minimum: -1 });
const Opt = Type.Optional;
const ProjectId = Type.String({ minLength: 1, maxLength: 255, pattern: '^[^/\\x00-\\x1f]+$' });
const IdParam = Type.Object({ id: ProjectId });
const CinderParams = Type.Object({ project_id: Opt(ProjectId), id: ProjectId });
const UserQuery = Type.Object({ user_id: Opt(Type.String({ minLength: 1, maxLength: 255 })) });
const CinderQuery = Type.Object({ usage: Opt(Type.String({ maxLength: 8 })) });
const LimitsQuery = Type.Object({
  reserved: Opt(Type.String({ maxLength: 8 })),
  tenant_id: Opt(Type.String({ maxLength: 255 })),
  project_id: Opt(Type.String({ maxLength: 255 })),
});

const NovaBody = Type.Object(
  {
    quota_set: Type.Object(
      {
        instances: Opt(Limit),
        cores: Opt(Limit),
        ram: Opt(Limit),
        security_groups: Opt(Limit),
        security_group_rules: Opt(Limit),
        force: Opt(Type.Union([Type.Boolean(), Type.String({ maxLength: 8 })])),
      },
      { additionalProperties: false },
    ),
  },
  { additionalProperties: false },
);
const CinderBody = Type.Object(
  {
    quota_set: Type.Object(
      { volumes: Opt(Limit), gigabytes: Opt(Limit), tenant_id: Opt(ProjectId) },
      { additionalProperties: false },
    ),
  },
  { additionalProperties: false },
);
const NeutronBody = Type.Object(
  {
    quota: Type.Object(
      { security_group: Opt(Limit), security_group_rule: Opt(Limit) },
      { additionalProperties: false },
    ),
  },
  { additionalProperties: false },
);

/** Nova fields this platform has no resource for: shown as Nova's defaults, never enforced here. */
const NOVA_FIXED = {
  fixed_ips: -1,
  floating_ips: -1,
  injected_file_content_bytes: 10240,
  injected_file_path_bytes: 255,
  injected_files: 5,
  key_pairs: 100,
  metadata_items: 128,
  server_group_members: 10,
  server_groups: 10,
};
/** Neutron resources without a quota here (-1: unlimited, honestly). */
const NEUTRON_FIXED = { network: -1, subnet: -1, port: -1, router: -1, floatingip: -1, rbac_policy: -1 };

const novaSet = (id: string, q: QuotaValues) => ({
  id,
  instances: q.instances,
  cores: q.cores,
  ram: q.ram,
  security_groups: q.security_groups,
  security_group_rules: q.security_group_rules,
  ...NOVA_FIXED,
});
const cinderSet = (id: string, q: QuotaValues) => ({
  id,
  volumes: q.volumes,
  gigabytes: q.gigabytes,
  snapshots: 0,
  backups: 0,
  backup_gigabytes: 0,
  groups: 0,
  per_volume_gigabytes: -1,
});
const neutronSet = (q: QuotaValues) => ({
  security_group: q.security_groups,
  security_group_rule: q.security_group_rules,
  ...NEUTRON_FIXED,
});

const detail = <T extends Record<string, unknown>>(limits: T, used: Record<string, number>) =>
  Object.fromEntries(
    Object.entries(limits).map(([k, v]) =>
      k === 'id' ? [k, v] : [k, { limit: v, in_use: used[k] ?? 0, reserved: 0 }],
    ),
  );

const truthy = (v: unknown) => v === true || (typeof v === 'string' && /^(1|true|yes)$/i.test(v));

export function registerQuotaApi(app: FastifyInstance, ctx: ApiContext): void {
  const { quotas } = ctx;
  const byId = (r: { params: unknown }) => ({ project_id: String((r.params as { id?: string }).id ?? '') });
  const cfg = (action: Action) => ({ action, target: byId, targetType: 'quota' });
  const projectOf = async (req: FastifyRequest): Promise<string> => {
    const id = (req.params as { id: string }).id;
    if (!(await quotas.projectExists(id))) throw notFound('project', id);
    req.auditNote.targetId = id;
    return id;
  };
  /** Per-user quotas are compute-only; a user named must hold a role on the project (checked loosely: exists). */
  const userOf = (req: FastifyRequest): string | null => (req.query as { user_id?: string }).user_id ?? null;

  // Nova
  const NOVA = '/compute/v2.1/os-quota-sets/:id';
  app.get(
    NOVA,
    { schema: { params: IdParam, querystring: UserQuery }, config: cfg('compute:os-quota-sets:show') },
    async (req) => {
      const id = await projectOf(req);
      return { quota_set: novaSet(id, await quotas.limits(id, userOf(req))) };
    },
  );
  app.get(
    `${NOVA}/detail`,
    { schema: { params: IdParam, querystring: UserQuery }, config: cfg('compute:os-quota-sets:show') },
    async (req) => {
      const id = await projectOf(req);
      const user = userOf(req);
      const used = await quotas.usage(id, user);
      return { quota_set: detail(novaSet(id, await quotas.limits(id, user)), { ...used }) };
    },
  );
  app.get(
    `${NOVA}/defaults`,
    { schema: { params: IdParam }, config: cfg('compute:os-quota-sets:show') },
    async (req) => {
      const id = (req.params as { id: string }).id;
      return { quota_set: novaSet(id, quotas.defaultLimits()) };
    },
  );
  app.put(
    NOVA,
    {
      schema: { params: IdParam, querystring: UserQuery, body: NovaBody },
      config: cfg('compute:os-quota-sets:update'),
    },
    async (req) => {
      const id = await projectOf(req);
      const { force, ...values } = (req.body as { quota_set: QuotaDeltas & { force?: unknown } }).quota_set;
      const user = userOf(req);
      const q = await quotas.set(id, values, { userId: user, force: truthy(force) });
      return { quota_set: novaSet(id, q) };
    },
  );
  app.delete(
    NOVA,
    { schema: { params: IdParam, querystring: UserQuery }, config: cfg('compute:os-quota-sets:delete') },
    async (req, reply) => {
      const id = await projectOf(req);
      await quotas.reset(id, userOf(req));
      return reply.code(202).send();
    },
  );
  app.get(
    '/compute/v2.1/limits',
    { schema: { querystring: LimitsQuery }, config: { action: 'compute:limits' } },
    async (req) => {
      const id = await limitsProject(req);
      const [q, u] = await Promise.all([quotas.limits(id, req.auth?.userId), quotas.usage(id)]);
      return {
        limits: {
          rate: [],
          absolute: {
            maxTotalInstances: q.instances,
            maxTotalCores: q.cores,
            maxTotalRAMSize: q.ram,
            maxSecurityGroups: q.security_groups,
            maxSecurityGroupRules: q.security_group_rules,
            maxServerMeta: NOVA_FIXED.metadata_items,
            maxImageMeta: NOVA_FIXED.metadata_items,
            maxPersonality: NOVA_FIXED.injected_files,
            maxPersonalitySize: NOVA_FIXED.injected_file_content_bytes,
            maxTotalKeypairs: NOVA_FIXED.key_pairs,
            maxServerGroups: NOVA_FIXED.server_groups,
            maxServerGroupMembers: NOVA_FIXED.server_group_members,
            maxTotalFloatingIps: -1,
            totalInstancesUsed: u.instances,
            totalCoresUsed: u.cores,
            totalRAMUsed: u.ram,
            totalSecurityGroupsUsed: u.security_groups,
            totalFloatingIpsUsed: 0,
            totalServerGroupsUsed: 0,
          },
        },
      };
    },
  );
  /** The token's project; a cloud admin may name another with `tenant_id`/`project_id`, as Nova allows. */
  async function limitsProject(req: FastifyRequest): Promise<string> {
    const q = req.query as { tenant_id?: string; project_id?: string };
    const named = q.tenant_id ?? q.project_id;
    if (named !== undefined && named !== req.auth?.projectId) {
      if (!req.auth?.isAdmin) throw forbidden('Only the cloud admin may see another project\u2019s limits.');
      if (!(await quotas.projectExists(named))) throw notFound('project', named);
      return named;
    }
    if (!req.auth?.projectId) throw badRequest('A project-scoped token is needed to show limits.');
    return req.auth.projectId;
  }

  // Cinder, under `/volume/v3` and `/volume/v3/{project_id}` (the URL's project must be the token's unless admin).
  for (const prefix of ['/volume/v3', '/volume/v3/:project_id']) {
    const urlProject = (req: FastifyRequest) => {
      const pid = (req.params as { project_id?: string }).project_id;
      if (pid !== undefined && !req.auth?.isAdmin && pid !== req.auth?.projectId)
        throw forbidden('Policy does not allow this project in the URL.');
    };
    const CINDER = `${prefix}/os-quota-sets/:id`;
    app.get(
      CINDER,
      { schema: { params: CinderParams, querystring: CinderQuery }, config: cfg('volume:quotas:show') },
      async (req) => {
        urlProject(req);
        const id = await projectOf(req);
        const set = cinderSet(id, await quotas.limits(id));
        if (!truthy((req.query as { usage?: string }).usage)) return { quota_set: set };
        return { quota_set: detail(set, { ...(await quotas.usage(id)) }) };
      },
    );
    app.get(
      `${CINDER}/defaults`,
      { schema: { params: CinderParams }, config: cfg('volume:quotas:show') },
      async (req) => {
        urlProject(req);
        return { quota_set: cinderSet((req.params as { id: string }).id, quotas.defaultLimits()) };
      },
    );
    app.put(
      CINDER,
      { schema: { params: CinderParams, body: CinderBody }, config: cfg('volume:quotas:update') },
      async (req) => {
        urlProject(req);
        const id = await projectOf(req);
        const { tenant_id: _t, ...values } = (req.body as { quota_set: QuotaDeltas & { tenant_id?: string } })
          .quota_set;
        // Cinder lets a limit go below what is in use; so do we (new volumes are refused until usage drops).
        return { quota_set: cinderSet(id, await quotas.set(id, values, { force: true })) };
      },
    );
    app.delete(
      CINDER,
      { schema: { params: CinderParams }, config: cfg('volume:quotas:delete') },
      async (req, reply) => {
        urlProject(req);
        const id = await projectOf(req);
        // Only Cinder's resources go back to the defaults.
        await quotas.reset(id, null, ['volumes', 'gigabytes']);
        return reply.code(200).send({});
      },
    );
    app.get(
      `${prefix}/limits`,
      {
        schema: { querystring: LimitsQuery },
        config: {
          action: 'volume:limits' as const,
          ...(prefix.includes(':project_id')
            ? {
                target: (r: { params: unknown }) => ({
                  project_id: String((r.params as { project_id?: string }).project_id ?? ''),
                }),
              }
            : {}),
        },
      },
      async (req) => {
        urlProject(req);
        const id = await limitsProject(req);
        const [q, u] = await Promise.all([quotas.limits(id), quotas.usage(id)]);
        return {
          limits: {
            rate: [],
            absolute: {
              maxTotalVolumes: q.volumes,
              maxTotalVolumeGigabytes: q.gigabytes,
              maxTotalSnapshots: 0,
              maxTotalBackups: 0,
              maxTotalBackupGigabytes: 0,
              totalVolumesUsed: u.volumes,
              totalGigabytesUsed: u.gigabytes,
              totalSnapshotsUsed: 0,
              totalBackupsUsed: 0,
              totalBackupGigabytesUsed: 0,
            },
          },
        };
      },
    );
  }

  // Neutron (openstacksdk also asks for `details.json` and `default.json`).
  const NEUTRON = '/network/v2.0/quotas/:id';
  app.get(NEUTRON, { schema: { params: IdParam }, config: cfg('network:get_quota') }, async (req) => {
    const id = await projectOf(req);
    return { quota: neutronSet(await quotas.limits(id)) };
  });
  for (const suffix of ['', '.json']) {
    app.get(
      `${NEUTRON}/details${suffix}`,
      { schema: { params: IdParam }, config: cfg('network:get_quota') },
      async (req) => {
        const id = await projectOf(req);
        const used = await quotas.usage(id);
        const inUse: Record<string, number> = {
          security_group: used.security_groups,
          security_group_rule: used.security_group_rules,
        };
        const set = neutronSet(await quotas.limits(id));
        return {
          quota: Object.fromEntries(
            Object.entries(set).map(([k, v]) => [k, { limit: v, used: inUse[k] ?? 0, reserved: 0 }]),
          ),
        };
      },
    );
    app.get(
      `${NEUTRON}/default${suffix}`,
      { schema: { params: IdParam }, config: cfg('network:get_quota') },
      async () => ({
        quota: neutronSet(quotas.defaultLimits()),
      }),
    );
  }
  app.put(
    NEUTRON,
    { schema: { params: IdParam, body: NeutronBody }, config: cfg('network:update_quota') },
    async (req) => {
      const id = await projectOf(req);
      const b = (req.body as { quota: { security_group?: number; security_group_rule?: number } }).quota;
      const values: QuotaDeltas = {
        ...(b.security_group !== undefined ? { security_groups: b.security_group } : {}),
        ...(b.security_group_rule !== undefined ? { security_group_rules: b.security_group_rule } : {}),
      };
      // Neutron lets a limit go below what is in use; so do we.
      return { quota: neutronSet(await quotas.set(id, values, { force: true })) };
    },
  );
  app.delete(
    NEUTRON,
    { schema: { params: IdParam }, config: cfg('network:delete_quota') },
    async (req, reply) => {
      const id = await projectOf(req);
      await quotas.reset(id, null, ['security_groups', 'security_group_rules']);
      return reply.code(204).send();
    },
  );
}
