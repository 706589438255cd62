import { createHash } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { chooseAccel, PROBE_BOOT_SECTOR, resetAccelCache, runAccelProbe } from '../../src/host/kvm-probe.js';
import { isRoot } from './host-helpers.js';

describe('choosing the accelerator', () => {
  const saved = process.env.BULWARK_ACCEL;
  afterEach(() => {
    if (saved === undefined) delete process.env.BULWARK_ACCEL;
    else process.env.BULWARK_ACCEL = saved;
    resetAccelCache();
  });

  it('the probe guest is the documented boot sector', () => {
    expect(PROBE_BOOT_SECTOR).toHaveLength(512);
    expect(PROBE_BOOT_SECTOR.subarray(510)).toEqual(Buffer.from([0x55, 0xaa]));
    expect(createHash('sha256').update(PROBE_BOOT_SECTOR).digest('hex')).toBe(
      '5fee4f57f0492d5108f08ae37f45ebfb2be77ffdae0ba0a8b10773f116953ff7',
    );
  });

  it('BULWARK_ACCEL overrides the probe, and a bad value is refused', async () => {
    process.env.BULWARK_ACCEL = 'tcg';
    expect(await chooseAccel()).toEqual({ accel: 'tcg', reason: 'BULWARK_ACCEL' });
    resetAccelCache();
    process.env.BULWARK_ACCEL = 'xen';
    await expect(chooseAccel()).rejects.toThrow(/kvm or tcg/);
  });

  it.runIf(isRoot)('the probe guest runs under TCG as nobody (real mode, v86, long mode, exit)', async () => {
    const r = await runAccelProbe('tcg', { uid: 65534, gid: 65534 });
    expect(r).toEqual({ ok: true, detail: 'a probe guest ran under tcg' });
  });

  it.runIf(isRoot)('KVM is chosen only when the probe guest really runs under it', async () => {
    delete process.env.BULWARK_ACCEL;
    const choice = await chooseAccel();
    expect(['kvm', 'tcg']).toContain(choice.accel);
    expect(choice.reason).not.toBe('');
    // Where /dev/kvm is there but broken (this project's CI machines), the probe must say so.
    const direct = await runAccelProbe('kvm', { timeoutMs: 10_000 });
    if (choice.accel === 'kvm') expect(direct.ok).toBe(true);
    if (!direct.ok) expect(direct.detail).toMatch(/probe guest/);
    console.log(`accelerator: ${choice.accel} (${choice.reason}); KVM as root: ${direct.detail}`);
  });
});
