import {
  type AuthenticationResponseJSON,
  generateAuthenticationOptions,
  generateRegistrationOptions,
  type RegistrationResponseJSON,
  verifyAuthenticationResponse,
  verifyRegistrationResponse,
} from '@simplewebauthn/server';
import { badRequest, notFound } from '../errors.js';
import type { AuthContext } from '../policy/context.js';
import type { Store } from '../store/database.js';
import { keystoneId, nowIso } from '../util/ids.js';
import type { ProjectRef, UserRef } from './config.js';
import type { LoginService } from './login.js';
import type { IdentityService } from './service.js';

const CHALLENGE_TTL_MS = 120_000;

/**
 * The relying party this cloud is to a browser: the public URL's origin, with
 * a loopback address named `localhost` (an RP ID must be a domain name).
 * Fixed by configuration, never taken from a request's Host header.
 */
export function relyingParty(publicUrl: string): { rpId: string; origin: string } {
  const u = new URL(publicUrl);
  const host = ['127.0.0.1', '[::1]', '::1'].includes(u.hostname) ? 'localhost' : u.hostname;
  return { rpId: host, origin: `${u.protocol}//${host}${u.port ? `:${u.port}` : ''}` };
}

/**
 * WebAuthn/FIDO2 security keys (via @simplewebauthn/server): a logged-in
 * user registers keys; a login is password + key assertion, through the one
 * LoginService (lockout, MFA rules, audit reasons). Challenges are single use.
 */
export class WebAuthnService {
  constructor(
    private readonly store: Store,
    private readonly identity: IdentityService,
    private readonly login: LoginService,
    private readonly rp: { rpId: string; origin: string },
  ) {}

  private get db() {
    return this.store.db;
  }

  private async saveChallenge(userId: string, kind: 'register' | 'login', challenge: string) {
    await this.db.deleteFrom('webauthn_challenges').where('expires_at', '<=', nowIso()).execute();
    await this.db
      .deleteFrom('webauthn_challenges')
      .where('user_id', '=', userId)
      .where('kind', '=', kind)
      .execute();
    await this.db
      .insertInto('webauthn_challenges')
      .values({
        id: keystoneId(),
        user_id: userId,
        kind,
        challenge,
        expires_at: new Date(Date.now() + CHALLENGE_TTL_MS).toISOString(),
      })
      .execute();
  }

  /** The pending challenge, removed as it is read: each one verifies at most one response. */
  private async takeChallenge(userId: string, kind: 'register' | 'login'): Promise<string | null> {
    const row = await this.db
      .selectFrom('webauthn_challenges')
      .selectAll()
      .where('user_id', '=', userId)
      .where('kind', '=', kind)
      .executeTakeFirst();
    if (!row) return null;
    await this.db.deleteFrom('webauthn_challenges').where('id', '=', row.id).execute();
    return row.expires_at > nowIso() ? row.challenge : null;
  }

  list(userId: string) {
    return this.db
      .selectFrom('webauthn_credentials')
      .select(['id', 'name', 'counter', 'transports', 'created_at', 'last_used_at'])
      .where('user_id', '=', userId)
      .orderBy('created_at')
      .execute();
  }

  async remove(userId: string, id: string): Promise<void> {
    const r = await this.db
      .deleteFrom('webauthn_credentials')
      .where('user_id', '=', userId)
      .where('id', '=', id)
      .executeTakeFirst();
    if (Number(r.numDeletedRows) === 0) throw notFound('security key', id);
  }

  async registrationOptions(caller: AuthContext) {
    const existing = await this.list(caller.userId);
    const options = await generateRegistrationOptions({
      rpName: 'Bulwark',
      rpID: this.rp.rpId,
      userName: caller.userName,
      userID: new TextEncoder().encode(caller.userId),
      attestationType: 'none',
      excludeCredentials: existing.map((c) => ({ id: c.id })),
      authenticatorSelection: { residentKey: 'discouraged', userVerification: 'preferred' },
    });
    await this.saveChallenge(caller.userId, 'register', options.challenge);
    return options;
  }

  async register(caller: AuthContext, name: string, response: RegistrationResponseJSON) {
    const challenge = await this.takeChallenge(caller.userId, 'register');
    if (!challenge)
      throw badRequest('No registration is pending (or it expired): ask for new options first.');
    const v = await verifyRegistrationResponse({
      response,
      expectedChallenge: challenge,
      expectedOrigin: this.rp.origin,
      expectedRPID: this.rp.rpId,
    }).catch((e: Error) => {
      throw badRequest(`The security key's registration did not verify: ${e.message}`);
    });
    if (!v.verified) throw badRequest("The security key's registration did not verify.");
    const c = v.registrationInfo.credential;
    const row = {
      id: c.id,
      user_id: caller.userId,
      name,
      public_key: Buffer.from(c.publicKey).toString('base64url'),
      counter: c.counter,
      transports: JSON.stringify(c.transports ?? []),
      created_at: nowIso(),
      last_used_at: null,
    };
    await this.db.insertInto('webauthn_credentials').values(row).execute();
    return { id: row.id, name, created_at: row.created_at };
  }

  /** Login options for a user; an unknown user gets options that can never verify. */
  async loginOptions(user: UserRef) {
    const row = await this.identity.findUser(user);
    const keys = row
      ? await this.db
          .selectFrom('webauthn_credentials')
          .select(['id', 'transports'])
          .where('user_id', '=', row.id)
          .execute()
      : [];
    const options = await generateAuthenticationOptions({
      rpID: this.rp.rpId,
      allowCredentials: keys.map((k) => ({ id: k.id, transports: JSON.parse(k.transports) as string[] })),
      userVerification: 'preferred',
    });
    if (row && keys.length > 0) await this.saveChallenge(row.id, 'login', options.challenge);
    return options;
  }

  /** Password + security key: the LoginService checks the password, then this assertion. */
  loginWithKey(input: {
    user: UserRef;
    password: string;
    response: AuthenticationResponseJSON;
    scope?: ProjectRef | undefined;
  }) {
    return this.login.login({
      methods: ['password'],
      password: { user: input.user, password: input.password },
      scope: input.scope,
      extra: { method: 'webauthn', check: (userId) => this.checkAssertion(userId, input.response) },
    });
  }

  private async checkAssertion(userId: string, response: AuthenticationResponseJSON): Promise<string | null> {
    const challenge = await this.takeChallenge(userId, 'login');
    if (!challenge) return 'no pending security-key challenge (or it expired)';
    const key = await this.db
      .selectFrom('webauthn_credentials')
      .selectAll()
      .where('user_id', '=', userId)
      .where('id', '=', response.id)
      .executeTakeFirst();
    if (!key) return 'security key not registered to this user';
    try {
      const v = await verifyAuthenticationResponse({
        response,
        expectedChallenge: challenge,
        expectedOrigin: this.rp.origin,
        expectedRPID: this.rp.rpId,
        credential: {
          id: key.id,
          publicKey: Buffer.from(key.public_key, 'base64url'),
          counter: Number(key.counter),
          transports: JSON.parse(key.transports) as string[],
        },
      });
      if (!v.verified) return 'security key assertion did not verify';
      await this.db
        .updateTable('webauthn_credentials')
        .set({ counter: v.authenticationInfo.newCounter, last_used_at: nowIso() })
        .where('id', '=', key.id)
        .execute();
      return null;
    } catch (e) {
      return `security key assertion refused: ${(e as Error).message}`;
    }
  }
}
