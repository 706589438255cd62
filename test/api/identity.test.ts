import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sha256Hex } from '../../src/util/ids.js';
import { PASSWORD, startTestApi, type TestApi } from '../helpers/api.js';
import { dialects } from '../helpers/store.js';

describe.each(dialects())('identity API on %s', (dialect) => {
  let api: TestApi;
  beforeAll(async () => {
    api = await startTestApi(dialect);
  });
  afterAll(async () => api?.close());

  it('issues a project-scoped token with a catalog listing every service', async () => {
    const res = await api.call('POST', '/identity/v3/auth/tokens', null, {
      auth: {
        identity: {
          methods: ['password'],
          password: { user: { name: 'admin', domain: { name: 'Default' }, password: api.adminPassword } },
        },
        scope: { project: { name: 'admin', domain: { name: 'Default' } } },
      },
    });
    expect(res.status).toBe(201);
    expect(res.headers['x-subject-token']).toMatch(/^[A-Za-z0-9_-]{40,}$/);
    expect(res.headers['x-openstack-request-id']).toMatch(/^req-/);
    const t = res.json.token;
    expect(t.project.name).toBe('admin');
    expect(t.roles.map((r: { name: string }) => r.name).sort()).toEqual([
      'admin',
      'manager',
      'member',
      'reader',
    ]);
    const types = t.catalog.map((s: { type: string }) => s.type);
    expect(types).toContain('identity');
    expect(types).toContain('bulwark');
    for (const s of t.catalog) expect(s.endpoints[0].url.startsWith('https://bulwark.test:8443/')).toBe(true);
  });

  it('refuses a wrong password, an unknown user and a project the user has no role on, alike', async () => {
    const attempt = (name: string, password: string, project?: string) =>
      api.call('POST', '/identity/v3/auth/tokens', null, {
        auth: {
          identity: {
            methods: ['password'],
            password: { user: { name, domain: { id: 'default' }, password } },
          },
          ...(project ? { scope: { project: { name: project, domain: { id: 'default' } } } } : {}),
        },
      });
    await api.persona('p-login', 'login-user', 'member');
    const bad = [
      await attempt('admin', 'wrong-password'),
      await attempt('nobody', 'x'),
      await attempt('login-user', PASSWORD, 'admin'),
    ];
    for (const r of bad) {
      expect(r.status).toBe(401);
      expect(r.json.error.message).toBe('The request you have made requires authentication.');
    }
    const events = await api.store.db
      .selectFrom('audit_events')
      .selectAll()
      .where('action', '=', 'identity:issue_token')
      .where('status', '=', 401)
      .execute();
    expect(events.map((e) => e.reason)).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/^wrong password \(failure 1 of 5 before lockout\)$/),
        'unknown user',
        'user has no role on the scope project',
      ]),
    );
    expect(events.every((e) => e.source_ip === '127.0.0.1')).toBe(true);
  });

  it('validates and revokes tokens', async () => {
    const token = await api.login('admin', api.adminPassword, 'admin');
    const v = await api.app.inject({
      method: 'GET',
      url: '/identity/v3/auth/tokens',
      headers: { 'x-auth-token': token, 'x-subject-token': token },
    });
    expect(v.statusCode).toBe(200);
    const d = await api.app.inject({
      method: 'DELETE',
      url: '/identity/v3/auth/tokens',
      headers: { 'x-auth-token': token, 'x-subject-token': token },
    });
    expect(d.statusCode).toBe(204);
    expect((await api.call('GET', '/identity/v3/projects', token)).status).toBe(401);
  });

  it('expires tokens', async () => {
    const token = await api.login('admin', api.adminPassword, 'admin');
    await api.store.db
      .updateTable('tokens')
      .set({ expires_at: new Date(Date.now() - 1000).toISOString() })
      .where('id_hash', '=', sha256Hex(token))
      .execute();
    expect((await api.call('GET', '/identity/v3/projects', token)).status).toBe(401);
  });

  it('manages projects, users and role assignments', async () => {
    const p = await api.call('POST', '/identity/v3/projects', undefined, {
      project: { name: 'acme', description: 'Acme Corp', domain_id: 'default', enabled: true },
    });
    expect(p.status).toBe(201);
    expect(
      (await api.call('POST', '/identity/v3/projects', undefined, { project: { name: 'acme' } })).status,
    ).toBe(409);
    const u = await api.call('POST', '/identity/v3/users', undefined, {
      user: { name: 'bob', password: PASSWORD, default_project_id: p.json.project.id },
    });
    expect(u.status).toBe(201);
    expect(u.json.user).not.toHaveProperty('password');
    const member = (await api.call('GET', '/identity/v3/roles?name=member')).json.roles[0];
    const grant = `/identity/v3/projects/${p.json.project.id}/users/${u.json.user.id}/roles/${member.id}`;
    expect((await api.call('PUT', grant)).status).toBe(204);
    expect((await api.call('HEAD', grant)).status).toBe(204);
    const bobToken = await api.login('bob', PASSWORD, 'acme');
    const list = await api.call(
      'GET',
      `/identity/v3/role_assignments?user.id=${u.json.user.id}&include_names=1`,
      bobToken,
    );
    expect(list.status).toBe(200);
    expect(list.json.role_assignments[0].role.name).toBe('member');
    // Losing the role ends the session.
    expect((await api.call('DELETE', grant)).status).toBe(204);
    expect((await api.call('GET', `/identity/v3/users/${u.json.user.id}`, bobToken)).status).toBe(401);
    expect(
      (
        await api.call('PATCH', `/identity/v3/users/${u.json.user.id}`, undefined, {
          user: { enabled: false },
        })
      ).status,
    ).toBe(200);
    expect((await api.call('DELETE', `/identity/v3/users/${u.json.user.id}`)).status).toBe(204);
    expect((await api.call('DELETE', `/identity/v3/projects/${p.json.project.id}`)).status).toBe(204);
    expect((await api.call('GET', `/identity/v3/projects/${p.json.project.id}`)).status).toBe(404);
  });

  it('lets a user change their own password only with the original', async () => {
    const me = await api.persona('p-pw', 'pw-user', 'reader');
    const path = `/identity/v3/users/${me.userId}/password`;
    const wrong = await api.call('POST', path, me.token, {
      user: { original_password: 'nope-nope', password: 'new-password-1' },
    });
    expect(wrong.status).toBe(401);
    const ok = await api.call('POST', path, me.token, {
      user: { original_password: PASSWORD, password: 'new-password-1' },
    });
    expect(ok.status).toBe(204);
    await expect(api.login('pw-user', 'new-password-1', 'p-pw')).resolves.toBeTruthy();
    const other = await api.persona('p-pw', 'pw-user-2', 'member');
    expect(
      (
        await api.call('POST', path, other.token, {
          user: { original_password: 'new-password-1', password: 'stolen-pass-2' },
        })
      ).status,
    ).toBe(403);
  });

  it('keeps the admin role on a project other than admin a project role, not cloud admin', async () => {
    const pa = await api.persona('p-local-admin', 'local-admin', 'admin');
    expect((await api.call('GET', '/identity/v3/projects', pa.token)).status).toBe(403);
    expect(
      (await api.call('POST', '/identity/v3/users', pa.token, { user: { name: 'x-evil' } })).status,
    ).toBe(403);
    expect((await api.call('GET', `/identity/v3/projects/${pa.projectId}`, pa.token)).status).toBe(200);
  });

  it('refuses to let an admin lock themselves out', async () => {
    const me = (await api.call('GET', '/identity/v3/users?name=admin')).json.users[0];
    expect((await api.call('DELETE', `/identity/v3/users/${me.id}`)).status).toBe(400);
    expect(
      (await api.call('PATCH', `/identity/v3/users/${me.id}`, undefined, { user: { enabled: false } }))
        .status,
    ).toBe(400);
    const adminProject = (await api.call('GET', '/identity/v3/projects?name=admin')).json.projects[0];
    expect((await api.call('DELETE', `/identity/v3/projects/${adminProject.id}`)).status).toBe(400);
  });

  it('publishes version discovery and an OpenAPI document without a token', async () => {
    const v = await api.call('GET', '/identity/v3', null);
    expect(v.status).toBe(200);
    expect(v.json.version.id).toBe('v3.14');
    const o = await api.call('GET', '/openapi.json', null);
    expect(o.status).toBe(200);
    expect(Object.keys(o.json.paths)).toContain('/identity/v3/projects');
  });
});
