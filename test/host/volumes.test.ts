import { randomBytes } from 'node:crypto';
import { lstatSync, readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createQemuDriver, type QemuDriver } from '../../src/host/qemu-driver.js';
import type { QmpClient } from '../../src/host/qmp.js';
import { runTool } from '../../src/host/run.js';
import { vmUserName } from '../../src/host/users.js';
import { uuid } from '../../src/util/ids.js';
import { guestImage, waitFor } from '../helpers/guests.js';
import { filesUnder } from '../helpers/leaks.js';
import {
  biosSpec,
  isRoot,
  join,
  MiB,
  makeBaseDir,
  procCmdline,
  runAs,
  teardownDriver,
} from './host-helpers.js';

/**
 * Encrypted volumes on a real guest: QEMU native LUKS, the key passed only
 * over QMP. The guest writes a known pattern to the volume; no file on the
 * host (nor QEMU's command line or environment) holds the pattern or the key.
 */
describe.runIf(isRoot)('encrypted volumes on a real guest', () => {
  let base: string;
  let driver: QemuDriver;
  const key = randomBytes(32);
  const volumeId = uuid();
  const tag = randomBytes(8).toString('hex');
  // The guest builds the marker at run time, so the script (a fw_cfg file) does not contain it.
  const marker = `bwvol-${tag}-`;
  const script = [
    `A=bwvol-; B=${tag}; M="$A$B-"`,
    'yes "$M" | head -c 1048576 > /tmp/p',
    'if [ -b /dev/vdb ] && head -c 1048576 /dev/vdb | cmp -s - /tmp/p; then echo BW-VOL-BOOT ok; exit 0; fi',
    'i=0; while [ ! -b /dev/vdb ]; do sleep 0.2; i=$((i+1)); [ $i -gt 1500 ] && exit 1; done',
    'dd if=/tmp/p of=/dev/vdb bs=65536 2>/dev/null; sync; echo BW-VOL-WRITTEN',
    'while [ -b /dev/vdb ]; do sleep 0.2; done; echo BW-VOL-GONE',
    'while [ ! -b /dev/vdb ]; do sleep 0.2; done',
    'if head -c 1048576 /dev/vdb | cmp -s - /tmp/p; then echo BW-VOL-READ ok; else echo BW-VOL-READ bad; fi',
  ].join('\n');
  const spec = biosSpec({ name: 'vol-guest', fwCfg: { 'opt/org.bulwark/run': script } });
  const keysHandedOut: number[] = [];

  const waitLog = (needle: string, timeoutMs = 120_000) =>
    waitFor(needle, async () => (await driver.consoleLog(spec.id)).includes(needle), timeoutMs, 250);
  const qmp = () =>
    (driver as unknown as { live: Map<string, { qmp: QmpClient }> }).live.get(spec.id)?.qmp as QmpClient;
  const secretObjects = async () => {
    const objs = (await qmp().execute('qom-list', { path: '/objects' })) as { name: string; type: string }[];
    return objs.filter((o) => o.type === 'child<secret>' || o.name.endsWith('-key'));
  };

  /** Files under the base dir, QEMU's cmdline and environ: none may hold the pattern or the key. */
  const scan = async () => {
    const needles: [string, Buffer][] = [
      ['pattern', Buffer.from(marker)],
      ['key', key],
      ['key (base64)', Buffer.from(key.toString('base64'))],
      ['key (hex)', Buffer.from(key.toString('hex'))],
    ];
    const info = await driver.processInfo(spec.id);
    const sources: [string, Buffer][] = filesUnder(base).map((f) => [f, readFileSync(f)]);
    if (info) {
      sources.push([`/proc/${info.pid}/cmdline`, readFileSync(`/proc/${info.pid}/cmdline`)]);
      sources.push([`/proc/${info.pid}/environ`, readFileSync(`/proc/${info.pid}/environ`)]);
    }
    expect(sources.length).toBeGreaterThan(0);
    for (const [where, data] of sources)
      for (const [what, needle] of needles) expect(data.includes(needle), `${what} in ${where}`).toBe(false);
    return sources.map(([w]) => w);
  };

  beforeAll(async () => {
    base = makeBaseDir('volumes');
    driver = await createQemuDriver({ baseDir: base, accel: 'tcg', cgroupParent: 'bulwark-test' });
    // The key manager's part: a fresh copy each time (the driver wipes what it is given).
    driver.setVolumeKeySource(async (id) => {
      if (id !== volumeId) throw new Error('unknown volume');
      keysHandedOut.push(Date.now());
      return Buffer.from(key);
    });
  });

  afterAll(async () => {
    await teardownDriver(driver, base, [spec.id]);
  });

  it('creates the volume as LUKS (aes-xts-plain64) qcow2, root-only, the key through a pipe', async () => {
    await driver.createVolume(volumeId, 64 * MiB, Buffer.from(key));
    const path = join(driver.volumesDir, `${volumeId}.qcow2`);
    const st = lstatSync(path);
    expect(st.uid).toBe(0);
    expect(st.mode & 0o777).toBe(0o600);
    expect(lstatSync(driver.volumesDir).mode & 0o777).toBe(0o700);
    const info = JSON.parse((await runTool('qemu-img', ['info', '--output=json', path])).stdout);
    expect(info.encrypted).toBe(true);
    expect(info['format-specific'].data.encrypt).toMatchObject({
      format: 'luks',
      'cipher-alg': 'aes-256',
      'cipher-mode': 'xts',
      'ivgen-alg': 'plain64',
    });
    // Without the key it does not open.
    const noKey = await runTool('qemu-io', ['-c', 'read 0 512', path]);
    expect(noKey.code).not.toBe(0);
    await scan();
  });

  it('attaches to the running guest over QMP; the guest writes the pattern; it is nowhere on the host in clear', async () => {
    await driver.define(spec);
    await driver.start(spec.id);
    await waitLog('BULWARK-GUEST-READY');
    expect(await driver.attachVolume(spec.id, volumeId)).toEqual({ device: '/dev/vdb' });
    await waitLog('BW-VOL-WRITTEN');
    expect(await secretObjects()).toHaveLength(1);
    // While attached: a link in the guest's own 0700 dir, the file the guest user's.
    const user = vmUserName(spec.id);
    const uid = Number((await runTool('id', ['-u', user])).stdout.trim());
    const path = join(driver.volumesDir, `${volumeId}.qcow2`);
    expect(lstatSync(path).uid).toBe(uid);
    expect(lstatSync(join(driver.layout(spec.id).dir, `vol-${volumeId}.qcow2`)).ino).toBe(
      lstatSync(path).ino,
    );
    // The guest's user cannot reach the volume store itself.
    expect(runAs(user, ['ls', driver.volumesDir]).status).not.toBe(0);
    const argv = procCmdline((await driver.processInfo(spec.id))!.pid).join(' ');
    expect(argv).not.toContain(volumeId);
    const scanned = await scan();
    expect(scanned).toContain(path);
  });

  it('detaches (secret object deleted, file root-only again) and reattaches: the guest reads the pattern back', async () => {
    await driver.detachVolume(spec.id, volumeId);
    await waitLog('BW-VOL-GONE');
    expect(await secretObjects()).toHaveLength(0);
    const path = join(driver.volumesDir, `${volumeId}.qcow2`);
    expect(lstatSync(path).uid).toBe(0);
    expect(() => lstatSync(join(driver.layout(spec.id).dir, `vol-${volumeId}.qcow2`))).toThrow();
    await driver.attachVolume(spec.id, volumeId);
    await waitLog('BW-VOL-READ');
    expect(await driver.consoleLog(spec.id)).toContain('BW-VOL-READ ok');
    await scan();
  });

  it('plugs attached volumes in before the guest runs when it starts again', async () => {
    const before = keysHandedOut.length;
    await driver.shutdown(spec.id, { timeoutMs: 5000 });
    await driver.start(spec.id);
    expect(keysHandedOut.length).toBe(before + 1);
    await waitLog('BW-VOL-BOOT ok');
    expect(await secretObjects()).toHaveLength(1);
    await scan();
  });

  it('refuses to start a guest whose volume key cannot be had (fail closed)', async () => {
    await driver.shutdown(spec.id, { timeoutMs: 5000 });
    driver.setVolumeKeySource(async () => {
      throw new Error('key manager unavailable');
    });
    await expect(driver.start(spec.id)).rejects.toThrow(/key manager unavailable/);
    expect(await driver.state(spec.id)).toBe('shutoff');
    expect(lstatSync(join(driver.volumesDir, `${volumeId}.qcow2`)).uid).toBe(0);
    await driver.detachVolume(spec.id, volumeId);
    await driver.deleteVolume(volumeId);
    expect(() => lstatSync(join(driver.volumesDir, `${volumeId}.qcow2`))).toThrow();
  });
});

