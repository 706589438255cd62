import { readFileSync } from 'node:fs';
import { Type } from '@fastify/type-provider-typebox';
import type { AuthenticationResponseJSON, RegistrationResponseJSON } from '@simplewebauthn/server';
import type { FastifyInstance, FastifyReply } from 'fastify';
import type { Static } from 'typebox';
import { MfaDevices } from '../identity/mfa-devices.js';
import { RecoveryCodeService } from '../identity/recovery-codes.js';
import { relyingParty, WebAuthnService } from '../identity/webauthn.js';
import type { AuthContext } from '../policy/context.js';
import { BULWARK_PREFIX } from './bulwark.js';
import { Id, ProjectRef, UserRef } from './identity-schemas.js';
import type { ApiContext } from './server.js';

const WA = `${BULWARK_PREFIX}/webauthn`;
const Opt = Type.Optional;
const B64u = (max: number) => Type.String({ minLength: 1, maxLength: max, pattern: '^[A-Za-z0-9_-]+$' });
const Extensions = Type.Object(
  { credProps: Opt(Type.Object({ rk: Opt(Type.Boolean()) }, { additionalProperties: false })) },
  { additionalProperties: false },
);
const Attachment = Opt(Type.Union([Type.Literal('platform'), Type.Literal('cross-platform')]));
const Transports = Type.Array(Type.String({ maxLength: 32 }), { maxItems: 8 });
const RegistrationResponse = Type.Object(
  {
    id: B64u(1024),
    rawId: B64u(1024),
    type: Type.Literal('public-key'),
    clientExtensionResults: Extensions,
    authenticatorAttachment: Attachment,
    response: Type.Object(
      { clientDataJSON: B64u(4096), attestationObject: B64u(16384), transports: Opt(Transports) },
      { additionalProperties: false },
    ),
  },
  { additionalProperties: false },
);
/** A WebAuthn assertion as the browser's `PublicKeyCredential.toJSON()` gives it. */
export const AuthenticationResponse = Type.Object(
  {
    id: B64u(1024),
    rawId: B64u(1024),
    type: Type.Literal('public-key'),
    clientExtensionResults: Extensions,
    authenticatorAttachment: Attachment,
    response: Type.Object(
      {
        clientDataJSON: B64u(4096),
        authenticatorData: B64u(4096),
        signature: B64u(2048),
        userHandle: Opt(B64u(512)),
      },
      { additionalProperties: false },
    ),
  },
  { additionalProperties: false },
);

/** Answers a login the way the token API does: the token in X-Subject-Token, its summary in the body. */
function sendLogin(reply: FastifyReply, token: string, auth: AuthContext) {
  return reply
    .code(201)
    .header('x-subject-token', token)
    .send({
      token: {
        methods: auth.methods,
        user: { id: auth.userId, name: auth.userName },
        ...(auth.projectId ? { project: { id: auth.projectId, name: auth.projectName } } : {}),
        issued_at: auth.issuedAt,
        expires_at: auth.expiresAt,
      },
    });
}

const ASSETS = new URL('../../web/webauthn/', import.meta.url);
/** The sign-in page allows only its own script, style and API calls. */
const PAGE_HEADERS = {
  'content-security-policy':
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'",
  'x-content-type-options': 'nosniff',
  'x-frame-options': 'DENY',
  'referrer-policy': 'no-referrer',
  'cache-control': 'no-store',
};

/**
 * Second factors beyond TOTP (docs/identity.md): WebAuthn security keys,
 * one-time recovery codes, and the minimal sign-in page the dashboard will
 * grow from (plain HTML and script, strict CSP).
 */
