/**
 * The real `openstack secret store|list|get|delete` (Debian's
 * python3-barbicanclient) against the real `bulwark serve`, with the file
 * KEK and with the KEK on a SoftHSM2 token; then a search of the data dir and
 * the daemon's own command line and environment for the payload bytes.
 */
import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type DaemonProcess,
  passwordCliEnv,
  startDaemonProcess,
  stopDaemon,
} from '../helpers/daemon-process.js';
import { filesUnder, leaks } from '../helpers/leaks.js';
import { SOFTHSM_MODULE, softhsmToken, type TestToken } from '../helpers/softhsm.js';

const mode = (p: string) => statSync(p).mode & 0o777;

describe.each(['file', 'pkcs11'] as const)('openstack secret commands, %s KEK', (kind) => {
  let d: DaemonProcess;
  let token: TestToken | undefined;
  const payload = `bw-payload-${randomBytes(12).toString('hex')}`;
  const secondPayload = `bw-second-${randomBytes(12).toString('hex')}`;
  let href = '';

  beforeAll(async () => {
    if (kind === 'pkcs11') {
      token = await softhsmToken();
      d = await startDaemonProcess({
        extraArgs: [
          '--kek',
          'pkcs11',
          '--pkcs11-module',
          SOFTHSM_MODULE,
          '--pkcs11-token-label',
          token.label,
          '--pkcs11-pin-file',
          token.pinFile,
        ],
      });
    } else {
      d = await startDaemonProcess();
    }
  });
  afterAll(async () => {
    await stopDaemon(d);
    token?.remove();
  });

  it('keeps the KEK where configured: a 0600 file in the data dir, or only on the token', () => {
    if (kind === 'file') expect(mode(join(d.dataDir, 'kek'))).toBe(0o600);
    else expect(existsSync(join(d.dataDir, 'kek'))).toBe(false);
  });

  it('openstack secret store / list / get / get --payload, verbatim', async () => {
    const stored = await d.osJson('secret', 'store', '--name', 'x', '--payload', payload);
    href = stored['Secret href'];
    expect(href).toMatch(new RegExp(`^${d.url}/key-manager/v1/secrets/[0-9a-f-]{36}$`));
    expect(stored.Name).toBe('x');

    const list = await d.osJson('secret', 'list');
    expect(list).toEqual(
      expect.arrayContaining([expect.objectContaining({ 'Secret href': href, Name: 'x' })]),
    );

    const got = await d.osJson('secret', 'get', href);
    expect(got).toMatchObject({ 'Secret href': href, Name: 'x', Status: 'ACTIVE', 'Secret type': 'opaque' });
    expect(JSON.stringify(got)).not.toContain(payload);

    const p = await d.osJson('secret', 'get', '--payload', href);
    expect(p.Payload).toBe(payload);
    // The plain table form as a user types it.
    expect(await d.os('secret', 'get', '--payload', href)).toContain(payload);
    expect((await d.os('secret', 'list')).split('\n').some((l) => l.includes(href))).toBe(true);
  });

  it('refuses another project with 404 and a reader with 403 (the payload never shows)', async () => {
    await d.os('project', 'create', 'kv-other');
    await d.os('user', 'create', '--password', 'Other-pass-123', '--project', 'kv-other', 'kv-eve');
    await d.os('role', 'add', '--project', 'kv-other', '--user', 'kv-eve', 'member');
    await d.os('user', 'create', '--password', 'Reader-pass-123', '--project', 'admin', 'kv-rita');
    await d.os('role', 'add', '--project', 'admin', '--user', 'kv-rita', 'reader');
    const as = (user: string, password: string, project: string) =>
      passwordCliEnv(d, user, password, project);
    const eve = as('kv-eve', 'Other-pass-123', 'kv-other');
    for (const args of [
      ['secret', 'get', href],
      ['secret', 'get', '--payload', href],
      ['secret', 'delete', href],
    ]) {
      const r = await d.openstack(args, eve);
      expect(r.code, args.join(' ')).not.toBe(0);
      expect(r.stdout + r.stderr).toMatch(/404|Not Found/);
      expect(r.stdout + r.stderr).not.toContain(payload);
    }
    const eveList = await d.openstack(['secret', 'list', '-f', 'json'], eve);
    expect(JSON.parse(eveList.stdout)).toEqual([]);
    const rita = as('kv-rita', 'Reader-pass-123', 'admin');
    expect((await d.openstack(['secret', 'get', href, '-f', 'json'], rita)).code).toBe(0);
    const rp = await d.openstack(['secret', 'get', '--payload', href], rita);
    expect(rp.code).not.toBe(0);
    expect(rp.stdout + rp.stderr).toMatch(/403|Forbidden/);
    expect(rp.stdout + rp.stderr).not.toContain(payload);
    const rs = await d.openstack(['secret', 'store', '--name', 'no', '--payload', 'no'], rita);
    expect(rs.code).not.toBe(0);
  });

  it('bulwark key-manager rotate-kek: secrets read back identically, old version retired', async () => {
    const second = await d.osJson('secret', 'store', '--name', 'second', '--payload', secondPayload);
    const r = await d.bulwark(['key-manager', 'rotate-kek', '-f', 'json']);
    expect(r.code, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out).toMatchObject({ current_version: 2, retired_versions: '1' });
    expect(out.rewrapped).toBeGreaterThanOrEqual(2);
    expect((await d.osJson('secret', 'get', '--payload', href)).Payload).toBe(payload);
    expect((await d.osJson('secret', 'get', '--payload', second['Secret href'])).Payload).toBe(secondPayload);
    if (kind === 'file')
      expect(readFileSync(join(d.dataDir, 'kek'), 'utf8')).toMatch(/^bulwark-kek v2 \S+\n$/);
    const audit = await d.bulwark(['audit', 'list', '--action', 'key-manager:rotate_kek', '-f', 'json']);
    expect(JSON.parse(audit.stdout).length).toBeGreaterThanOrEqual(1);
    const reads = await d.bulwark(['audit', 'list', '--action', 'secret:decrypt', '-f', 'json']);
    expect(JSON.parse(reads.stdout).length).toBeGreaterThanOrEqual(3);
  });

  it('leaves no payload bytes in the data dir, nor in the daemon command line or environment', async () => {
    // Checkpoint nothing: the WAL is searched as it is, alongside the database.
    const pid = d.child.pid as number;
    for (const file of [`/proc/${pid}/cmdline`, `/proc/${pid}/environ`]) {
      const b = readFileSync(file);
      expect(leaks(b, Buffer.from(payload)), file).toBe(false);
      expect(leaks(b, Buffer.from(secondPayload)), file).toBe(false);
    }
    const files = filesUnder(d.dataDir);
    expect(files.some((f) => f.endsWith('bulwark.db'))).toBe(true);
    for (const f of files) {
      const b = readFileSync(f);
      expect(leaks(b, Buffer.from(payload)), f).toBe(false);
      expect(leaks(b, Buffer.from(secondPayload)), f).toBe(false);
    }
    // The only key file is the KEK (file provider); the token's own store is outside the data dir.
    expect(files.filter((f) => /kek/.test(f))).toEqual(kind === 'file' ? [join(d.dataDir, 'kek')] : []);
  });

  it('openstack secret delete', async () => {
    await d.os('secret', 'delete', href);
    const list = await d.osJson('secret', 'list');
    expect(list.map((s: Record<string, string>) => s['Secret href'])).not.toContain(href);
    const r = await d.openstack(['secret', 'get', '--payload', href]);
    expect(r.code).not.toBe(0);
  });
});

describe('bulwark serve refuses an unsafe KEK', () => {
  it('does not start when the KEK file is not 0600, nor with --kek pkcs11 half configured', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'bulwark-e2e-kek-'));
    try {
      writeFileSync(join(dataDir, 'kek'), `bulwark-kek v1 ${randomBytes(32).toString('base64')}\n`, {
        mode: 0o644,
      });
      chmodSync(join(dataDir, 'kek'), 0o644);
      await expect(startDaemonProcess({ dataDir })).rejects.toThrow(/not 0600; refusing to start/);
      await expect(startDaemonProcess({ dataDir, extraArgs: ['--kek', 'pkcs11'] })).rejects.toThrow(
        /--kek pkcs11 needs --pkcs11-module/,
      );
      await expect(startDaemonProcess({ dataDir, extraArgs: ['--kek', 'plaintext'] })).rejects.toThrow(
        /not a KEK provider/,
      );
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});
