import { Type } from '@fastify/type-provider-typebox';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Static } from 'typebox';
import { badRequest, notFound } from '../errors.js';
import { projectView } from '../identity/records.js';
import type { AuthContext } from '../policy/context.js';
import { sha256Hex } from '../util/ids.js';
import { renderCatalog } from './catalog.js';
import {
  DomainRef,
  Id,
  listLinks,
  Name,
  Opt,
  PREFIX,
  RefText,
  UserRef,
  UserRefFields,
} from './identity-schemas.js';
import type { ApiContext } from './server.js';

/** Keystone's tokens: log in (`POST /auth/tokens`), validate, revoke, and the caller's projects and catalog. */
export async function registerTokenRoutes(
  app: FastifyInstance,
  ctx: ApiContext,
  base: string,
): Promise<void> {
  const { identity, publicUrl } = ctx;
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

  // ---- tokens ---------------------------------------------------------------
  const ScopeProject = Type.Object(
    { id: Opt(Id), name: Opt(Name), domain: Opt(DomainRef) },
    { additionalProperties: false },
  );
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
                    id: Opt(RefText(64)),
                    name: Opt(RefText(255)),
                    user: Opt(UserRef),
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
}
