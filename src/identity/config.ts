import { BulwarkError } from '../errors.js';

/** The site's login and password rules (docs/identity.md); `serve` flags set them. */
export interface IdentityPolicy {
  /** Admin-scoped tokens need a second factor; without one they may only enroll one. */
  adminMfaRequired: boolean;
  /** Keystone's `lockout_failure_attempts` (0: never lock) and `lockout_duration` in seconds. */
  lockoutFailureAttempts: number;
  lockoutDurationSeconds: number;
  /** Password rules: minimum length, how many previous passwords may not be reused, days until expiry (0: never). */
  passwordMinLength: number;
  passwordHistory: number;
  passwordExpiresDays: number;
}

export const DEFAULT_IDENTITY_POLICY: IdentityPolicy = {
  adminMfaRequired: true,
  lockoutFailureAttempts: 5,
  lockoutDurationSeconds: 1800,
  passwordMinLength: 12,
  passwordHistory: 3,
  passwordExpiresDays: 0,
};

export interface IdentityConfig extends IdentityPolicy {
  /** Token lifetime in seconds (Keystone's default is one hour). */
  tokenTtlSeconds: number;
  /** The project whose admin role makes a cloud administrator. */
  adminProjectName: string;
}

/**
 * Auth methods that count as a second factor for the admin MFA rule: TOTP,
 * security keys, recovery codes, and break-glass (its sealed, offline
 * credential is the factor; break-glass.ts).
 */
export const SECOND_FACTORS: ReadonlySet<string> = new Set([
  'totp',
  'webauthn',
  'recovery_code',
  'break_glass',
]);

export const DEFAULT_DOMAIN_ID = 'default';

/** Identifies a user as Keystone's password method allows: by id, or by name within a domain. */
export interface UserRef {
  id?: string | undefined;
  name?: string | undefined;
  domain?: { id?: string | undefined; name?: string | undefined } | undefined;
}

export interface ProjectRef {
  id?: string | undefined;
  name?: string | undefined;
  domain?: { id?: string | undefined; name?: string | undefined } | undefined;
}

/** Failed logins all look alike to the caller; the audit log keeps the real reason. */
export const loginFailed = (auditReason: string) =>
  new BulwarkError('Unauthorized', 'The request you have made requires authentication.', { auditReason });
