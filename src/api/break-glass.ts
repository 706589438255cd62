import { Type } from '@fastify/type-provider-typebox';
import type { FastifyInstance } from 'fastify';
import type { Static } from 'typebox';
import { accessReview, DEFAULT_REVIEW_OPTIONS } from '../identity/access-review.js';
import type { BreakGlassReview } from '../identity/break-glass.js';
import { BULWARK_PREFIX } from './bulwark.js';
import type { ApiContext } from './server.js';

const BG = `${BULWARK_PREFIX}/break-glass`;
const Id = Type.String({ minLength: 1, maxLength: 64, pattern: '^[A-Za-z0-9_.-]+$' });
const IdParam = Type.Object({ id: Id });

const reviewView = (r: BreakGlassReview) => ({ ...r, open: r.closed_at === null });

/** Break-glass accounts, emergency sessions and their reviews, and the access review (docs/identity.md). */
export async function registerBreakGlassApi(app: FastifyInstance, ctx: ApiContext): Promise<void> {
  const bg = ctx.breakGlass;
  const AccountBody = Type.Object(
    {
      account: Type.Object(
        { name: Type.String({ minLength: 1, maxLength: 64, pattern: '^[A-Za-z0-9_.-]+$' }) },
        { additionalProperties: false },
      ),
    },
    { additionalProperties: false },
  );
  app.post(
    `${BG}/accounts`,
    {
      schema: { body: AccountBody },
      config: { action: 'break_glass:create_account', targetType: 'break_glass_account' },
    },
    async (req, reply) => {
      const { account } = req.body as Static<typeof AccountBody>;
      const r = await bg.createAccount(req.auth!, account.name);
      req.auditNote.targetId = r.account.id;
      return reply.code(201).send({
        account: r.account,
        secret: r.secret,
        notice:
          'This secret is shown once and not stored: print it, seal it in an envelope and keep it offline. Every use is audited as critical and reviewed.',
      });
    },
  );
  app.get(`${BG}/accounts`, { config: { action: 'break_glass:list_accounts' } }, async () => ({
    accounts: await bg.listAccounts(),
  }));
  app.delete(
    `${BG}/accounts/:id`,
    {
      schema: { params: IdParam },
      config: { action: 'break_glass:delete_account', targetType: 'break_glass_account' },
    },
    async (req, reply) => {
      await bg.deleteAccount(req.auth!, (req.params as { id: string }).id);
      return reply.code(204).send();
    },
  );

  const SessionBody = Type.Object(
    {
      session: Type.Object(
        {
          name: Type.String({ minLength: 1, maxLength: 64, pattern: '^[A-Za-z0-9_.-]+$' }),
          secret: Type.String({ minLength: 1, maxLength: 256 }),
          reason: Type.String({ minLength: 1, maxLength: 2000 }),
        },
        { additionalProperties: false },
      ),
    },
    { additionalProperties: false },
  );
  app.post(
    `${BG}/sessions`,
    {
      schema: { body: SessionBody },
      config: { action: 'break_glass:open_session', targetType: 'break_glass_review' },
    },
    async (req, reply) => {
      const { session } = req.body as Static<typeof SessionBody>;
      req.auditNote.attemptedUser = session.name;
      const { token, auth, review } = await bg.use({ ...session, sourceIp: req.ip });
      req.auth = auth;
      req.auditNote.targetId = review.id;
      return reply
        .code(201)
        .header('x-subject-token', token)
        .send({
          session: {
            token,
            user_id: auth.userId,
            project_id: auth.projectId,
            expires_at: auth.expiresAt,
            review_id: review.id,
          },
        });
    },
  );

  app.get(
    `${BG}/reviews`,
    {
      schema: {
        querystring: Type.Object({ open: Type.Optional(Type.Boolean()) }, { additionalProperties: false }),
      },
      config: { action: 'break_glass:list_reviews' },
    },
    async (req) => ({
      reviews: (await bg.listReviews({ open: (req.query as { open?: boolean }).open })).map(reviewView),
    }),
  );
  app.get(
    `${BG}/reviews/:id`,
    { schema: { params: IdParam }, config: { action: 'break_glass:get_review' } },
    async (req) => ({ review: reviewView(await bg.getReview((req.params as { id: string }).id)) }),
  );
  const CloseBody = Type.Object(
    { note: Type.String({ minLength: 1, maxLength: 10000 }) },
    { additionalProperties: false },
  );
  app.post(
    `${BG}/reviews/:id/close`,
    {
      schema: { params: IdParam, body: CloseBody },
      config: { action: 'break_glass:close_review', targetType: 'break_glass_review' },
    },
    async (req) => {
      const { note } = req.body as Static<typeof CloseBody>;
      return { review: reviewView(await bg.closeReview(req.auth!, (req.params as { id: string }).id, note)) };
    },
  );

  const ReviewQuery = Type.Object(
    {
      stale_days: Type.Optional(Type.Integer({ minimum: 1, maximum: 3650 })),
      password_max_age_days: Type.Optional(Type.Integer({ minimum: 1, maximum: 3650 })),
      admin_idle_days: Type.Optional(Type.Integer({ minimum: 1, maximum: 3650 })),
      max_privileged_projects: Type.Optional(Type.Integer({ minimum: 1, maximum: 10000 })),
    },
    { additionalProperties: false },
  );
  app.get(
    `${BULWARK_PREFIX}/access-review`,
    { schema: { querystring: ReviewQuery }, config: { action: 'access_review:get' } },
    async (req) => {
      const q = req.query as Static<typeof ReviewQuery>;
      const d = DEFAULT_REVIEW_OPTIONS;
      return {
        access_review: await accessReview(ctx.store, ctx.identity.config, {
          staleDays: q.stale_days ?? d.staleDays,
          passwordMaxAgeDays: q.password_max_age_days ?? d.passwordMaxAgeDays,
          adminIdleDays: q.admin_idle_days ?? d.adminIdleDays,
          maxPrivilegedProjects: q.max_privileged_projects ?? d.maxPrivilegedProjects,
        }),
      };
    },
  );
}
