import type { Selectable } from 'kysely';
import { sql } from 'kysely';
import { BulwarkError, badRequest } from '../errors.js';
import type { AuthContext } from '../policy/context.js';
import type { Store } from '../store/database.js';
import type { UsersTable } from '../store/schema.js';
import { nowIso, randomSecret, sha256Hex } from '../util/ids.js';
import type { ApplicationCredentialService } from './application-credentials.js';
import { loginFailed, type ProjectRef, type UserRef } from './config.js';
import type { CredentialService } from './credentials.js';
import { APP_CRED_METHOD, LOGIN_METHODS, mfaRules, TOKEN_METHOD } from './mfa-rules.js';
import { verifyPassword } from './passwords.js';
import type { IdentityService } from './service.js';

/** Keystone's receipt lifetime (`[receipt] expiration`). */
export const RECEIPT_TTL_SECONDS = 300;

export interface LoginRequest {
  methods: readonly string[];
  password?: { user: UserRef; password: string } | undefined;
  totp?: { user: UserRef; passcode: string } | undefined;
  /** The `Openstack-Auth-Receipt` header of a login that continues an earlier partial one. */
  receipt?: string | undefined;
  /** Keystone's `token` method: the token to derive the new one from. */
  token?: string | undefined;
  /** Keystone's `application_credential` method. */
  applicationCredential?:
    | { id?: string | undefined; name?: string | undefined; user?: UserRef | undefined; secret: string }
    | undefined;
  scope?: ProjectRef | undefined;
  /**
   * A second factor proved outside Keystone's body (a WebAuthn assertion, a
   * recovery code), checked after the password: null when it holds, else why not.
   */
  extra?:
    | { method: 'webauthn' | 'recovery_code'; check: (userId: string) => Promise<string | null> }
    | undefined;
}

type User = Selectable<UsersTable>;

/**
 * Keystone v3 authentication with several methods: password and TOTP, per-user
 * MFA rules answered with a receipt when a factor is missing, and Keystone's
 * lockout (`lockout_failure_attempts` failures lock the account for
 * `lockout_duration`). Failures all look alike to the caller unless the
 * caller proved the password; the audit record keeps the real reason.
 */
export class LoginService {
  constructor(
    private readonly store: Store,
    private readonly identity: IdentityService,
    private readonly credentials: CredentialService,
    private readonly appCreds: ApplicationCredentialService,
  ) {}

  private get db() {
    return this.store.db;
  }

  async login(req: LoginRequest): Promise<{ token: string; auth: AuthContext }> {
    if (req.methods.includes(TOKEN_METHOD)) return this.fromToken(req);
    if (req.methods.includes(APP_CRED_METHOD)) {
      const ac = req.applicationCredential;
      if (req.methods.length !== 1 || ac === undefined)
        throw badRequest(
          'The application_credential method goes alone, with auth.identity.application_credential.',
        );
      // The token is scoped to the credential's own project; no other scope may be asked for.
      if (req.scope?.id !== undefined || req.scope?.name !== undefined)
        throw badRequest('An application credential token is scoped to its project: send no scope.');
      return this.appCreds.authenticate(ac, ac.secret);
    }
    for (const m of req.methods) {
      if (!(LOGIN_METHODS as readonly string[]).includes(m))
        throw badRequest(
          `Unsupported authentication method ${m}; this cloud accepts ${LOGIN_METHODS.join(', ')}.`,
        );
    }
    if (req.methods.includes('password') !== (req.password !== undefined))
      throw badRequest(
        'auth.identity.methods must list "password" exactly when auth.identity.password is sent.',
      );
    if (req.methods.includes('totp') !== (req.totp !== undefined))
      throw badRequest('auth.identity.methods must list "totp" exactly when auth.identity.totp is sent.');

    const receipt = req.receipt === undefined ? null : await this.openReceipt(req.receipt);
    const refs = [req.password?.user, req.totp?.user].filter((r): r is UserRef => r !== undefined);
    if (refs.length === 0) throw badRequest('Send auth.identity.password or auth.identity.totp.');
    const rows = await Promise.all(refs.map((r) => this.identity.findUser(r)));
    const row = rows[0];
    if (!row || rows.some((r) => r?.id !== row.id)) {
      await verifyPassword(null, req.password?.password ?? '');
      throw loginFailed(row ? 'auth methods name different users' : 'unknown user');
    }
    if (receipt && receipt.userId !== row.id) throw loginFailed('auth receipt belongs to another user');

    const lockedUntil = this.lockedUntil(row);
    if (lockedUntil) {
      // Only a caller who knows the password learns that the account is locked.
      const knows = req.password ? await verifyPassword(row.password_hash, req.password.password) : false;
      if (!knows) throw loginFailed(`login attempt while locked until ${lockedUntil}`);
      throw new BulwarkError(
        'Unauthorized',
        `The account is locked for user: ${row.id} after too many failed logins. Try again after ${lockedUntil}, or ask an administrator to re-enable the user.`,
        { auditReason: `account locked until ${lockedUntil}` },
      );
    }

    const proved = new Set<string>(receipt?.methods ?? []);
    let failure: string | null = null;
    if (req.password) {
      if (await verifyPassword(row.password_hash, req.password.password)) proved.add('password');
      else failure = 'wrong password';
    }
    if (req.totp && failure === null) {
      const r = await this.credentials.verifyTotp(row.id, req.totp.passcode);
      if (r === 'ok') proved.add('totp');
      else failure = r === 'replay' ? 'TOTP passcode replayed (already used)' : 'wrong TOTP passcode';
    }
    if (req.extra && failure === null) {
      const why = await req.extra.check(row.id);
      if (why === null) proved.add(req.extra.method);
      else failure = why;
    }
    if (failure !== null) throw loginFailed(await this.recordFailure(row, failure));

    await this.identity.checkUsable(row, proved.has('password'));
    const rules = mfaRules(row.options);
    // A recovery code stands in for the lost device, whichever second factor a rule names.
    const satisfied = new Set(proved);
    if (proved.has('recovery_code')) for (const m of ['totp', 'webauthn']) satisfied.add(m);
    if (rules.length > 0 && !rules.some((rule) => rule.every((m) => satisfied.has(m)))) {
      throw await this.issueReceipt(row, [...proved], rules);
    }
    const projectId = await this.identity.resolveScope(row.id, req.scope);
    await this.db
      .updateTable('users')
      .set({ failed_auth_count: 0, failed_auth_at: null, last_login_at: nowIso() })
      .where('id', '=', row.id)
      .execute();
    if (req.receipt !== undefined)
      await this.db.deleteFrom('auth_receipts').where('id_hash', '=', sha256Hex(req.receipt)).execute();
    return this.identity.mintToken(row.id, projectId, [...proved]);
  }

