import { Type } from '@fastify/type-provider-typebox';
import type { FastifyInstance } from 'fastify';
import { badRequest, forbidden } from '../errors.js';
import { DEFAULT_DOMAIN_ID as DEFAULT_DOMAIN, SECOND_FACTORS } from '../identity/config.js';
import { mfaRules } from '../identity/mfa-rules.js';
import { projectView, userView } from '../identity/records.js';
import { Id, IdParam, listLinks, Name, NullableString, Opt, Password, PREFIX } from './identity-schemas.js';
import type { ApiContext } from './server.js';

/** Keystone's option update: the keys sent replace the stored ones, and `null` removes a key. */
function mergeOptions(stored: string, patch: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...(JSON.parse(stored) as Record<string, unknown>) };
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete out[k];
    else out[k] = v;
  }
  return out;
}

/** Keystone's users: CRUD, the MFA options a user may set on themselves, password change, their projects. */
export async function registerUserRoutes(app: FastifyInstance, ctx: ApiContext, base: string): Promise<void> {
  const { identity, publicUrl } = ctx;
  // Keystone's MFA user options; `null` removes one (as in Keystone).
  const UserOptions = Type.Object(
    {
      multi_factor_auth_enabled: Opt(Type.Union([Type.Boolean(), Type.Null()])),
      multi_factor_auth_rules: Opt(
        Type.Union([
          Type.Array(
            Type.Array(Type.String({ minLength: 1, maxLength: 64, pattern: '^[a-z0-9_]+$' }), {
              minItems: 1,
              maxItems: 4,
            }),
            { maxItems: 10 },
          ),
          Type.Null(),
        ]),
      ),
    },
    { additionalProperties: false },
  );
  const UserFields = {
    name: Name,
    domain_id: Opt(Id),
    password: Opt(Type.Union([Password, Type.Null()])),
    enabled: Opt(Type.Boolean()),
    default_project_id: Opt(Type.Union([Id, Type.Null()])),
    email: Opt(Type.Union([Type.String({ maxLength: 255 }), Type.Null()])),
    description: Opt(NullableString),
    options: Opt(UserOptions),
  };
  type UserBody = {
    name?: string;
    domain_id?: string;
    password?: string | null;
    enabled?: boolean;
    default_project_id?: string | null;
    email?: string | null;
    description?: string | null;
    options?: Record<string, unknown>;
  };
  const userTarget = (r: { params: unknown }) => ({ user_id: (r.params as { id: string }).id });

  app.get(
    `${PREFIX}/users`,
    {
      schema: {
        querystring: Type.Object({
          name: Opt(Type.String()),
          domain_id: Opt(Type.String()),
          enabled: Opt(Type.String()),
        }),
      },
      config: {
        action: 'identity:list_users',
        // A user may look up their own name (so the CLI's name lookups work for them); admins list all.
        target: (r) => {
          const name = (r.query as { name?: unknown } | undefined)?.name;
          return { user_id: r.auth && name === r.auth.userName ? r.auth.userId : null };
        },
      },
    },
    async (req) => {
      const q = req.query as { name?: string; domain_id?: string };
      const auth = req.auth!;
      const users = await identity.listUsers({ name: q.name, domainId: q.domain_id });
      return {
        users: users.filter((u) => auth.isAdmin || u.id === auth.userId).map((u) => userView(u, base)),
        links: listLinks(req, publicUrl),
      };
    },
  );
  app.get(
    `${PREFIX}/users/:id`,
    { schema: { params: IdParam }, config: { action: 'identity:get_user', target: userTarget } },
    async (req) => ({
      user: userView(await identity.getUser((req.params as { id: string }).id), base),
    }),
  );
  app.post(
    `${PREFIX}/users`,
    {
      schema: {
        body: Type.Object(
          { user: Type.Object(UserFields, { additionalProperties: false }) },
          { additionalProperties: false },
        ),
      },
      config: { action: 'identity:create_user', targetType: 'user' },
    },
    async (req, reply) => {
      const { user } = req.body as { user: UserBody & { name: string } };
      const u = await identity.createUser({
        name: user.name,
        domainId: user.domain_id ?? DEFAULT_DOMAIN,
        password: user.password ?? undefined,
        enabled: user.enabled,
        defaultProjectId: user.default_project_id ?? undefined,
        email: user.email ?? undefined,
        description: user.description ?? undefined,
      });
      req.auditNote.targetId = u.id;
      return reply.code(201).send({ user: userView(u, base) });
    },
  );
  app.patch(
    `${PREFIX}/users/:id`,
    {
      schema: {
        params: IdParam,
        body: Type.Object(
          { user: Type.Object({ ...UserFields, name: Opt(Name) }, { additionalProperties: false }) },
          { additionalProperties: false },
        ),
      },
      config: { action: 'identity:update_user', target: userTarget, targetType: 'user' },
    },
    async (req) => {
      const { user } = req.body as { user: UserBody };
      const id = (req.params as { id: string }).id;
      const auth = req.auth!;
      if (user.enabled === false && id === auth.userId) throw badRequest('You cannot disable your own user.');
      const old = await identity.getUser(id);
      const options = user.options === undefined ? undefined : mergeOptions(old.options, user.options);
      if (!auth.isAdmin) {
        // The `self` rule: a user may set their own MFA options and nothing else here.
        // The CLI's `user set` always sends `enabled` as it is: only a change counts.
        const other = Object.keys(user).filter(
          (k) => k !== 'options' && !(k === 'enabled' && user.enabled === (old.enabled === 1)),
        );
        if (other.length > 0)
          throw forbidden(
            `You may change only your own MFA options (refused: ${other.join(', ')}); change your password with \`openstack user password set\`.`,
          );
        if (
          options !== undefined &&
          mfaRules(JSON.stringify(options)).length < mfaRules(old.options).length &&
          !auth.methods.some((m) => SECOND_FACTORS.has(m))
        )
          throw forbidden('Weakening your own MFA rules needs a token obtained with a second factor.');
      }
      return {
        user: userView(
          await identity.updateUser(id, {
            name: user.name,
            password: user.password ?? undefined,
            enabled: user.enabled,
            defaultProjectId: user.default_project_id,
            email: user.email ?? undefined,
            description: user.description ?? undefined,
            options,
          }),
          base,
        ),
      };
    },
  );
  app.delete(
    `${PREFIX}/users/:id`,
    { schema: { params: IdParam }, config: { action: 'identity:delete_user', targetType: 'user' } },
    async (req, reply) => {
      const id = (req.params as { id: string }).id;
      // The user's sealed credential blobs go first (the key manager holds them, not the user row).
      await identity.deleteUser(id, req.auth!.userId, () => ctx.credentials.purgeUser(id));
      return reply.code(204).send();
    },
  );
  app.post(
    `${PREFIX}/users/:id/password`,
    {
      schema: {
        params: IdParam,
        body: Type.Object(
          {
            user: Type.Object(
              { password: Password, original_password: Type.String({ maxLength: 4096 }) },
              { additionalProperties: false },
            ),
          },
          { additionalProperties: false },
        ),
      },
      config: { action: 'identity:change_password', target: userTarget, targetType: 'user' },
    },
    async (req, reply) => {
      const { user } = req.body as { user: { password: string; original_password: string } };
      await identity.changePassword((req.params as { id: string }).id, user.original_password, user.password);
      return reply.code(204).send();
    },
  );
  app.get(
    `${PREFIX}/users/:id/projects`,
    { schema: { params: IdParam }, config: { action: 'identity:list_user_projects', target: userTarget } },
    async (req) => ({
      projects: (await identity.listUserProjects((req.params as { id: string }).id)).map((p) =>
        projectView(p, base),
      ),
      links: listLinks(req, publicUrl),
    }),
  );
}
