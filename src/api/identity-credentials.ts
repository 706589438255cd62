import { Type } from '@fastify/type-provider-typebox';
import type { FastifyInstance } from 'fastify';
import type { Static } from 'typebox';
import { ACCESS_RULE_METHODS } from '../identity/access-rules.js';
import type { ApplicationCredential } from '../identity/application-credentials.js';
import { CREDENTIAL_TYPES, type Credential } from '../identity/credentials.js';
import { Id, IdParam, listLinks, Name, NullableString, Opt, PREFIX } from './identity-schemas.js';
import type { ApiContext } from './server.js';

/** What a credential's blob reads as after creation. */
const SEALED_BLOB = '(sealed: shown only when created)';

/** Keystone credentials (TOTP) and application credentials; `base` is the identity endpoint's URL. */
export async function registerCredentialRoutes(
  app: FastifyInstance,
  ctx: ApiContext,
  base: string,
): Promise<void> {
  const { identity, publicUrl } = ctx;
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
