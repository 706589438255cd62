import { describe, expect, it } from 'vitest';
import type { AuthContext } from './context.js';
import { expandRoles } from './context.js';
import { allows, enforce } from './enforcer.js';
import { POLICY } from './rules.js';

const ctx = (over: Partial<AuthContext>): AuthContext => ({
  userId: 'u1',
  userName: 'u',
  userDomainId: 'default',
  projectId: 'p1',
  projectName: 'p',
  projectDomainId: 'default',
  roles: ['reader'],
  isAdmin: false,
  methods: ['password'],
  tokenHash: 'h',
  auditId: 'a',
  issuedAt: '',
  expiresAt: '',
  ...over,
});

describe('policy enforcer', () => {
  it('denies an action missing from the table, even to an admin', () => {
    expect(allows('compute:launch_missiles', ctx({ isAdmin: true, roles: expandRoles(['admin']) }))).toBe(
      false,
    );
  });

  it('answers 401 without a token and 403 with the wrong role', () => {
    expect(() => enforce('identity:create_project', null)).toThrow(expect.objectContaining({ status: 401 }));
    expect(() => enforce('identity:create_project', ctx({ roles: expandRoles(['member']) }))).toThrow(
      expect.objectContaining({ status: 403 }),
    );
  });

  it('grants member and reader rules only within the caller’s own project', () => {
    const member = ctx({ roles: expandRoles(['member']) });
    expect(allows('identity:get_project', member, { project_id: 'p1' })).toBe(true);
    expect(allows('identity:get_project', member, { project_id: 'p2' })).toBe(false);
  });

  it('does not treat the admin role on an ordinary project as cloud admin', () => {
    const projectAdmin = ctx({ roles: expandRoles(['admin']), isAdmin: false });
    expect(allows('identity:list_users', projectAdmin)).toBe(false);
    expect(allows('identity:list_users', ctx({ roles: expandRoles(['admin']), isAdmin: true }))).toBe(true);
  });

  it('matches self only for the same user', () => {
    expect(allows('identity:change_password', ctx({}), { user_id: 'u1' })).toBe(true);
    expect(allows('identity:change_password', ctx({}), { user_id: 'u2' })).toBe(false);
    expect(allows('identity:change_password', ctx({}), { user_id: null })).toBe(false);
  });

  it('expands implied roles: admin > manager > member > reader', () => {
    expect(expandRoles(['admin'])).toEqual(['admin', 'manager', 'member', 'reader']);
    expect(expandRoles(['member'])).toEqual(['member', 'reader']);
  });

  it('has at least one term for every action', () => {
    for (const [action, terms] of Object.entries(POLICY)) expect(terms.length, action).toBeGreaterThan(0);
  });

  it('lets an admin token without a second factor only enroll MFA, and says how', () => {
    const pending = ctx({ roles: expandRoles(['admin']), mfaPending: true });
    expect(allows('identity:create_credential', pending, { user_id: 'u1' })).toBe(true);
    expect(allows('identity:create_credential', pending, { user_id: 'u2' })).toBe(false);
    expect(allows('compute:servers:index', pending, { project_id: 'p1' })).toBe(false);
    expect(() => enforce('identity:list_projects', pending)).toThrow(
      /Administrators must use a second factor/,
    );
  });

  it('refuses credential-making to a restricted application credential token, not an unrestricted one', () => {
    const rules: never[] = [];
    const restricted = ctx({ appCred: { id: 'ac', accessRules: rules, unrestricted: false } });
    const unrestricted = ctx({ appCred: { id: 'ac', accessRules: rules, unrestricted: true } });
    const self = { user_id: 'u1' };
    expect(allows('identity:create_application_credential', restricted, self)).toBe(false);
    expect(allows('identity:change_password', restricted, self)).toBe(false);
    expect(allows('identity:create_application_credential', unrestricted, self)).toBe(true);
    expect(() => enforce('identity:create_credential', restricted, self)).toThrow(/application credential/);
  });
});
