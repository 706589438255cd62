import { Type } from '@fastify/type-provider-typebox';
import type { AuthenticationResponseJSON } from '@simplewebauthn/server';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Static } from 'typebox';
import { DASHBOARD_HEADERS, dashboardAsset } from '../dashboard/assets.js';
import { clearedCookies, sessionCookies, sessionToken } from '../dashboard/session.js';
import { BulwarkError } from '../errors.js';
import { RecoveryCodeService } from '../identity/recovery-codes.js';
import { relyingParty, WebAuthnService } from '../identity/webauthn.js';
import type { AuthContext } from '../policy/context.js';
import { AuthenticationResponse } from './mfa-devices.js';
import type { ApiContext } from './server.js';

const Opt = <T extends Parameters<typeof Type.Optional>[0]>(t: T) => Type.Optional(t);
const LoginBody = Type.Object(
  {
    username: Type.String({ minLength: 1, maxLength: 255 }),
    password: Opt(Type.String({ minLength: 1, maxLength: 4096 })),
    passcode: Opt(Type.String({ minLength: 1, maxLength: 16 })),
    /** With the password: a security key's assertion to `POST /bulwark/v1/webauthn/login/options`'s challenge. */
    webauthn: Opt(AuthenticationResponse),
    /** With the password: one of the user's one-time recovery codes, instead of their device. */
    recovery_code: Opt(Type.String({ minLength: 1, maxLength: 64 })),
    /** The project to work in; absent: the user's default project, else their first. */
    project: Opt(Type.String({ minLength: 1, maxLength: 255 })),
    domain: Opt(Type.String({ minLength: 1, maxLength: 255 })),
  },
  { additionalProperties: false },
);

const sessionView = (a: AuthContext) => ({
  user: { id: a.userId, name: a.userName },
  project: a.projectId === null ? null : { id: a.projectId, name: a.projectName },
  roles: a.roles,
  is_admin: a.isAdmin,
  methods: a.methods,
  // An admin without a second factor while admins must use one: the session may only enroll one.
  mfa_pending: a.mfaPending === true,
  issued_at: a.issuedAt,
  expires_at: a.expiresAt,
});

/**
 * The web dashboard (docs/dashboard.md): the built single page under
 * /dashboard, and its session endpoints. The session is a Keystone token
 * minted by the same multi-factor login as POST /identity/v3/auth/tokens (a
 * missing factor answers 401 with an Openstack-Auth-Receipt, sent back with
 * the passcode); the page then calls the OpenStack APIs themselves, so
 * policy, audit and errors are theirs.
 */
export async function registerDashboardApi(
  app: FastifyInstance,
  ctx: ApiContext,
  webDir: string,
): Promise<void> {
  const { identity, login } = ctx;
  const webauthn = new WebAuthnService(ctx.store, identity, login, relyingParty(ctx.publicUrl));
  const recovery = new RecoveryCodeService(ctx.store, login);

  const page = async (req: FastifyRequest, reply: FastifyReply) => {
    reply.headers(DASHBOARD_HEADERS);
    const path = (req.params as { '*'?: string })['*'] ?? '';
    const asset = await dashboardAsset(webDir, path);
    if (!asset)
      throw new BulwarkError(
        'NotFound',
        path.startsWith('assets/')
          ? `No dashboard file ${path}; reload the page for the current build.`
          : 'The dashboard is not built: run `npm run build:web` (scripts/deps.sh does).',
      );
    return reply.header('cache-control', asset.cache).type(asset.type).send(asset.body);
  };
  app.get('/dashboard', { config: { action: 'dashboard:page' } }, page);
  app.get('/dashboard/*', { config: { action: 'dashboard:page' } }, page);

  app.post(
    '/dashboard/session',
    { schema: { body: LoginBody }, config: { action: 'dashboard:session:create', targetType: 'token' } },
    async (req, reply) => {
      reply.headers(DASHBOARD_HEADERS).header('cache-control', 'no-store');
      const b = req.body as Static<typeof LoginBody>;
      req.auditNote.attemptedUser = b.username;
      const user = { name: b.username, domain: { name: b.domain ?? 'Default' } };
      const scope =
        b.project === undefined ? undefined : { name: b.project, domain: { name: b.domain ?? 'Default' } };
      let { token, auth } = await (async () => {
        if (b.webauthn !== undefined || b.recovery_code !== undefined) {
          if (b.password === undefined || b.passcode !== undefined || (b.webauthn && b.recovery_code))
            throw new BulwarkError(
              'BadRequest',
              'Send the password with either a security-key assertion or a recovery code.',
            );
          return b.webauthn !== undefined
            ? webauthn.loginWithKey({
                user,
                password: b.password,
                response: b.webauthn as AuthenticationResponseJSON,
                scope,
              })
            : recovery.loginWithCode({ user, password: b.password, code: b.recovery_code!, scope });
        }
        const receipt = req.headers['openstack-auth-receipt'];
        const methods = [...(b.password ? ['password'] : []), ...(b.passcode ? ['totp'] : [])];
        if (methods.length === 0) throw new BulwarkError('BadRequest', 'Send a password or a passcode.');
        return login.login({
          methods,
          password: b.password === undefined ? undefined : { user, password: b.password },
          totp: b.passcode === undefined ? undefined : { user, passcode: b.passcode },
          receipt: typeof receipt === 'string' && receipt.length > 0 ? receipt : undefined,
          scope,
        });
      })();
      if (auth.projectId === null) {
        // No project named: re-scope (Keystone's token method, same factors and expiry) to the
        // user's default project, else their first; the unscoped token goes.
        const row = await identity.getUser(auth.userId);
        const projects = (await identity.listUserProjects(auth.userId)).filter((p) => p.enabled === 1);
        const pick = projects.find((p) => p.id === row.default_project_id) ?? projects[0];
        if (!pick)
          throw new BulwarkError('Unauthorized', 'You have a role on no project; ask an administrator.');
        const unscoped = token;
        ({ token, auth } = await login.login({
          methods: ['token'],
          token: unscoped,
          scope: { id: pick.id },
        }));
        await identity.revokeToken(unscoped);
      }
      req.auth = auth; // so the audit record names who logged in
      req.auditNote.targetId = auth.auditId;
      return reply
        .code(201)
        .header('set-cookie', sessionCookies(token, auth.expiresAt))
        .send({ session: sessionView(auth) });
    },
  );

  app.get('/dashboard/session', { config: { action: 'dashboard:session:show' } }, async (req, reply) => {
    reply.headers(DASHBOARD_HEADERS).header('cache-control', 'no-store');
    return { session: sessionView(req.auth!) };
  });

  app.delete(
    '/dashboard/session',
    { config: { action: 'dashboard:session:delete', targetType: 'token' } },
    async (req, reply) => {
      reply.headers(DASHBOARD_HEADERS);
      req.auditNote.targetId = req.auth!.auditId;
      // The token the request authenticated with, in the auth hook's order: the header, else the cookie.
      const header = req.headers['x-auth-token'];
      const token = typeof header === 'string' && header.length > 0 ? header : sessionToken(req);
      if (token !== null) await identity.revokeToken(token);
      return reply.code(204).header('set-cookie', clearedCookies()).send();
    },
  );
}
