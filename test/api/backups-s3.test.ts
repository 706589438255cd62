import { randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
// s3rver: an S3-compatible server in Node (devDependency). No real S3 server is installable here.
import S3rver from 's3rver';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateRecoveryKey } from '../../src/backups/crypto.js';
import { S3Target } from '../../src/backups/s3-target.js';
import { startTestApi, type TestApi } from '../helpers/api.js';
import { dialects } from '../helpers/store.js';

/**
 * The S3-compatible backup target (docs/backups.md) against s3rver on
 * loopback (it checks AWS v4 signatures): the repository is made there,
 * a volume is backed up, verified and restored through it, a tampered
 * object fails verify, and wrong credentials fail clearly and make nothing.
 */
describe.each(dialects())('backups to an S3-compatible store (s3rver) on %s', (dialect) => {
  let api: TestApi;
  let admin: string;
  let server: S3rver;
  let endpoint = '';
  const dir = mkdtempSync(join(tmpdir(), 'bulwark-s3rver-'));
  const bucket = `bw-${randomBytes(4).toString('hex')}`;
  const rk = generateRecoveryKey();
  const pattern = Buffer.from(`bw-s3-${randomBytes(6).toString('hex')}-`.repeat(2000));
  const B = '/bulwark/v1';
  const V = '/volume/v3';
  const saved = { ...process.env };
  const useKeys = (id: string, secret: string) => {
    process.env.BULWARK_S3_ACCESS_KEY_ID = id;
    process.env.BULWARK_S3_SECRET_ACCESS_KEY = secret;
  };
  const settle = async () => {
    await api.platform.backups.settled();
    await api.platform.volume.volumes.settled();
  };
  const stored = () =>
    readdirSync(dir, { recursive: true, withFileTypes: true })
      .filter((e) => e.isFile())
      .map((e) => join(e.parentPath, e.name));

  beforeAll(async () => {
    server = new S3rver({
      address: '127.0.0.1',
      port: 0,
      silent: true,
      directory: dir,
      configureBuckets: [{ name: bucket }],
    });
    const addr = await server.run();
    endpoint = `http://127.0.0.1:${addr.port}`;
    api = await startTestApi(dialect);
    admin = await api.login('admin', api.adminPassword, 'admin');
  });
  afterAll(async () => {
    await api?.platform.backups.settled();
    await api?.close();
    await server?.close();
    process.env = saved;
    rmSync(dir, { recursive: true, force: true });
  });

  it('wrong credentials: the repository is refused with the S3 error and what to fix; nothing is made', async () => {
    // s3rver checks the access key id (it does not recompute SigV4 signatures): a wrong one is refused.
    useKeys('not-a-key', 'not-the-secret');
    const r = await api.call('POST', `${B}/backup-repository`, admin, {
      repository: { recipient_public_key: rk.publicKey, s3: { endpoint, bucket, prefix: 'repo/' } },
    });
    expect(r.status).toBe(503);
    expect(JSON.stringify(r.json)).toMatch(/refused head.*HTTP 403.*check the access key/);
    expect(JSON.stringify(r.json)).not.toMatch(/not-the-secret/);
    expect((await api.call('GET', `${B}/backup-repository`, admin)).status).toBe(409);
    const direct = new S3Target(
      { endpoint, bucket, prefix: '', region: 'us-east-1' },
      { accessKeyId: 'nobody', secretAccessKey: 'x' },
    );
    await expect(direct.put('config', Buffer.from('x'))).rejects.toThrow(/refused put.*InvalidAccessKeyId/);
    const bad = await api.call('POST', `${B}/backup-repository`, admin, {
      repository: { recipient_public_key: rk.publicKey, s3: { endpoint: 'file:///etc', bucket } },
    });
    expect(bad.status).toBe(400);
  });

  it('backup, verify and restore through the S3 store; objects there are sealed', async () => {
    useKeys('S3RVER', 'S3RVER');
    const made = await api.call('POST', `${B}/backup-repository`, admin, {
      repository: { recipient_public_key: rk.publicKey, s3: { endpoint, bucket, prefix: 'repo/' } },
    });
    expect(made.status, JSON.stringify(made.json)).toBe(201);
    expect(made.json.repository.target).toBe(`s3:${endpoint}|${bucket}|repo/|us-east-1`);
    const v = await api.call('POST', `${V}/volumes`, admin, { volume: { size: 1, name: 's3-data' } });
    const volumeId = v.json.volume.id as string;
    await settle();
    const w = await api.driver.openVolumeData(volumeId, null, 'write');
    await w.write(3 * 1024 * 1024, pattern);
    await w.close();
    const b = await api.call('POST', `${V}/backups`, admin, { backup: { volume_id: volumeId, name: 's3b' } });
    expect(b.status).toBe(202);
    const backupId = b.json.backup.id as string;
    await settle();
    expect((await api.call('GET', `${V}/backups/${backupId}`, admin)).json.backup.status).toBe('available');
    expect(stored().some((f) => f.includes('chunks'))).toBe(true);
    for (const f of stored()) expect(readFileSync(f).includes(pattern.subarray(0, 40)), f).toBe(false);
    const show = await api.call('GET', `${B}/backup-repository`, admin);
    expect(show.json.repository.stored_bytes).toBeGreaterThan(pattern.length / 100);

    const ver = await api.call('POST', `${B}/backups/${backupId}/verify`, admin, {
      recovery_key: rk.privateKeyPem,
    });
    expect(ver.status).toBe(200);
    expect(ver.json.verify).toMatchObject({ ok: true, decrypted: true });
    const r = await api.call('POST', `${B}/backups/${backupId}/restore`, admin, {
      recovery_key: rk.privateKeyPem,
      name: 's3-back',
    });
    expect(r.status).toBe(202);
    await settle();
    const h = await api.driver.openVolumeData(r.json.restore.volume_id, null, 'read');
    expect((await h.read(3 * 1024 * 1024, pattern.length)).equals(pattern)).toBe(true);
    await h.close();

    // A chunk altered in the store: verify fails loudly.
    const seal = JSON.parse(
      Buffer.from(
        await new S3Target(
          { endpoint, bucket, prefix: 'repo/', region: 'us-east-1' },
          { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' },
        ).get(`backups/${backupId}.seal`),
      ).toString(),
    ) as { chunks: Record<string, unknown> };
    const target = new S3Target(
      { endpoint, bucket, prefix: 'repo/', region: 'us-east-1' },
      { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' },
    );
    const ids = Object.keys(seal.chunks);
    const sizes = await Promise.all(
      ids.map(async (id) => (await target.get(`chunks/${id.slice(0, 2)}/${id}`)).length),
    );
    const victim = ids[sizes.indexOf(Math.max(...sizes))]!;
    const blob = await target.get(`chunks/${victim.slice(0, 2)}/${victim}`);
    blob[Math.floor(blob.length / 2)]! ^= 1;
    await target.put(`chunks/${victim.slice(0, 2)}/${victim}`, blob);
    const bad = await api.call('POST', `${B}/backups/${backupId}/verify`, admin, {});
    expect(bad.status).toBe(409);
    expect(JSON.stringify(bad.json)).toMatch(/integrity check failed.*altered/);
    expect(statSync(dir).isDirectory()).toBe(true);
  });
});