/** Encrypted root disks: the overlay is LUKS, plugged over QMP before `cont`; boot, restart, suspend/resume. */
describe.runIf(isRoot)('encrypted root disk on a real guest', () => {
  let base: string;
  let driver: QemuDriver;
  const key = randomBytes(32);
  const tag = randomBytes(8).toString('hex');
  const marker = `bwroot-${tag}-`;
  const script = [
    `A=bwroot-; B=${tag}; M="$A$B-"`,
    'yes "$M" | head -c 1048576 > /tmp/p',
    'if dd if=/dev/vda bs=1048576 skip=512 count=1 2>/dev/null | cmp -s - /tmp/p; then echo BW-ROOT-FOUND; exit 0; fi',
    'dd if=/tmp/p of=/dev/vda bs=1048576 seek=512 count=1 2>/dev/null; sync; echo BW-ROOT-WRITTEN',
  ].join('\n');
  const spec = biosSpec({ name: 'enc-root', fwCfg: { 'opt/org.bulwark/run': script } });
  spec.bootDisk.encrypted = true;
  const count = async (needle: string) => (await driver.consoleLog(spec.id)).split(needle).length - 1;
  const waitCount = (needle: string, n: number) =>
    waitFor(`${needle} x${n}`, async () => (await count(needle)) >= n, 120_000, 250);

  beforeAll(async () => {
    base = makeBaseDir('encroot');
    driver = await createQemuDriver({ baseDir: base, accel: 'tcg', cgroupParent: 'bulwark-test' });
    driver.setDiskKeySource(async (id) => {
      if (id !== spec.id) throw new Error('unknown server');
      return Buffer.from(key);
    });
  });
  afterAll(async () => {
    await teardownDriver(driver, base, [spec.id]);
  });

  const scan = () => {
    for (const f of filesUnder(base)) {
      const data = readFileSync(f);
      expect(data.includes(Buffer.from(marker)), `pattern in ${f}`).toBe(false);
      expect(data.includes(key), `key in ${f}`).toBe(false);
      expect(data.includes(Buffer.from(key.toString('base64'))), `key (base64) in ${f}`).toBe(false);
    }
  };

  it('boots from a LUKS overlay added over QMP; what the guest writes is not on the host in clear', async () => {
    await driver.define(spec);
    const info = JSON.parse(
      (await runTool('qemu-img', ['info', '--output=json', driver.layout(spec.id).overlay])).stdout,
    );
    expect(info.encrypted).toBe(true);
    expect(info['format-specific'].data.encrypt.format).toBe('luks');
    await driver.start(spec.id);
    await waitCount('BW-ROOT-WRITTEN', 1);
    const argv = procCmdline((await driver.processInfo(spec.id))!.pid);
    expect(argv.join(' ')).not.toContain('disk.qcow2');
    const environ = readFileSync(`/proc/${(await driver.processInfo(spec.id))!.pid}/environ`);
    expect(environ.includes(Buffer.from(key.toString('base64')))).toBe(false);
    scan();
  });

  it('suspends and resumes (the disk is plugged before the deferred incoming state), and boots again after a stop', async () => {
    await driver.suspend(spec.id);
    expect(await driver.state(spec.id)).toBe('suspended');
    await driver.resume(spec.id);
    expect(await driver.state(spec.id)).toBe('running');
    await driver.shutdown(spec.id, { timeoutMs: 5000 });
    await driver.start(spec.id);
    await waitCount('BW-ROOT-FOUND', 1);
    scan();
  });

  it('a UEFI guest boots from its encrypted disk too (the boot order is refreshed before cont)', async () => {
    const uefi = biosSpec({
      name: 'enc-uefi',
      machine: 'q35',
      firmware: { type: 'uefi', secureBoot: false },
      bootDisk: {
        imagePath: guestImage('uefi-unsigned.raw'),
        imageFormat: 'raw',
        sizeGiB: 1,
        encrypted: true,
      },
    });
    driver.setDiskKeySource(async () => Buffer.from(key));
    try {
      await driver.define(uefi);
      await driver.start(uefi.id);
      await waitFor(
        'UEFI guest ready',
        async () => (await driver.consoleLog(uefi.id)).includes('BULWARK-GUEST-READY'),
        150_000,
        500,
      );
    } finally {
      await driver.undefine(uefi.id).catch(() => undefined);
    }
  });

  it('does not start without its key', async () => {
    await driver.shutdown(spec.id, { timeoutMs: 5000 });
    driver.setDiskKeySource(async () => {
      throw new Error('key manager unavailable');
    });
    await expect(driver.start(spec.id)).rejects.toThrow(/key manager unavailable/);
    expect(await driver.state(spec.id)).toBe('shutoff');
  });
});
