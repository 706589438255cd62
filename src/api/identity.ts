import { Type } from '@fastify/type-provider-typebox';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Static } from 'typebox';
import { badRequest, forbidden, notFound } from '../errors.js';
import { ACCESS_RULE_METHODS } from '../identity/access-rules.js';
import type { ApplicationCredential } from '../identity/application-credentials.js';
import { CREDENTIAL_TYPES, type Credential } from '../identity/credentials.js';
import { mfaRules } from '../identity/mfa-rules.js';
import { domainView, projectView, roleView, userView } from '../identity/records.js';
import { DEFAULT_DOMAIN_ID as DEFAULT_DOMAIN, SECOND_FACTORS } from '../identity/service.js';
import type { AuthContext } from '../policy/context.js';
import { sha256Hex } from '../util/ids.js';
import { renderCatalog } from './catalog.js';
import type { ApiContext } from './server.js';

const PREFIX = '/identity/v3';
const Name = Type.String({ minLength: 1, maxLength: 255, pattern: '^[^\\x00-\\x1f/]+$' });
const Id = Type.String({ minLength: 1, maxLength: 64, pattern: '^[A-Za-z0-9_.-]+$' });
const Password = Type.String({ minLength: 8, maxLength: 4096 });
const Opt = <T extends Parameters<typeof Type.Optional>[0]>(t: T) => Type.Optional(t);
const NullableString = Type.Union([Type.String({ maxLength: 65535 }), Type.Null()]);
const DomainRef = Type.Object(
  { id: Opt(Type.String({ maxLength: 64 })), name: Opt(Type.String({ maxLength: 255 })) },
  { additionalProperties: false },
);
const IdParam = Type.Object({ id: Id });

const VERSION = (publicUrl: string) => ({
  id: 'v3.14',
  status: 'stable',
  updated: '2020-04-07T00:00:00Z',
  links: [{ rel: 'self', href: `${publicUrl}${PREFIX}/` }],
  'media-types': [{ base: 'application/json', type: 'application/vnd.openstack.identity-v3+json' }],
});

/** Keystone's option update: the keys sent replace the stored ones, and `null` removes a key. */
function mergeOptions(stored: string, patch: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...(JSON.parse(stored) as Record<string, unknown>) };
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete out[k];
    else out[k] = v;
  }
  return out;
}

/** What a credential's blob reads as after creation. */
export const SEALED_BLOB = '(sealed: shown only when created)';

const listLinks = (req: FastifyRequest, publicUrl: string) => ({
  self: `${publicUrl}${req.url}`,
  previous: null,
  next: null,
});

