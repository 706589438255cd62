import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BulwarkError } from '../../src/errors.js';
import type { GuestSpec } from '../../src/host/hypervisor.js';
import { createQemuDriver, type QemuDriver } from '../../src/host/qemu-driver.js';
import { swtpmProcesses } from '../../src/host/swtpm.js';
import { vmUserName } from '../../src/host/users.js';
import { guestImage, waitFor } from '../helpers/guests.js';
import {
  biosSpec,
  isRoot,
  makeBaseDir,
  pidsMentioning,
  procCmdline,
  SNAKEOIL_VARS,
  teardownDriver,
  userExists,
} from './host-helpers.js';

/**
 * Secure Boot policy in the driver, with real OVMF: never a silent insecure
 * boot (no variable store with enrolled keys: refused), and an image the
 * firmware refuses is ended and reported (SECURE_BOOT_DENIED), not left in
 * the firmware. Plus Secure Boot and a vTPM together.
 */
describe.runIf(isRoot)('Secure Boot policy (real OVMF)', () => {
  let base: string;
  let driver: QemuDriver;
  const ids = new Set<string>();
  const events: { id: string; event: string; data: unknown }[] = [];
  const key = randomBytes(32);
  const uefi = (image: 'uefi-signed.raw' | 'uefi-unsigned.raw', over: Partial<GuestSpec> = {}) =>
    biosSpec({
      machine: 'q35',
      firmware: { type: 'uefi', secureBoot: true },
      bootDisk: { imagePath: guestImage(image), imageFormat: 'raw', sizeGiB: 0 },
      ...over,
    });
  const log = (id: string) => driver.consoleLog(id);

  beforeAll(async () => {
    base = makeBaseDir('secboot');
    driver = await createQemuDriver({
      baseDir: base,
      accel: 'tcg',
      cgroupParent: 'bulwark-test',
      secureBootVars: SNAKEOIL_VARS,
    });
    driver.onEvent((id, event, data) => events.push({ id, event, data }));
    driver.setTpmKeySource(async () => Buffer.from(key));
  });

  afterAll(async () => {
    await teardownDriver(driver, base, ids);
  });

  it('refuses a Secure Boot guest when the enrolled-keys variable store is missing (fail closed)', async () => {
    const d = await createQemuDriver({
      baseDir: base,
      accel: 'tcg',
      cgroupParent: 'bulwark-test',
      secureBootVars: '/nonexistent/OVMF_VARS_4M.custom.fd',
    });
    const S = uefi('uefi-signed.raw');
    ids.add(S.id);
    const err = await d.define(S).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BulwarkError);
    expect((err as Error).message).toMatch(
      /Secure Boot is required but this host cannot enforce it: \/nonexistent\/OVMF_VARS_4M\.custom\.fd is missing/,
    );
    expect(existsSync(d.layout(S.id).dir)).toBe(false);
    expect(userExists(vmUserName(S.id))).toBe(false);
    // Plain OVMF without Secure Boot is not affected.
    const P = uefi('uefi-unsigned.raw', { firmware: { type: 'uefi', secureBoot: false } });
    ids.add(P.id);
    await d.define(P);
    await d.undefine(P.id);
    await d.close();
  });

  it('an image the firmware refuses is ended and reported as SECURE_BOOT_DENIED', async () => {
    const U = uefi('uefi-unsigned.raw', { name: 'sb-denied' });
    ids.add(U.id);
    await driver.define(U);
    await driver.start(U.id);
    await waitFor(
      'SECURE_BOOT_DENIED',
      async () => events.some((e) => e.id === U.id && e.event === 'SECURE_BOOT_DENIED'),
      60_000,
      250,
    );
    const ev = events.find((e) => e.id === U.id && e.event === 'SECURE_BOOT_DENIED');
    expect(JSON.stringify(ev?.data)).toMatch(/Access Denied/);
    const text = await log(U.id);
    expect(text).not.toContain('BULWARK-GUEST-READY');
    expect(text).not.toContain('Linux version');
    expect(await driver.state(U.id)).toBe('shutoff');
    expect(pidsMentioning(`${driver.layout(U.id).dir}/`)).toEqual([]);
    expect(await driver.cgroups.exists(`vm-${U.id}`)).toBe(false);
    await driver.undefine(U.id);
  });

  it('a signed image boots with Secure Boot enforced and a vTPM; it is not reported as denied', async () => {
    const S = uefi('uefi-signed.raw', { name: 'sb-tpm', tpm: { version: '2.0', model: 'tpm-crb' } });
    ids.add(S.id);
    await driver.define(S);
    await driver.start(S.id);
    await waitFor('firmware line', async () => (await log(S.id)).includes('BULWARK-FIRMWARE:'), 90_000, 250);
    const text = await log(S.id);
    expect(text).toContain('BULWARK-SECUREBOOT: enabled');
    expect(text).toContain('BULWARK-TPM: present');
    const argv = procCmdline((await driver.processInfo(S.id))!.pid);
    expect(argv[argv.indexOf('-machine') + 1]).toMatch(/^q35,.*smm=on/);
    expect(argv).toContain('driver=cfi.pflash01,property=secure,value=on');
    expect(argv.some((a) => a.includes('OVMF_CODE_4M.secboot.fd'))).toBe(true);
    expect((await swtpmProcesses(base)).get(S.id)).toHaveLength(1);
    expect(events.some((e) => e.id === S.id && e.event === 'SECURE_BOOT_DENIED')).toBe(false);
    await driver.undefine(S.id);
    expect((await swtpmProcesses(base)).has(S.id)).toBe(false);
  });
});