export async function registerMfaDeviceApi(app: FastifyInstance, ctx: ApiContext): Promise<void> {
  const webauthn = new WebAuthnService(ctx.store, ctx.identity, ctx.login, relyingParty(ctx.publicUrl));
  const recovery = new RecoveryCodeService(ctx.store, ctx.login);
  const assets = Object.fromEntries(
    (
      [
        ['webauthn', 'webauthn.html', 'text/html; charset=utf-8'],
        ['webauthn.js', 'webauthn.js', 'text/javascript; charset=utf-8'],
        ['webauthn.css', 'webauthn.css', 'text/css; charset=utf-8'],
      ] as const
    ).map(([route, file, type]) => [route, { body: readFileSync(new URL(file, ASSETS), 'utf8'), type }]),
  );
  for (const [route, a] of Object.entries(assets)) {
    app.get(`/dashboard/${route}`, { config: { action: 'dashboard:webauthn_page' } }, async (_req, reply) =>
      reply.headers(PAGE_HEADERS).type(a.type).send(a.body),
    );
  }

  app.post(
    `${WA}/registration/options`,
    { config: { action: 'webauthn:registration_options' } },
    async (req) => webauthn.registrationOptions(req.auth!),
  );
  const RegisterBody = Type.Object(
    { name: Type.String({ minLength: 1, maxLength: 64 }), response: RegistrationResponse },
    { additionalProperties: false },
  );
  app.post(
    `${WA}/registration`,
    {
      schema: { body: RegisterBody },
      config: { action: 'webauthn:register', targetType: 'webauthn_credential' },
    },
    async (req, reply) => {
      const b = req.body as Static<typeof RegisterBody>;
      const key = await webauthn.register(req.auth!, b.name, b.response as RegistrationResponseJSON);
      req.auditNote.targetId = key.id;
      return reply.code(201).send({ credential: key });
    },
  );
  app.get(`${WA}/credentials`, { config: { action: 'webauthn:list' } }, async (req) => ({
    credentials: (await webauthn.list(req.auth!.userId)).map((c) => ({
      ...c,
      counter: Number(c.counter),
      transports: JSON.parse(c.transports) as string[],
    })),
  }));
  app.delete(
    `${WA}/credentials/:id`,
    {
      schema: { params: Type.Object({ id: B64u(1024) }) },
      config: { action: 'webauthn:delete', targetType: 'webauthn_credential' },
    },
    // A token that needed the key (an MFA rule naming webauthn) could only be had with it; an admin
    // without a second factor cannot reach this (policy/rules.ts MFA_ENROLLMENT_ACTIONS).
    async (req, reply) => {
      await webauthn.remove(req.auth!.userId, (req.params as { id: string }).id);
      return reply.code(204).send();
    },
  );
  const LoginOptionsBody = Type.Object({ user: UserRef }, { additionalProperties: false });
  app.post(
    `${WA}/login/options`,
    { schema: { body: LoginOptionsBody }, config: { action: 'webauthn:login_options' } },
    async (req) => webauthn.loginOptions((req.body as Static<typeof LoginOptionsBody>).user),
  );
  const LoginBody = Type.Object(
    {
      user: UserRef,
      password: Type.String({ maxLength: 4096 }),
      project: Opt(ProjectRef),
      response: AuthenticationResponse,
    },
    { additionalProperties: false },
  );
  app.post(
    `${WA}/login`,
    { schema: { body: LoginBody }, config: { action: 'webauthn:login', targetType: 'token' } },
    async (req, reply) => {
      const b = req.body as Static<typeof LoginBody>;
      req.auditNote.attemptedUser = b.user.name ?? b.user.id ?? 'unknown';
      const { token, auth } = await webauthn.loginWithKey({
        user: b.user,
        password: b.password,
        scope: b.project,
        response: b.response as AuthenticationResponseJSON,
      });
      req.auth = auth;
      req.auditNote.targetId = auth.auditId;
      return sendLogin(reply, token, auth);
    },
  );

  // Other users' factors, for the cloud admin (docs/identity.md): listed without secrets, revoked one by one.
  const devices = new MfaDevices(ctx.credentials, webauthn, recovery);
  const UserDevice = Type.Object({ user_id: Id, id: B64u(1024) });
  const userDevices = `${BULWARK_PREFIX}/users/:user_id/mfa-devices`;
  app.get(
    userDevices,
    { schema: { params: Type.Object({ user_id: Id }) }, config: { action: 'identity:mfa_devices:list' } },
    async (req) => {
      const { user_id } = req.params as { user_id: string };
      await ctx.identity.getUser(user_id);
      return { mfa_devices: await devices.list(user_id) };
    },
  );
  app.delete(
    `${userDevices}/:id`,
    {
      schema: { params: UserDevice },
      config: { action: 'identity:mfa_devices:revoke', targetType: 'mfa_device' },
    },
    async (req, reply) => {
      const { user_id, id } = req.params as Static<typeof UserDevice>;
      req.auditNote.targetId = `${id}@${user_id}`;
      await ctx.identity.getUser(user_id);
      await devices.revoke(user_id, id);
      return reply.code(204).send();
    },
  );

  app.post(
    `${BULWARK_PREFIX}/recovery-codes`,
    { config: { action: 'recovery_codes:generate', targetType: 'recovery_codes' } },
    async (req, reply) => {
      const codes = await recovery.generate(req.auth!.userId);
      req.auditNote.targetId = req.auth!.userId;
      return reply.code(201).send({
        recovery_codes: codes,
        notice:
          'Shown once: store them offline. Each works once, with your password, instead of your device.',
      });
    },
  );
  app.get(
    `${BULWARK_PREFIX}/recovery-codes`,
    { config: { action: 'recovery_codes:status' } },
    async (req) => ({
      remaining: await recovery.remaining(req.auth!.userId),
    }),
  );
  const RecoveryLogin = Type.Object(
    {
      user: UserRef,
      password: Type.String({ maxLength: 4096 }),
      code: Type.String({ maxLength: 64 }),
      project: Opt(ProjectRef),
    },
    { additionalProperties: false },
  );
  app.post(
    `${BULWARK_PREFIX}/recovery-codes/login`,
    { schema: { body: RecoveryLogin }, config: { action: 'recovery_codes:login', targetType: 'token' } },
    async (req, reply) => {
      const b = req.body as Static<typeof RecoveryLogin>;
      req.auditNote.attemptedUser = b.user.name ?? b.user.id ?? 'unknown';
      const { token, auth } = await recovery.loginWithCode({
        user: b.user,
        password: b.password,
        code: b.code,
        scope: b.project,
      });
      req.auth = auth;
      req.auditNote.targetId = auth.auditId;
      return sendLogin(reply, token, auth);
    },
  );
}
