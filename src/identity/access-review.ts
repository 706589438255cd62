import type { Store } from '../store/database.js';
import { nowIso } from '../util/ids.js';
import { DEFAULT_DOMAIN_ID, type IdentityConfig } from './config.js';
import { mfaRules } from './mfa-rules.js';

export interface ReviewOptions {
  /** No login for this many days makes an account stale. */
  staleDays: number;
  /** A password older than this many days is flagged. */
  passwordMaxAgeDays: number;
  /** A cloud admin who has not logged in for this many days holds power they do not use. */
  adminIdleDays: number;
  /** Admin or manager on more projects than this is broader than most jobs need. */
  maxPrivilegedProjects: number;
}

export const DEFAULT_REVIEW_OPTIONS: ReviewOptions = {
  staleDays: 90,
  passwordMaxAgeDays: 365,
  adminIdleDays: 30,
  maxPrivilegedProjects: 5,
};

export interface ReviewedUser {
  id: string;
  name: string;
  domain_id: string;
  enabled: boolean;
  /** Role names per project name, e.g. {admin: ['admin'], web: ['member']}. */
  roles: Record<string, string[]>;
  cloud_admin: boolean;
  mfa_enabled: boolean;
  mfa_rules: string[][];
  totp_credentials: number;
  application_credentials: number;
  break_glass: boolean;
  last_login_at: string | null;
  /** Days since the password was set (or the user created); null without a password. */
  password_age_days: number | null;
  locked: boolean;
  flags: string[];
}

const days = (from: string, now: number) => Math.floor((now - Date.parse(from)) / 86_400_000);

/**
 * The access review (guide: "Access Reviews"): every user with roles per
 * project, MFA status, last login and credential age, flagged where stale or
 * over-privileged. Read-only; the flags are advice for the reviewer.
 */
export async function accessReview(
  store: Store,
  config: IdentityConfig,
  opts: ReviewOptions = DEFAULT_REVIEW_OPTIONS,
): Promise<{ generated_at: string; options: ReviewOptions; users: ReviewedUser[] }> {
  const db = store.db;
  const now = Date.now();
  const [users, grants, totp, appCreds, breakGlass] = await Promise.all([
    db.selectFrom('users').selectAll().orderBy('name').execute(),
    db
      .selectFrom('role_assignments as a')
      .innerJoin('roles as r', 'r.id', 'a.role_id')
      .innerJoin('projects as p', 'p.id', 'a.project_id')
      .select(['a.user_id', 'r.name as role', 'p.name as project', 'p.domain_id'])
      .execute(),
    db.selectFrom('credentials').select('user_id').where('type', '=', 'totp').execute(),
    db.selectFrom('application_credentials').select('user_id').execute(),
    db.selectFrom('break_glass_accounts').select('user_id').execute(),
  ]);
  const count = (rows: { user_id: string }[], id: string) => rows.filter((r) => r.user_id === id).length;
  const reviewed = users.map((u): ReviewedUser => {
    const mine = grants.filter((g) => g.user_id === u.id);
    const roles: Record<string, string[]> = {};
    for (const g of mine) roles[g.project] = [...(roles[g.project] ?? []), g.role];
    for (const r of Object.values(roles)) r.sort();
    const cloudAdmin = mine.some(
      (g) => g.role === 'admin' && g.project === config.adminProjectName && g.domain_id === DEFAULT_DOMAIN_ID,
    );
    const rules = mfaRules(u.options);
    const totpCount = count(totp, u.id);
    const isBreakGlass = breakGlass.some((b) => b.user_id === u.id);
    const pwSince = u.password_hash === null ? null : (u.password_changed_at ?? u.created_at);
    const pwAge = pwSince === null ? null : days(pwSince, now);
    const locked =
      config.lockoutFailureAttempts > 0 &&
      u.failed_auth_count >= config.lockoutFailureAttempts &&
      u.failed_auth_at !== null &&
      Date.parse(u.failed_auth_at) + config.lockoutDurationSeconds * 1000 > now;
    const idle = days(u.last_login_at ?? u.created_at, now);
    const privileged = new Set(
      mine.filter((g) => g.role === 'admin' || g.role === 'manager').map((g) => g.project),
    );
    const flags: string[] = [];
    if (isBreakGlass) flags.push('break-glass');
    if (u.last_login_at === null) flags.push('never-logged-in');
    if (idle > opts.staleDays) flags.push('stale');
    if (cloudAdmin && !isBreakGlass && (totpCount === 0 || rules.length === 0))
      flags.push('admin-without-mfa');
    if (cloudAdmin && !isBreakGlass && idle > opts.adminIdleDays) flags.push('over-privileged:idle-admin');
    if (privileged.size > opts.maxPrivilegedProjects) flags.push('over-privileged:many-projects');
    if (u.enabled !== 1 && mine.length > 0) flags.push('disabled-with-roles');
    if (pwAge !== null && pwAge > opts.passwordMaxAgeDays) flags.push('password-old');
    if (u.password_expires_at !== null && u.password_expires_at <= nowIso()) flags.push('password-expired');
    if (locked) flags.push('locked');
    return {
      id: u.id,
      name: u.name,
      domain_id: u.domain_id,
      enabled: u.enabled === 1,
      roles,
      cloud_admin: cloudAdmin,
      mfa_enabled: rules.length > 0,
      mfa_rules: rules,
      totp_credentials: totpCount,
      application_credentials: count(appCreds, u.id),
      break_glass: isBreakGlass,
      last_login_at: u.last_login_at,
      password_age_days: pwAge,
      locked,
      flags,
    };
  });
  return { generated_at: nowIso(), options: opts, users: reviewed };
}