  /**
   * Keystone's token method (re-scoping): the new token keeps the old one's
   * factors (`token` plus its methods, as Keystone records them) and never
   * outlives it, so it cannot stretch a session or add a factor.
   */
  private async fromToken(req: LoginRequest): Promise<{ token: string; auth: AuthContext }> {
    if (req.methods.length !== 1 || req.token === undefined)
      throw badRequest('The token method goes alone, with auth.identity.token.id.');
    const old = await this.identity.validateToken(req.token);
    if (!old) throw loginFailed('token method: the token is invalid, expired or revoked');
    const projectId = await this.identity.resolveScope(old.userId, req.scope);
    const ttl = Math.floor((Date.parse(old.expiresAt) - Date.now()) / 1000);
    if (ttl <= 0) throw loginFailed('token method: the token expires now');
    const methods = [TOKEN_METHOD, ...old.methods.filter((m) => m !== TOKEN_METHOD)];
    return this.identity.mintToken(old.userId, projectId, methods, ttl);
  }

  /** When the account's lock ends, or null when it is not locked. */
  private lockedUntil(row: User): string | null {
    const { lockoutFailureAttempts: n, lockoutDurationSeconds: d } = this.identity.config;
    if (n === 0 || row.failed_auth_count < n || row.failed_auth_at === null) return null;
    const until = new Date(Date.parse(row.failed_auth_at) + d * 1000).toISOString();
    return until > nowIso() ? until : null;
  }

  /** Counts a failed login (a lock that has run out starts the count again); returns the audit reason. */
  private async recordFailure(row: User, why: string): Promise<string> {
    const { lockoutFailureAttempts: n, lockoutDurationSeconds: d } = this.identity.config;
    const restart = n > 0 && row.failed_auth_count >= n;
    const now = nowIso();
    await this.db
      .updateTable('users')
      .set({
        failed_auth_count: restart ? 1 : sql<number>`failed_auth_count + 1`,
        failed_auth_at: now,
      })
      .where('id', '=', row.id)
      .execute();
    if (n === 0) return why;
    const count = restart ? 1 : row.failed_auth_count + 1;
    if (count >= n) {
      const until = new Date(Date.parse(now) + d * 1000).toISOString();
      return `${why}; ${count} failures: account locked until ${until}`;
    }
    return `${why} (failure ${count} of ${n} before lockout)`;
  }

  private async openReceipt(receipt: string): Promise<{ userId: string; methods: string[] }> {
    const row = await this.db
      .selectFrom('auth_receipts')
      .selectAll()
      .where('id_hash', '=', sha256Hex(receipt))
      .executeTakeFirst();
    if (!row || row.expires_at <= nowIso())
      throw new BulwarkError(
        'Unauthorized',
        'The auth receipt is invalid or expired; log in again with all factors.',
        {
          auditReason: 'invalid or expired auth receipt',
        },
      );
    return { userId: row.user_id, methods: JSON.parse(row.methods) as string[] };
  }

  /** Keystone's answer to a login that proved some factors but no whole rule: 401 with a receipt. */
  private async issueReceipt(row: User, methods: string[], rules: string[][]): Promise<BulwarkError> {
    const receipt = randomSecret(32);
    const issuedAt = new Date();
    const expiresAt = new Date(issuedAt.getTime() + RECEIPT_TTL_SECONDS * 1000);
    await this.db.deleteFrom('auth_receipts').where('expires_at', '<=', issuedAt.toISOString()).execute();
    await this.db
      .insertInto('auth_receipts')
      .values({
        id_hash: sha256Hex(receipt),
        user_id: row.id,
        methods: JSON.stringify(methods),
        issued_at: issuedAt.toISOString(),
        expires_at: expiresAt.toISOString(),
      })
      .execute();
    const domain = await this.identity.getDomain(row.domain_id);
    return new BulwarkError(
      'Unauthorized',
      `Insufficient auth methods received for user ${row.id}. Auth Methods Provided: ${JSON.stringify(methods)}. Required Auth Methods: ${JSON.stringify(rules)}.`,
      {
        headers: { 'openstack-auth-receipt': receipt },
        details: {
          receipt: {
            methods,
            user: { id: row.id, name: row.name, domain: { id: domain.id, name: domain.name } },
            issued_at: issuedAt.toISOString(),
            expires_at: expiresAt.toISOString(),
          },
          required_auth_methods: rules,
        },
        auditReason: `second factor missing (proved ${methods.join(',')}): auth receipt issued`,
      },
    );
  }
}
