import { Type } from '@fastify/type-provider-typebox';
import type { FastifyInstance } from 'fastify';
import type { Static } from 'typebox';
import { APPROVAL_STATUSES } from '../governance/approvals.js';
import { BULWARK_PREFIX } from './bulwark.js';
import type { ApiContext } from './server.js';

const Opt = Type.Optional;
const IdParam = Type.Object({
  id: Type.String({ minLength: 1, maxLength: 64, pattern: '^[A-Za-z0-9_.-]+$' }),
});
const KindParam = Type.Object({
  kind: Type.String({ minLength: 1, maxLength: 64, pattern: '^[a-z0-9-]+$' }),
});
const ListQuery = Type.Object(
  {
    status: Opt(Type.Union(APPROVAL_STATUSES.map((s) => Type.Literal(s)))),
    kind: Opt(Type.String({ maxLength: 64, pattern: '^[a-z0-9-]+$' })),
    /** Admins see every project's by default; `false` narrows to the token's project. */
    all_projects: Opt(Type.Boolean()),
  },
  { additionalProperties: false },
);
const Reason = Type.String({ minLength: 1, maxLength: 1024, pattern: '\\S' });
const DecisionBody = Type.Object({ reason: Reason }, { additionalProperties: false });
const TriggerBody = Type.Object(
  {
    trigger: Type.Object(
      {
        enabled: Opt(Type.Boolean()),
        params: Opt(
          Type.Record(Type.String({ pattern: '^[a-z_]{1,32}$' }), Type.Integer({ minimum: 0 }), {
            maxProperties: 16,
          }),
        ),
      },
      { additionalProperties: false, minProperties: 1 },
    ),
  },
  { additionalProperties: false },
);

/**
 * Approvals under /bulwark/v1 (docs/approvals.md): anyone with a role sees
 * their project's; only a cloud admin who did not ask decides, with a reason.
 */
export function registerApprovalApi(app: FastifyInstance, ctx: ApiContext): void {
  const { approvals } = ctx;
  const base = `${BULWARK_PREFIX}/approvals`;

  app.get(base, { schema: { querystring: ListQuery }, config: { action: 'approval:list' } }, async (req) => {
    const q = req.query as Static<typeof ListQuery>;
    return {
      approvals: await approvals.list(req.auth!, {
        status: q.status,
        kind: q.kind,
        allProjects: q.all_projects,
      }),
    };
  });
  app.get(
    `${base}/:id`,
    { schema: { params: IdParam }, config: { action: 'approval:show' } },
    async (req) => ({ approval: await approvals.get(req.auth!, (req.params as { id: string }).id) }),
  );
  for (const decision of ['approve', 'reject'] as const) {
    app.post(
      `${base}/:id/${decision}`,
      {
        schema: { params: IdParam, body: DecisionBody },
        config: { action: `approval:${decision}`, targetType: 'approval' },
      },
      async (req) => {
        const { id } = req.params as { id: string };
        const { reason } = req.body as Static<typeof DecisionBody>;
        req.auditNote.reason = reason;
        const approval = await (decision === 'approve'
          ? approvals.approve(req.auth!, id, reason)
          : approvals.reject(req.auth!, id, reason));
        if (approval.error) req.auditNote.reason = `${reason}; failed: ${approval.error}`;
        return { approval };
      },
    );
  }

  app.get(
    `${BULWARK_PREFIX}/approval-triggers`,
    { config: { action: 'approval:triggers:list' } },
    async () => ({
      triggers: await approvals.triggers(),
    }),
  );
  app.put(
    `${BULWARK_PREFIX}/approval-triggers/:kind`,
    {
      schema: { params: KindParam, body: TriggerBody },
      config: { action: 'approval:triggers:update', targetType: 'approval-trigger' },
    },
    async (req) => {
      const { kind } = req.params as { kind: string };
      req.auditNote.targetId = kind;
      const { trigger } = req.body as Static<typeof TriggerBody>;
      return { trigger: await approvals.setTrigger(req.auth!, kind, trigger) };
    },
  );
}
