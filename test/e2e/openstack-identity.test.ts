/**
 * The real `openstack` CLI (Debian's python3-openstackclient) against the
 * real `bulwark serve`, with the clouds.yaml it writes on first start.
 */
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type DaemonProcess,
  passwordCliEnv,
  startDaemonProcess,
  stopDaemon,
} from '../helpers/daemon-process.js';

const mode = (p: string) => statSync(p).mode & 0o777;

describe('openstack CLI against bulwark serve', () => {
  let d: DaemonProcess;
  beforeAll(async () => {
    d = await startDaemonProcess();
  });
  afterAll(() => stopDaemon(d));

  const os = (...args: string[]) => d.os(...args);
  const osJson = (...args: string[]) => d.osJson(...args);

  it('starts with a traverse-only data dir, 0600 secrets and database, and prints where to log in', () => {
    expect(mode(d.dataDir)).toBe(0o711);
    expect(mode(join(d.dataDir, 'bulwark.db'))).toBe(0o600);
    expect(mode(join(d.dataDir, 'pki'))).toBe(0o700);
    expect(mode(join(d.dataDir, 'admin-password'))).toBe(0o600);
    expect(mode(join(d.dataDir, 'clouds.yaml'))).toBe(0o600);
    expect(mode(join(d.dataDir, 'pki', 'ca.key'))).toBe(0o600);
    const password = readFileSync(join(d.dataDir, 'admin-password'), 'utf8').trim();
    expect(d.output).toContain(password);
    expect(d.output).toContain(`${d.url}/identity/v3`);
  });

  it('openstack token issue', async () => {
    const t = await osJson('token', 'issue');
    expect(t.id).toBeTruthy();
    expect(t.project_id).toMatch(/^[0-9a-f]{32}$/);
    expect(t.user_id).toMatch(/^[0-9a-f]{32}$/);
  });

  it('openstack project create|list|show|delete', async () => {
    const p = await osJson('project', 'create', '--description', 'Web tier', 'web');
    expect(p.name).toBe('web');
    const list = await osJson('project', 'list');
    expect(list.map((x: { Name: string }) => x.Name)).toEqual(expect.arrayContaining(['admin', 'web']));
    expect((await osJson('project', 'show', 'web')).description).toBe('Web tier');
    await os('project', 'delete', 'web');
    const r = await d.openstack(['project', 'show', 'web']);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/No project with a name or ID of 'web' exists/);
  });

  it('openstack user create|list|set|delete and role add|remove|assignment list', async () => {
    await os('project', 'create', 'team');
    const u = await osJson(
      'user',
      'create',
      '--password',
      'Initial-pass-1',
      '--project',
      'team',
      '--email',
      'carol@example.com',
      'carol',
    );
    expect(u.name).toBe('carol');
    expect((await osJson('user', 'list')).map((x: { Name: string }) => x.Name)).toContain('carol');
    await os('role', 'add', '--project', 'team', '--user', 'carol', 'member');
    const a = await osJson('role', 'assignment', 'list', '--user', 'carol', '--project', 'team', '--names');
    expect(a).toEqual([
      expect.objectContaining({ Role: 'member', User: 'carol@Default', Project: 'team@Default' }),
    ]);

    const carol = passwordCliEnv(d, 'carol', 'Initial-pass-1', 'team');
    const asCarol = await d.openstack(['token', 'issue', '-f', 'json'], carol);
    expect(asCarol.code).toBe(0);
    const refused = await d.openstack(['user', 'create', '--password', 'Whatever-pass-1', 'mallory'], carol);
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toMatch(/not authorized.*identity:create_user.*HTTP 403/s);

    await os('user', 'set', '--password', 'Rotated-pass-2', 'carol');
    expect((await d.openstack(['token', 'issue'], carol)).code).not.toBe(0);
    expect((await d.openstack(['token', 'issue'], { ...carol, OS_PASSWORD: 'Rotated-pass-2' })).code).toBe(0);

    await os('role', 'remove', '--project', 'team', '--user', 'carol', 'member');
    expect(
      await osJson('role', 'assignment', 'list', '--user', 'carol', '--project', 'team', '--names'),
    ).toEqual([]);
    await os('user', 'delete', 'carol');
    expect((await osJson('user', 'list')).map((x: { Name: string }) => x.Name)).not.toContain('carol');
    // Thirteen CLI runs (Python start-up, argon2 on each password) outlast the 60 s default on a loaded host.
  }, 240_000);

  it('bulwark CLI reads the same clouds.yaml: project list, audit list and verify', async () => {
    const pl = await d.bulwark(['project', 'list', '-f', 'json']);
    expect(pl.code).toBe(0);
    expect(JSON.parse(pl.stdout).map((p: { name: string }) => p.name)).toContain('admin');
    const al = await d.bulwark([
      'audit',
      'list',
      '--action',
      'identity:create_user',
      '--outcome',
      'denied',
      '-f',
      'json',
    ]);
    expect(al.code).toBe(0);
    expect(JSON.parse(al.stdout)[0]).toMatchObject({ user_name: 'carol', status: 403 });
    const v = await d.bulwark(['audit', 'verify', '-f', 'json']);
    expect(v.code).toBe(0);
    expect(JSON.parse(v.stdout)).toMatchObject({ ok: true });
  });

  it('survives SIGKILL: restart keeps every record and the bootstrap password', async () => {
    const before = await osJson('project', 'list');
    const password = readFileSync(join(d.dataDir, 'admin-password'), 'utf8');
    await d.kill('SIGKILL');
    d = await startDaemonProcess({ dataDir: d.dataDir, netns: d.netns });
    expect(d.output).not.toMatch(/bootstrap admin/);
    expect(readFileSync(join(d.dataDir, 'admin-password'), 'utf8')).toBe(password);
    // The restarted daemon listens on a new port: point the clouds.yaml user at it.
    const env = {
      OS_CLOUD: '',
      OS_CLIENT_CONFIG_FILE: '',
      OS_AUTH_URL: `${d.url}/identity/v3`,
      OS_USERNAME: 'admin',
      OS_PASSWORD: password.trim(),
      OS_PROJECT_NAME: 'admin',
      OS_USER_DOMAIN_NAME: 'Default',
      OS_PROJECT_DOMAIN_NAME: 'Default',
      OS_CACERT: join(d.dataDir, 'pki', 'ca.crt'),
    };
    const after = await d.openstack(['project', 'list', '-f', 'json'], env);
    expect(after.code).toBe(0);
    expect(JSON.parse(after.stdout)).toEqual(before);
    const v = await d.bulwark(['audit', 'verify', '--data-dir', d.dataDir, '-f', 'json']);
    expect(JSON.parse(v.stdout)).toMatchObject({ ok: true });
  });
});
