import { randomBytes } from 'node:crypto';
import { existsSync, lstatSync, readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createQemuDriver, type QemuDriver } from '../../src/host/qemu-driver.js';
import { runTool } from '../../src/host/run.js';
import { listFileSnapshots } from '../../src/host/snapshots.js';
import { decryptState } from '../../src/host/state-cipher.js';
import { uuid } from '../../src/util/ids.js';
import { waitFor } from '../helpers/guests.js';
import { biosSpec, isRoot, join, MiB, makeBaseDir, teardownDriver } from './host-helpers.js';

/**
 * Snapshots on real qcow2 files and a real guest (TCG): internal snapshots of
 * an encrypted volume (qemu-img, the key on a pipe; live over QMP while
 * attached) and of a guest's encrypted root overlay (disk only over QMP,
 * memory streamed into an AES-256-GCM file under the disk's key, offline with
 * qemu-img). Disk snapshots stay in the LUKS file, unreadable without the key.
 */
describe.runIf(isRoot)('snapshots on real qcow2 files and a real guest', { timeout: 180_000 }, () => {
  let base: string;
  let driver: QemuDriver;
  const volumeKey = randomBytes(32);
  const diskKey = randomBytes(32);
  const volumeId = uuid();
  let wrongKey = false;
  const spec = biosSpec({ name: 'snap-guest' });
  spec.bootDisk.encrypted = true;
  const tag = () => `bw-${uuid()}`;
  const volumePath = () => join(driver.volumesDir, `${volumeId}.qcow2`);
  const overlay = () => driver.layout(spec.id).overlay;
  const tags = async (path: string) => (await listFileSnapshots(path)).map((s) => s.tag);
  const waitReady = () =>
    waitFor(
      'guest ready',
      async () => (await driver.consoleLog(spec.id)).includes('BULWARK-GUEST-READY'),
      120_000,
      250,
    );
  const stillEncrypted = async (path: string) => {
    const info = JSON.parse((await runTool('qemu-img', ['info', '-U', '--output=json', path])).stdout);
    expect(info.encrypted).toBe(true);
    expect(info['format-specific'].data.encrypt.format).toBe('luks');
    // Without the key it does not open (nor do its snapshots).
    expect((await runTool('qemu-io', ['-r', '-U', '-c', 'read 0 512', path])).code).not.toBe(0);
  };

  beforeAll(async () => {
    base = makeBaseDir('snapshots');
    driver = await createQemuDriver({ baseDir: base, accel: 'tcg', cgroupParent: 'bulwark-test' });
    driver.setVolumeKeySource(async (id) => {
      if (id !== volumeId) throw new Error('unknown volume');
      return wrongKey ? randomBytes(32) : Buffer.from(volumeKey);
    });
    driver.setDiskKeySource(async (id) => {
      if (id !== spec.id) throw new Error('unknown server');
      return Buffer.from(diskKey);
    });
  });
  afterAll(async () => {
    await teardownDriver(driver, base, [spec.id]);
  });

  it('snapshots a detached encrypted volume with qemu-img; a wrong key makes none', async () => {
    await driver.createVolume(volumeId, 64 * MiB, Buffer.from(volumeKey));
    const t = tag();
    await driver.snapshotVolume(volumeId, t, null);
    expect(await tags(volumePath())).toEqual([t]);
    await stillEncrypted(volumePath());
    wrongKey = true;
    await expect(driver.snapshotVolume(volumeId, tag(), null)).rejects.toThrow(/Taking the snapshot failed/);
    wrongKey = false;
    expect(await tags(volumePath())).toEqual([t]);
    await driver.deleteVolumeSnapshot(volumeId, t, null);
    expect(await tags(volumePath())).toEqual([]);
    // A tag that is not ours never reaches a command line.
    await expect(driver.snapshotVolume(volumeId, 'x; rm -rf /', null)).rejects.toThrow(/Bad snapshot tag/);
  });

  it('snapshots a running guest’s encrypted disk over QMP, with and without memory', async () => {
    await driver.define(spec);
    await driver.start(spec.id);
    await waitReady();
    const disk = tag();
    await driver.snapshotServer(spec.id, disk, { memory: false });
    const mem = tag();
    await driver.snapshotServer(spec.id, mem, { memory: true });
    expect(await tags(overlay())).toEqual([disk, mem]);
    await stillEncrypted(overlay());
    // RAM and device state: a root-only file, AES-256-GCM under the disk's key; no guest memory in clear.
    const statePath = join(driver.layout(spec.id).hostDir, `${mem}.state`);
    const st = lstatSync(statePath);
    expect([st.uid, st.mode & 0o777]).toEqual([0, 0o600]);
    const file = readFileSync(statePath);
    expect(file.length).toBeGreaterThan(1 * MiB);
    expect(file.includes(Buffer.from('Linux version'))).toBe(false);
    const plain = decryptState(file, diskKey, mem);
    expect(plain.subarray(0, 4).toString('latin1')).toBe('QEVM'); // QEMU's migration stream
    expect(plain.includes(Buffer.from('Linux version'))).toBe(true);
    expect(() => decryptState(file, randomBytes(32), mem)).toThrow(/does not open/);
    // The guest runs on afterwards.
    expect(await driver.state(spec.id)).toBe('running');
    await driver.deleteServerSnapshot(spec.id, disk);
    await driver.deleteServerSnapshot(spec.id, mem);
    expect(await tags(overlay())).toEqual([]);
    expect(existsSync(statePath)).toBe(false);
  });

  it('an attached volume is snapshotted live; memory snapshots are refused while volumes are attached', async () => {
    await driver.attachVolume(spec.id, volumeId);
    const t = tag();
    await driver.snapshotVolume(volumeId, t, spec.id);
    expect(await tags(volumePath())).toEqual([t]);
    await expect(driver.snapshotServer(spec.id, tag(), { memory: true })).rejects.toThrow(/volumes attached/);
    await driver.deleteVolumeSnapshot(volumeId, t, spec.id);
    expect(await tags(volumePath())).toEqual([]);
    await driver.detachVolume(spec.id, volumeId);
  });

  it('a stopped guest’s disk is snapshotted with qemu-img; memory needs it running', async () => {
    await driver.shutdown(spec.id, { timeoutMs: 2000 });
    await expect(driver.snapshotServer(spec.id, tag(), { memory: true })).rejects.toThrow(/not running/);
    const t = tag();
    await driver.snapshotServer(spec.id, t, { memory: false });
    expect(await tags(overlay())).toEqual([t]);
    await stillEncrypted(overlay());
    // It still boots from the overlay after the snapshot.
    await driver.start(spec.id);
    await waitFor(
      'guest ready again',
      async () => (await driver.consoleLog(spec.id)).split('BULWARK-GUEST-READY').length > 2,
      120_000,
      250,
    );
    await driver.deleteServerSnapshot(spec.id, t);
    expect(await tags(overlay())).toEqual([]);
  });
});
