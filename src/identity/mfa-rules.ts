/** The Keystone auth methods a login may name (a receipt continues one, in its header). */
export const LOGIN_METHODS = ['password', 'totp'] as const;
/** Keystone's `token` method: a new token (e.g. another scope) from a valid one, keeping its factors. */
export const TOKEN_METHOD = 'token';
/** Keystone's application credential method: automation's single secret, never a factor of a rule. */
export const APP_CRED_METHOD = 'application_credential';

/** Keystone user options this cloud understands for MFA (`openstack user set --multi-factor-auth-rule ...`). */
export interface MfaOptions {
  multi_factor_auth_enabled?: boolean;
  multi_factor_auth_rules?: string[][];
}

/**
 * The rules a login must satisfy one of, from a user's stored options: none
 * unless MFA is enabled. As in Keystone, a rule naming a method this cloud
 * does not offer is ignored (it could never be met).
 */
export function mfaRules(optionsJson: string): string[][] {
  const o = JSON.parse(optionsJson) as MfaOptions;
  if (o.multi_factor_auth_enabled !== true) return [];
  return (o.multi_factor_auth_rules ?? []).filter(
    (rule) => rule.length > 0 && rule.every((m) => (LOGIN_METHODS as readonly string[]).includes(m)),
  );
}
