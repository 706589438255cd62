import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestApi, type TestApi } from '../helpers/api.js';
import { dialects } from '../helpers/store.js';

describe.each(dialects())('bad input on %s', (dialect) => {
  let api: TestApi;
  let token: string;
  beforeAll(async () => {
    api = await startTestApi(dialect);
    token = await api.login('admin', api.adminPassword, 'admin');
  });
  afterAll(async () => api?.close());

  const counts = async () => ({
    projects: (await api.store.db.selectFrom('projects').select('id').execute()).length,
    users: (await api.store.db.selectFrom('users').select('id').execute()).length,
  });

  const raw = (payload: string, contentType = 'application/json', url = '/identity/v3/projects') =>
    api.app.inject({
      method: 'POST',
      url,
      headers: { 'x-auth-token': token, 'content-type': contentType },
      payload,
    });

  const cases: [string, () => ReturnType<typeof raw>, number, RegExp][] = [
    ['malformed JSON', () => raw('{"project": {"name": "x"'), 400, /Malformed JSON/],
    ['a JSON array', () => raw('[1,2,3]'), 400, /Invalid input/],
    ['a number where a string belongs', () => raw('{"project": {"name": 42}}'), 400, /name/],
    [
      'a string where a boolean belongs',
      () => raw('{"project": {"name": "x", "enabled": "yes"}}'),
      400,
      /enabled/,
    ],
    [
      'an unknown field',
      () => raw('{"project": {"name": "x", "evil": true}}'),
      400,
      /additional properties|evil/,
    ],
    [
      'an unknown top-level key',
      () => raw('{"project": {"name": "x"}, "sneaky": 1}'),
      400,
      /additional properties|sneaky/,
    ],
    ['an empty name', () => raw('{"project": {"name": ""}}'), 400, /name/],
    ['a huge name', () => raw(JSON.stringify({ project: { name: 'x'.repeat(300) } })), 400, /name/],
    [
      'a control character in a name',
      () => raw(JSON.stringify({ project: { name: 'a\u0000b' } })),
      400,
      /name/,
    ],
    ['a path traversal name', () => raw(JSON.stringify({ project: { name: '../../etc' } })), 400, /name/],
    [
      'an oversized body',
      () => raw(JSON.stringify({ project: { name: 'x', description: 'y'.repeat(2 * 1024 * 1024) } })),
      413,
      /larger/,
    ],
    [
      'a non-JSON content type',
      () => raw('name=x', 'application/x-www-form-urlencoded'),
      415,
      /Content-Type/,
    ],
    [
      'a short password',
      () =>
        raw(
          JSON.stringify({ user: { name: 'shorty', password: 'short' } }),
          'application/json',
          '/identity/v3/users',
        ),
      400,
      /password/,
    ],
    [
      'a nested unknown field in auth',
      () =>
        raw(
          JSON.stringify({
            auth: {
              identity: { methods: ['password'], password: { user: { name: 'a', password: 'b', extra: 1 } } },
            },
          }),
          'application/json',
          '/identity/v3/auth/tokens',
        ),
      400,
      /additional|extra/,
    ],
  ];

  it.each(cases)('refuses %s with a clear 4xx and changes nothing', async (_name, send, status, message) => {
    const before = await counts();
    const res = await send();
    expect(res.statusCode).toBe(status);
    const body = JSON.parse(res.body);
    expect(body.error.code).toBe(status);
    expect(body.error.message).toMatch(message);
    expect(res.body).not.toMatch(/at .*\.js:\d+/); // never a stack trace
    expect(await counts()).toEqual(before);
  });

  it('audits refused writes with the reason', async () => {
    await raw('{"project": {"name": 42}}');
    const last = await api.store.db
      .selectFrom('audit_events')
      .selectAll()
      .orderBy('seq', 'desc')
      .executeTakeFirstOrThrow();
    expect(last).toMatchObject({ action: 'identity:create_project', outcome: 'failure', status: 400 });
    expect(last.reason).toMatch(/name/);
  });

  it('answers unknown paths with 404 in the OpenStack error shape', async () => {
    const res = await api.call('GET', '/identity/v3/nothing-here');
    expect(res.status).toBe(404);
    expect(res.json.error.message).toMatch(/No API resource/);
  });

  it('answers bad ids with 400, and missing ones with 404', async () => {
    expect((await api.call('GET', '/identity/v3/projects/..%2F..%2Fetc')).status).toBe(400);
    expect((await api.call('GET', '/identity/v3/projects/deadbeef')).status).toBe(404);
  });
});
