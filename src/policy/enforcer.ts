import { forbidden, unauthorized } from '../errors.js';
import type { AuthContext, PolicyTarget } from './context.js';
import {
  type Action,
  APP_CRED_REFUSED_ACTIONS,
  isAction,
  MFA_ENROLLMENT_ACTIONS,
  POLICY,
  type RuleTerm,
} from './rules.js';

function termAllows(term: RuleTerm, auth: AuthContext | null, target: PolicyTarget): boolean {
  switch (term) {
    case 'public':
      return true;
    case 'authenticated':
      return auth !== null;
    case 'admin':
      return auth?.isAdmin === true;
    case 'member':
    case 'reader':
      return (
        auth !== null &&
        auth.projectId !== null &&
        auth.roles.includes(term) &&
        (target.project_id === undefined || target.project_id === auth.projectId)
      );
    case 'self':
      return auth !== null && target.user_id != null && target.user_id === auth.userId;
  }
}

/** True when the policy table lets `auth` perform `action` on `target`. */
export function allows(action: string, auth: AuthContext | null, target: PolicyTarget = {}): boolean {
  if (!isAction(action)) return false; // deny by default
  if (auth?.mfaPending && !MFA_ENROLLMENT_ACTIONS.has(action)) return false;
  if (auth?.appCred && !auth.appCred.unrestricted && APP_CRED_REFUSED_ACTIONS.has(action)) return false;
  return POLICY[action].some((term) => termAllows(term, auth, target));
}

export const isPublic = (action: Action): boolean =>
  (POLICY[action] as readonly RuleTerm[]).includes('public');

/**
 * Throws 401 when a token is needed and missing, 403 when the caller's roles
 * or project do not satisfy the rule.
 */
export function enforce(action: string, auth: AuthContext | null, target: PolicyTarget = {}): void {
  if (allows(action, auth, target)) return;
  if (auth === null) throw unauthorized('The request you have made requires authentication.');
  if (auth.appCred && !auth.appCred.unrestricted && APP_CRED_REFUSED_ACTIONS.has(action as Action))
    throw forbidden(
      `A token from an application credential cannot do this (${action}): use your own login, or an --unrestricted credential.`,
    );
  if (auth.mfaPending)
    throw forbidden(
      `Administrators must use a second factor: this token was issued without one, so it may only enroll MFA (refused: ${action}). ` +
        'Enroll TOTP with `openstack credential create --type totp USER SECRET`, then log in with ' +
        '--os-auth-type v3multifactor --os-auth-methods v3password,v3totp --os-passcode CODE (docs/identity.md).',
    );
  throw forbidden(`You are not authorized to perform the requested action: ${action}.`);
}
