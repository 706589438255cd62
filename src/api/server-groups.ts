import { Type } from '@fastify/type-provider-typebox';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { Static } from 'typebox';
import type { ServerGroup } from '../compute/server-groups.js';
import { BulwarkError, badRequest, forbidden } from '../errors.js';
import type { ApiContext } from './server.js';

/** The highest compute microversion offered, and only on these routes (2.64: `policy` + `rules`). */
export const GROUPS_MAX_MINOR = 64;

/**
 * The compute microversion a request asks for, as a minor number of 2.x.
 * `max` is the highest the route offers; above it is Nova's 406.
 */
export function microversionOf(req: FastifyRequest, max: number): number {
  const asked = req.headers['openstack-api-version'] ?? req.headers['x-openstack-nova-api-version'];
  const v =
    typeof asked === 'string'
      ? asked
          .replace(/^compute\s+/i, '')
          .trim()
          .toLowerCase()
      : '';
  if (v === '' || v === 'min') return 1;
  if (v === 'latest') return max;
  const m = /^2\.(\d{1,3})$/.exec(v);
  const minor = m ? Number(m[1]) : -1;
  if (minor < 1 || minor > max)
    throw new BulwarkError(
      'NotAcceptable',
      `Version ${v} is not supported by the API. Minimum is 2.1 and maximum is 2.${max}${max > 1 ? ' (server groups only; other compute routes offer 2.1)' : ''}.`,
    );
  return minor;
}

const IdParam = Type.Object({
  id: Type.String({ minLength: 1, maxLength: 64, pattern: '^[A-Za-z0-9_.-]+$' }),
});
const Name = Type.String({
  minLength: 1,
  maxLength: 255,
  pattern: '^[^\\x00-\\x1f]*[^\\x00-\\x1f\\s][^\\x00-\\x1f]*$',
});
const Policy = Type.String({ minLength: 1, maxLength: 255 });
const Body = Type.Object(
  {
    server_group: Type.Object(
      {
        name: Name,
        // Before 2.64: a list of exactly one policy; from 2.64: `policy` and optional `rules`.
        policies: Type.Optional(Type.Array(Policy, { minItems: 1, maxItems: 1 })),
        policy: Type.Optional(Policy),
        rules: Type.Optional(
          Type.Object(
            {
              max_server_per_host: Type.Optional(
                Type.Union([Type.Integer(), Type.String({ maxLength: 10 })]),
              ),
            },
            { additionalProperties: false },
          ),
        ),
      },
      { additionalProperties: false },
    ),
  },
  { additionalProperties: false },
);
const ListQuery = Type.Object({
  all_projects: Type.Optional(Type.String({ maxLength: 8 })),
  limit: Type.Optional(Type.Integer({ minimum: 0 })),
  offset: Type.Optional(Type.Integer({ minimum: 0 })),
});

/**
 * Nova server groups (`/os-server-groups`, docs/multi-host.md). Policies are
 * fixed at creation; `--hint group=<id>` on server create joins one.
 */
export function registerServerGroupApi(app: FastifyInstance, ctx: ApiContext, prefix: string): void {
  const { groups } = ctx.compute;
  const url = `${prefix}/os-server-groups`;

  const view = (g: ServerGroup, minor: number) => {
    const common = {
      id: g.id,
      name: g.name,
      members: g.members,
      project_id: g.project_id,
      user_id: g.user_id,
    };
    return minor >= 64
      ? { ...common, policy: g.policy, rules: JSON.parse(g.rules) as Record<string, unknown> }
      : { ...common, policies: [g.policy], metadata: {} };
  };

  app.get(
    url,
    { schema: { querystring: ListQuery }, config: { action: 'compute:os-server-groups:index' } },
    async (req) => {
      const q = req.query as Static<typeof ListQuery>;
      const all = q.all_projects !== undefined && !['0', 'false', 'False'].includes(q.all_projects);
      if (all && !req.auth?.isAdmin)
        throw forbidden('Only administrators may list server groups across projects.');
      const minor = microversionOf(req, GROUPS_MAX_MINOR);
      const list = await groups.list(req.auth!, { allProjects: all });
      const from = q.offset ?? 0;
      return {
        server_groups: list
          .slice(from, q.limit === undefined ? undefined : from + q.limit)
          .map((g) => view(g, minor)),
      };
    },
  );
  app.post(
    url,
    {
      schema: { body: Body },
      config: { action: 'compute:os-server-groups:create', targetType: 'server_group' },
    },
    async (req) => {
      const minor = microversionOf(req, GROUPS_MAX_MINOR);
      const b = (req.body as Static<typeof Body>).server_group;
      let policy: string;
      if (minor >= 64) {
        if (b.policies !== undefined || b.policy === undefined)
          throw badRequest("From microversion 2.64 give 'policy' (one string), not 'policies'.");
        policy = b.policy;
      } else {
        if (b.policy !== undefined || b.rules !== undefined || b.policies === undefined)
          throw badRequest(
            "Before microversion 2.64 give 'policies' (a list of one); 'policy' and 'rules' need 2.64.",
          );
        policy = b.policies[0] as string;
        if (policy.startsWith('soft-') && minor < 15)
          throw badRequest(`The ${policy} policy needs microversion 2.15 or later.`);
      }
      const g = await groups.create(req.auth!, {
        name: b.name,
        policy,
        ...(b.rules ? { rules: b.rules } : {}),
      });
      req.auditNote.targetId = g.id;
      return { server_group: view(g, minor) };
    },
  );
  app.get(
    `${url}/:id`,
    { schema: { params: IdParam }, config: { action: 'compute:os-server-groups:show' } },
    async (req) => ({
      server_group: view(
        await groups.get(req.auth!, (req.params as { id: string }).id),
        microversionOf(req, GROUPS_MAX_MINOR),
      ),
    }),
  );
  app.delete(
    `${url}/:id`,
    {
      schema: { params: IdParam },
      config: { action: 'compute:os-server-groups:delete', targetType: 'server_group' },
    },
    async (req, reply) => {
      await groups.delete(req.auth!, (req.params as { id: string }).id);
      return reply.code(204).send();
    },
  );
}