export async function registerIdentityApi(app: FastifyInstance, ctx: ApiContext): Promise<void> {
  const { identity, publicUrl } = ctx;
  const base = `${publicUrl}${PREFIX}`;
  ctx.services.push({ type: 'identity', name: 'keystone', path: PREFIX });

  async function tokenBody(auth: AuthContext) {
    const [userDomain, roles] = await Promise.all([
      identity.getDomain(auth.userDomainId),
      identity.listRoles(),
    ]);
    const token: Record<string, unknown> = {
      methods: auth.methods,
      user: {
        id: auth.userId,
        name: auth.userName,
        domain: { id: userDomain.id, name: userDomain.name },
        password_expires_at: null,
      },
      audit_ids: [auth.auditId],
      issued_at: auth.issuedAt,
      expires_at: auth.expiresAt,
    };
    if (auth.projectId !== null && auth.projectDomainId !== null) {
      const pd = await identity.getDomain(auth.projectDomainId);
      token.project = { id: auth.projectId, name: auth.projectName, domain: { id: pd.id, name: pd.name } };
      token.is_domain = false;
      token.roles = roles.filter((r) => auth.roles.includes(r.name)).map((r) => ({ id: r.id, name: r.name }));
      token.catalog = renderCatalog(ctx.services, publicUrl);
    }
    return { token };
  }

  // ---- version discovery --------------------------------------------------
  app.get('/identity', { config: { action: 'identity:version' } }, async (_req, reply) =>
    reply.code(300).send({ versions: { values: [VERSION(publicUrl)] } }),
  );
  app.get(PREFIX, { config: { action: 'identity:version' } }, async () => ({ version: VERSION(publicUrl) }));
  app.get(`${PREFIX}/`, { config: { action: 'identity:version' } }, async () => ({
    version: VERSION(publicUrl),
  }));

  // ---- tokens ---------------------------------------------------------------
  const ScopeProject = Type.Object(
    { id: Opt(Id), name: Opt(Name), domain: Opt(DomainRef) },
    { additionalProperties: false },
  );
  const UserRefFields = {
    id: Opt(Type.String({ maxLength: 64 })),
    name: Opt(Type.String({ maxLength: 255 })),
    domain: Opt(DomainRef),
  };
  const AuthBody = Type.Object(
    {
      auth: Type.Object(
        {
          identity: Type.Object(
            {
              methods: Type.Array(Type.String({ maxLength: 64 }), { minItems: 1, maxItems: 4 }),
              password: Opt(
                Type.Object(
                  {
                    user: Type.Object(
                      { ...UserRefFields, password: Type.String({ maxLength: 4096 }) },
                      { additionalProperties: false },
                    ),
                  },
                  { additionalProperties: false },
                ),
              ),
              application_credential: Opt(
                Type.Object(
                  {
                    id: Opt(Type.String({ maxLength: 64 })),
                    name: Opt(Type.String({ maxLength: 255 })),
                    user: Opt(Type.Object(UserRefFields, { additionalProperties: false })),
                    secret: Type.String({ maxLength: 4096 }),
                  },
                  { additionalProperties: false },
                ),
              ),
              token: Opt(
                Type.Object(
                  { id: Type.String({ minLength: 1, maxLength: 512 }) },
                  { additionalProperties: false },
                ),
              ),
              totp: Opt(
                Type.Object(
                  {
                    user: Type.Object(
                      { ...UserRefFields, passcode: Type.String({ maxLength: 16 }) },
                      { additionalProperties: false },
                    ),
                  },
                  { additionalProperties: false },
                ),
              ),
            },
            { additionalProperties: false },
          ),
          scope: Opt(
            Type.Union([
              Type.Object({ project: ScopeProject }, { additionalProperties: false }),
              Type.Literal('unscoped'),
            ]),
          ),
        },
        { additionalProperties: false },
      ),
    },
    { additionalProperties: false },
  );

  app.post(
    `${PREFIX}/auth/tokens`,
    { schema: { body: AuthBody }, config: { action: 'identity:issue_token', targetType: 'token' } },
    async (req, reply) => {
      const { identity: ident, scope } = (req.body as Static<typeof AuthBody>).auth;
      const named = ident.password?.user ?? ident.totp?.user ?? ident.application_credential?.user;
      req.auditNote.attemptedUser =
        named?.name ??
        named?.id ??
        (ident.application_credential
          ? `application credential ${ident.application_credential.id ?? ident.application_credential.name}`
          : ident.token
            ? 'token'
            : 'unknown');
      const receipt = req.headers['openstack-auth-receipt'];
      const { token, auth } = await ctx.login.login({
        methods: ident.methods,
        password: ident.password && { user: ident.password.user, password: ident.password.user.password },
        totp: ident.totp && { user: ident.totp.user, passcode: ident.totp.user.passcode },
        receipt: typeof receipt === 'string' && receipt.length > 0 ? receipt : undefined,
        token: ident.token?.id,
        applicationCredential: ident.application_credential,
        scope: typeof scope === 'object' ? scope.project : undefined,
      });
      req.auth = auth; // so the audit record names who logged in
      req.auditNote.targetId = auth.auditId;
      return reply
        .code(201)
        .header('x-subject-token', token)
        .send(await tokenBody(auth));
    },
  );

  // `self` holds when the subject token belongs to the caller (Keystone's token owner rule).
  const subjectTarget = async (r: { headers: Record<string, unknown> }) => {
    const st = r.headers['x-subject-token'];
    const owner = typeof st === 'string' && st ? await identity.validateToken(st) : null;
    return { user_id: owner?.userId ?? null };
  };
  const subject = async (req: FastifyRequest) => {
    const st = req.headers['x-subject-token'];
    if (typeof st !== 'string' || !st) throw badRequest('X-Subject-Token header is required.');
    const auth = await identity.validateToken(st);
    if (!auth) throw notFound('token', sha256Hex(st).slice(0, 12));
    return { st, auth };
  };
  const validate = async (req: FastifyRequest, reply: FastifyReply) => {
    const { st, auth } = await subject(req);
    reply.header('x-subject-token', st);
    return auth;
  };
  app.get(
    `${PREFIX}/auth/tokens`,
    { config: { action: 'identity:validate_token', target: subjectTarget } },
    async (req, reply) => tokenBody(await validate(req, reply)),
  );
  app.delete(
    `${PREFIX}/auth/tokens`,
    { config: { action: 'identity:revoke_token', target: subjectTarget, targetType: 'token' } },
    async (req, reply) => {
      const { st, auth } = await subject(req);
      req.auditNote.targetId = auth.auditId;
      await identity.revokeToken(st);
      return reply.code(204).send();
    },
  );
  app.get(`${PREFIX}/auth/projects`, { config: { action: 'identity:list_auth_projects' } }, async (req) => ({
    projects: (await identity.listUserProjects(req.auth!.userId))
      .filter((p) => p.enabled === 1)
      .map((p) => projectView(p, base)),
    links: listLinks(req, publicUrl),
  }));
  app.get(`${PREFIX}/auth/catalog`, { config: { action: 'identity:get_auth_catalog' } }, async (req) => ({
    catalog: renderCatalog(ctx.services, publicUrl),
    links: listLinks(req, publicUrl),
  }));

  // ---- domains ---------------------------------------------------------------
  const DomainFields = {
    name: Name,
    description: Opt(NullableString),
    enabled: Opt(Type.Boolean()),
    tags: Opt(Type.Array(Type.String({ maxLength: 255 }), { maxItems: 0 })),
    options: Opt(Type.Object({}, { additionalProperties: false })),
  };
  app.get(
    `${PREFIX}/domains`,
    {
      schema: { querystring: Type.Object({ name: Opt(Type.String()), enabled: Opt(Type.String()) }) },
      config: { action: 'identity:list_domains' },
    },
    async (req) => ({
      domains: (await identity.listDomains({ name: (req.query as { name?: string }).name })).map((d) =>
        domainView(d, base),
      ),
      links: listLinks(req, publicUrl),
    }),
  );
  app.get(
    `${PREFIX}/domains/:id`,
    { schema: { params: IdParam }, config: { action: 'identity:get_domain' } },
    async (req) => ({
      domain: domainView(await identity.getDomain((req.params as { id: string }).id), base),
    }),
  );
  app.post(
    `${PREFIX}/domains`,
    {
      schema: {
        body: Type.Object(
          { domain: Type.Object(DomainFields, { additionalProperties: false }) },
          { additionalProperties: false },
        ),
      },
      config: { action: 'identity:create_domain', targetType: 'domain' },
    },
    async (req, reply) => {
      const { domain } = req.body as {
        domain: { name: string; description?: string | null; enabled?: boolean };
      };
      const d = await identity.createDomain({
        name: domain.name,
        description: domain.description ?? undefined,
        enabled: domain.enabled,
      });
      req.auditNote.targetId = d.id;
      return reply.code(201).send({ domain: domainView(d, base) });
    },
  );
  app.patch(
    `${PREFIX}/domains/:id`,
    {
      schema: {
        params: IdParam,
        body: Type.Object(
          { domain: Type.Object({ ...DomainFields, name: Opt(Name) }, { additionalProperties: false }) },
          { additionalProperties: false },
        ),
      },
      config: { action: 'identity:update_domain', targetType: 'domain' },
    },
    async (req) => {
      const { domain } = req.body as {
        domain: { name?: string; description?: string | null; enabled?: boolean };
      };
      return {
        domain: domainView(
          await identity.updateDomain((req.params as { id: string }).id, {
            name: domain.name,
            description: domain.description ?? undefined,
            enabled: domain.enabled,
          }),
          base,
        ),
      };
    },
  );
  app.delete(
    `${PREFIX}/domains/:id`,
    { schema: { params: IdParam }, config: { action: 'identity:delete_domain', targetType: 'domain' } },
    async (req, reply) => {
      await identity.deleteDomain((req.params as { id: string }).id);
      return reply.code(204).send();
    },
  );

  // ---- projects ------------------------------------------------------------
  const ProjectFields = {
    name: Name,
    domain_id: Opt(Type.Union([Id, Type.Null()])),
    parent_id: Opt(Type.Union([Id, Type.Null()])),
    description: Opt(NullableString),
    enabled: Opt(Type.Boolean()),
    is_domain: Opt(Type.Literal(false)),
    tags: Opt(Type.Array(Type.String({ maxLength: 255 }), { maxItems: 0 })),
    options: Opt(Type.Object({}, { additionalProperties: false })),
  };
  app.get(
    `${PREFIX}/projects`,
    {
      schema: {
        querystring: Type.Object({
          name: Opt(Type.String()),
          domain_id: Opt(Type.String()),
          enabled: Opt(Type.String()),
        }),
      },
      config: { action: 'identity:list_projects' },
    },
    async (req) => {
      const q = req.query as { name?: string; domain_id?: string };
      return {
        projects: (await identity.listProjects({ name: q.name, domainId: q.domain_id })).map((p) =>
          projectView(p, base),
        ),
        links: listLinks(req, publicUrl),
      };
    },
  );
  app.get(
    `${PREFIX}/projects/:id`,
    {
      schema: { params: IdParam },
      config: {
        action: 'identity:get_project',
        target: (r) => ({ project_id: (r.params as { id: string }).id }),
      },
    },
    async (req) => ({
      project: projectView(await identity.getProject((req.params as { id: string }).id), base),
    }),
  );
  app.post(
    `${PREFIX}/projects`,
    {
      schema: {
        body: Type.Object(
          { project: Type.Object(ProjectFields, { additionalProperties: false }) },
          { additionalProperties: false },
        ),
      },
      config: { action: 'identity:create_project', targetType: 'project' },
    },
    async (req, reply) => {
      const { project } = req.body as {
        project: {
          name: string;
          domain_id?: string | null;
          parent_id?: string | null;
          description?: string | null;
          enabled?: boolean;
        };
      };
      const domainId = project.domain_id ?? DEFAULT_DOMAIN;
      if (project.parent_id && project.parent_id !== domainId) {
        throw badRequest('Nested projects are not supported: parent_id must be the domain.');
      }
      const p = await identity.createProject({
        name: project.name,
        domainId,
        description: project.description ?? undefined,
        enabled: project.enabled,
      });
      req.auditNote.targetId = p.id;
      return reply.code(201).send({ project: projectView(p, base) });
    },
  );
  app.patch(
    `${PREFIX}/projects/:id`,
    {
      schema: {
        params: IdParam,
        body: Type.Object(
          { project: Type.Object({ ...ProjectFields, name: Opt(Name) }, { additionalProperties: false }) },
          { additionalProperties: false },
        ),
      },
      config: { action: 'identity:update_project', targetType: 'project' },
    },
    async (req) => {
      const { project } = req.body as {
        project: { name?: string; description?: string | null; enabled?: boolean };
      };
      return {
        project: projectView(
          await identity.updateProject((req.params as { id: string }).id, {
            name: project.name,
            description: project.description ?? undefined,
            enabled: project.enabled,
          }),
          base,
        ),
      };
    },
  );
  app.delete(
    `${PREFIX}/projects/:id`,
    { schema: { params: IdParam }, config: { action: 'identity:delete_project', targetType: 'project' } },
    async (req, reply) => {
      await identity.deleteProject((req.params as { id: string }).id);
      return reply.code(204).send();
    },
  );

  // ---- users -----------------------------------------------------------------
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

  // ---- roles and grants ------------------------------------------------------
  app.get(
    `${PREFIX}/roles`,
    {
      schema: { querystring: Type.Object({ name: Opt(Type.String()), domain_id: Opt(Type.String()) }) },
      config: { action: 'identity:list_roles' },
    },
    async (req) => ({
      roles: (await identity.listRoles({ name: (req.query as { name?: string }).name })).map((r) =>
        roleView(r, base),
      ),
      links: listLinks(req, publicUrl),
    }),
  );
  app.get(
    `${PREFIX}/roles/:id`,
    { schema: { params: IdParam }, config: { action: 'identity:get_role' } },
    async (req) => ({
      role: roleView(await identity.getRole((req.params as { id: string }).id), base),
    }),
  );
  app.post(
    `${PREFIX}/roles`,
    {
      schema: {
        body: Type.Object(
          {
            role: Type.Object(
              {
                name: Name,
                description: Opt(NullableString),
                domain_id: Opt(Type.Null()),
                options: Opt(Type.Object({}, { additionalProperties: false })),
              },
              { additionalProperties: false },
            ),
          },
          { additionalProperties: false },
        ),
      },
      config: { action: 'identity:create_role', targetType: 'role' },
    },
    async (req, reply) => {
      const { role } = req.body as { role: { name: string; description?: string | null } };
      const r = await identity.createRole({ name: role.name, description: role.description ?? undefined });
      req.auditNote.targetId = r.id;
      return reply.code(201).send({ role: roleView(r, base) });
    },
  );
  app.delete(
    `${PREFIX}/roles/:id`,
    { schema: { params: IdParam }, config: { action: 'identity:delete_role', targetType: 'role' } },
    async (req, reply) => {
      await identity.deleteRole((req.params as { id: string }).id);
      return reply.code(204).send();
    },
  );

  const GrantParams = Type.Object({ project_id: Id, user_id: Id, role_id: Id });
  type G = { project_id: string; user_id: string; role_id: string };
  const grantPath = `${PREFIX}/projects/:project_id/users/:user_id/roles/:role_id`;
  const noteGrant = (req: FastifyRequest) => {
    const p = req.params as G;
    req.auditNote.targetId = `${p.role_id}@${p.user_id}/${p.project_id}`;
    return p;
  };
  app.put(
    grantPath,
    {
      schema: { params: GrantParams },
      config: { action: 'identity:create_grant', targetType: 'role_assignment' },
    },
    async (req, reply) => {
      const p = noteGrant(req);
      await identity.grant(p.project_id, p.user_id, p.role_id);
      return reply.code(204).send();
    },
  );
  app.head(
    grantPath,
    { schema: { params: GrantParams }, config: { action: 'identity:check_grant' } },
    async (req, reply) => {
      const p = req.params as G;
      if (!(await identity.hasGrant(p.project_id, p.user_id, p.role_id)))
        throw notFound('role assignment', p.role_id);
      return reply.code(204).send();
    },
  );
  app.delete(
    grantPath,
    {
      schema: { params: GrantParams },
      config: { action: 'identity:revoke_grant', targetType: 'role_assignment' },
    },
    async (req, reply) => {
      const p = noteGrant(req);
      await identity.revoke(p.project_id, p.user_id, p.role_id, req.auth!.userId);
      return reply.code(204).send();
    },
  );
  app.get(
    `${PREFIX}/projects/:project_id/users/:user_id/roles`,
    {
      schema: { params: Type.Object({ project_id: Id, user_id: Id }) },
      config: {
        action: 'identity:list_role_assignments',
        target: (r) => ({ user_id: (r.params as { user_id: string }).user_id }),
      },
    },
    async (req) => {
      const p = req.params as { project_id: string; user_id: string };
      const rows = await identity.listAssignments({ projectId: p.project_id, userId: p.user_id });
      const roles = await identity.listRoles();
      return {
        roles: roles.filter((r) => rows.some((a) => a.role_id === r.id)).map((r) => roleView(r, base)),
        links: listLinks(req, publicUrl),
      };
    },
  );

  const AssignmentQuery = Type.Object({
    'user.id': Opt(Type.String({ maxLength: 64 })),
    'scope.project.id': Opt(Type.String({ maxLength: 64 })),
    'role.id': Opt(Type.String({ maxLength: 64 })),
    include_names: Opt(Type.String()),
    effective: Opt(Type.String()),
    include_subtree: Opt(Type.String()),
  });
  app.get(
    `${PREFIX}/role_assignments`,
    {
      schema: { querystring: AssignmentQuery },
      config: { action: 'identity:list_role_assignments', target: () => ({}) },
    },
    async (req) => {
      const q = req.query as Record<string, string | undefined>;
      const auth = req.auth!;
      // Non-admins may list only their own assignments (the `self` rule needs the filter).
      if (!auth.isAdmin && q['user.id'] !== auth.userId) {
        throw forbidden('You may only list your own role assignments: add --user with your own user.');
      }
      const names = q.include_names !== undefined && q.include_names !== 'false' && q.include_names !== '0';
      const rows = await identity.listAssignments({
        userId: q['user.id'],
        projectId: q['scope.project.id'],
        roleId: q['role.id'],
      });
      const domains = names
        ? new Map((await identity.listDomains()).map((d) => [d.id, d.name]))
        : new Map<string, string>();
      return {
        role_assignments: rows.map((a) => ({
          role: names ? { id: a.role_id, name: a.role_name } : { id: a.role_id },
          user: names
            ? {
                id: a.user_id,
                name: a.user_name,
                domain: { id: a.user_domain_id, name: domains.get(a.user_domain_id) },
              }
            : { id: a.user_id },
          scope: {
            project: names
              ? {
                  id: a.project_id,
                  name: a.project_name,
                  domain: { id: a.project_domain_id, name: domains.get(a.project_domain_id) },
                }
              : { id: a.project_id },
          },
          links: { assignment: `${base}/projects/${a.project_id}/users/${a.user_id}/roles/${a.role_id}` },
        })),
        links: listLinks(req, publicUrl),
      };
    },
  );

  // ---- credentials (TOTP secrets, sealed by the key manager) ------------------
  const credentialView = (c: Credential, blob?: string) => ({
    id: c.id,
    user_id: c.user_id,
    project_id: c.project_id,
    type: c.type,
    // The secret is shown once, in the answer that created it; it is sealed at rest.
    blob: blob ?? SEALED_BLOB,
    links: { self: `${base}/credentials/${c.id}` },
  });
  const credentialOwner = async (r: { params: unknown }) => {
    const c = await ctx.credentials.get((r.params as { id: string }).id).catch(() => null);
    return { user_id: c?.user_id ?? null };
  };
  const CredentialBody = Type.Object(
    {
      credential: Type.Object(
        {
          blob: Type.String({ minLength: 1, maxLength: 1024 }),
          type: Type.Union(CREDENTIAL_TYPES.map((t) => Type.Literal(t))),
          user_id: Id,
          project_id: Opt(Type.Union([Id, Type.Null()])),
        },
        { additionalProperties: false },
      ),
    },
    { additionalProperties: false },
  );
  app.post(
    `${PREFIX}/credentials`,
    {
      schema: { body: CredentialBody },
      config: {
        action: 'identity:create_credential',
        targetType: 'credential',
        target: (r) => {
          const uid = (r.body as { credential?: { user_id?: unknown } } | undefined)?.credential?.user_id;
          return { user_id: typeof uid === 'string' ? uid : null };
        },
      },
    },
    async (req, reply) => {
      const { credential } = req.body as Static<typeof CredentialBody>;
      await identity.getUser(credential.user_id);
      if (credential.project_id) await identity.getProject(credential.project_id);
      const c = await ctx.credentials.create({
        userId: credential.user_id,
        projectId: credential.project_id ?? null,
        type: credential.type,
        blob: credential.blob,
      });
      req.auditNote.targetId = c.id;
      return reply.code(201).send({ credential: credentialView(c, credential.blob) });
    },
  );
  app.get(
    `${PREFIX}/credentials`,
    {
      schema: {
        querystring: Type.Object({ user_id: Opt(Type.String({ maxLength: 64 })), type: Opt(Type.String()) }),
      },
      config: { action: 'identity:list_credentials' },
    },
    async (req) => {
      const q = req.query as { user_id?: string; type?: string };
      const auth = req.auth!;
      // Anyone may list, but only an admin sees other users' credentials.
      const userId = auth.isAdmin ? q.user_id : auth.userId;
      if (q.user_id !== undefined && userId !== q.user_id)
        return { credentials: [], links: listLinks(req, publicUrl) };
      return {
        credentials: (await ctx.credentials.list({ userId, type: q.type })).map((c) => credentialView(c)),
        links: listLinks(req, publicUrl),
      };
    },
  );
  app.get(
    `${PREFIX}/credentials/:id`,
    { schema: { params: IdParam }, config: { action: 'identity:get_credential', target: credentialOwner } },
    async (req) => ({
      credential: credentialView(await ctx.credentials.get((req.params as { id: string }).id)),
    }),
  );
  app.delete(
    `${PREFIX}/credentials/:id`,
    {
      schema: { params: IdParam },
      config: { action: 'identity:delete_credential', target: credentialOwner, targetType: 'credential' },
    },
    async (req, reply) => {
      await ctx.credentials.delete((req.params as { id: string }).id);
      return reply.code(204).send();
    },
  );

  // ---- application credentials (automation; the secret is shown once) --------
  const roleNames = new Map<string, string>();
  const appCredView = async (a: ApplicationCredential, secret?: string) => {
    if (roleNames.size === 0) for (const r of await identity.listRoles()) roleNames.set(r.name, r.id);
    return {
      id: a.id,
      name: a.name,
      description: a.description,
      user_id: a.user_id,
      project_id: a.project_id,
      expires_at: a.expires_at,
      unrestricted: a.unrestricted === 1,
      roles: (JSON.parse(a.roles) as string[]).map((name) => ({
        id: roleNames.get(name) ?? name,
        name,
        domain_id: null,
      })),
      access_rules: JSON.parse(a.access_rules) as unknown[],
      ...(secret === undefined ? {} : { secret }),
      links: { self: `${base}/users/${a.user_id}/application_credentials/${a.id}` },
    };
  };
  const acPath = `${PREFIX}/users/:user_id/application_credentials`;
  const AcParams = Type.Object({ user_id: Id });
  const AcIdParams = Type.Object({ user_id: Id, id: Id });
  const acOwner = (r: { params: unknown }) => ({ user_id: (r.params as { user_id: string }).user_id });
  const AcBody = Type.Object(
    {
      application_credential: Type.Object(
        {
          name: Name,
          description: Opt(NullableString),
          secret: Opt(Type.Union([Type.String({ minLength: 16, maxLength: 4096 }), Type.Null()])),
          // The CLI sends `--expiration` without a zone: read as UTC (Keystone's convention).
          expires_at: Opt(
            Type.Union([
              Type.String({
                maxLength: 40,
                pattern: '^\\d{4}-\\d{2}-\\d{2}T\\d{2}:\\d{2}:\\d{2}(\\.\\d+)?(Z|[+-]\\d{2}:?\\d{2})?$',
              }),
              Type.Null(),
            ]),
          ),
          roles: Opt(
            Type.Array(
              Type.Object(
                { id: Opt(Id), name: Opt(Name), domain_id: Opt(Type.Null()) },
                { additionalProperties: false },
              ),
              { maxItems: 16 },
            ),
          ),
          access_rules: Opt(
            Type.Array(
              Type.Object(
                {
                  service: Type.String({ minLength: 1, maxLength: 64, pattern: '^[a-z0-9-]+$' }),
                  method: Type.Union(ACCESS_RULE_METHODS.map((m) => Type.Literal(m))),
                  path: Type.String({ minLength: 1, maxLength: 512, pattern: '^/[^\\x00-\\x1f]*$' }),
                },
                { additionalProperties: false },
              ),
              { maxItems: 50 },
            ),
          ),
          unrestricted: Opt(Type.Boolean()),
        },
        { additionalProperties: false },
      ),
    },
    { additionalProperties: false },
  );
  app.post(
    acPath,
    {
      schema: { params: AcParams, body: AcBody },
      config: {
        action: 'identity:create_application_credential',
        target: acOwner,
        targetType: 'application_credential',
      },
    },
    async (req, reply) => {
      const { application_credential: b } = req.body as Static<typeof AcBody>;
      const { row, secret } = await ctx.applicationCredentials.create(req.auth!, {
        name: b.name,
        description: b.description ?? undefined,
        secret: b.secret ?? undefined,
        expiresAt: b.expires_at ?? undefined,
        roles: b.roles,
        accessRules: b.access_rules,
        unrestricted: b.unrestricted,
      });
      req.auditNote.targetId = row.id;
      return reply.code(201).send({ application_credential: await appCredView(row, secret) });
    },
  );
  app.get(
    acPath,
    {
      schema: { params: AcParams, querystring: Type.Object({ name: Opt(Type.String({ maxLength: 255 })) }) },
      config: { action: 'identity:list_application_credentials', target: acOwner },
    },
    async (req) => {
      const { user_id } = req.params as { user_id: string };
      const rows = await ctx.applicationCredentials.list(user_id, (req.query as { name?: string }).name);
      return {
        application_credentials: await Promise.all(rows.map((a) => appCredView(a))),
        links: listLinks(req, publicUrl),
      };
    },
  );
  app.get(
    `${acPath}/:id`,
    {
      schema: { params: AcIdParams },
      config: { action: 'identity:get_application_credential', target: acOwner },
    },
    async (req) => {
      const p = req.params as { user_id: string; id: string };
      return {
        application_credential: await appCredView(await ctx.applicationCredentials.get(p.user_id, p.id)),
      };
    },
  );
  app.delete(
    `${acPath}/:id`,
    {
      schema: { params: AcIdParams },
      config: {
        action: 'identity:delete_application_credential',
        target: acOwner,
        targetType: 'application_credential',
      },
    },
    async (req, reply) => {
      const p = req.params as { user_id: string; id: string };
      await ctx.applicationCredentials.delete(p.user_id, p.id);
      return reply.code(204).send();
    },
  );
}
