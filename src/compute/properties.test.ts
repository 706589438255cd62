import { describe, expect, it } from 'vitest';
import { resolveGuestPlan, validateExtraSpecs, validateImageProperties } from './properties.js';

const host = { uefi: true, secureBoot: true, tpm: true, cpus: 4 };

describe('image properties and flavor extra specs', () => {
  it('accepts the spec’s Secure Boot image properties', () => {
    expect(() =>
      validateImageProperties({
        hw_firmware_type: 'uefi',
        hw_machine_type: 'q35',
        os_secure_boot: 'required',
      }),
    ).not.toThrow();
  });

  it('refuses unknown values with the list of good ones', () => {
    expect(() => validateImageProperties({ hw_firmware_type: 'coreboot' })).toThrow(/use one of: bios, uefi/);
    expect(() => validateExtraSpecs({ 'hw:tpm_version': '3.0' })).toThrow(/1\.2, 2\.0/);
    expect(() => validateExtraSpecs({ 'quota:disk_read_bytes_sec': '-5' })).toThrow(/non-negative integer/);
    expect(() => validateExtraSpecs({ 'hw:made_up': 'x' })).toThrow(/Unknown flavor extra spec/);
  });

  it('boots BIOS by default and UEFI with Secure Boot when the image requires it', () => {
    expect(resolveGuestPlan({}, {}, host)).toMatchObject({
      machine: 'pc',
      firmware: { type: 'bios' },
      tpm: null,
    });
    expect(
      resolveGuestPlan(
        { hw_firmware_type: 'uefi', hw_machine_type: 'q35', os_secure_boot: 'required' },
        {},
        host,
      ),
    ).toMatchObject({
      machine: 'q35',
      firmware: { type: 'uefi', secureBoot: true },
    });
  });

  it('refuses Secure Boot on BIOS instead of silently booting without it', () => {
    expect(() => resolveGuestPlan({ os_secure_boot: 'required' }, {}, host)).toThrow(/not UEFI/);
    expect(() =>
      resolveGuestPlan({ hw_firmware_type: 'bios', os_secure_boot: 'required' }, {}, host),
    ).toThrow(/not UEFI/);
  });

  it('refuses when flavor and image disagree', () => {
    expect(() =>
      resolveGuestPlan({ os_secure_boot: 'disabled' }, { 'os:secure_boot': 'required' }, host),
    ).toThrow(/conflicts/);
  });

  it('required on a host without Secure Boot still plans Secure Boot (the server then fails, never boots without)', () => {
    const plan = resolveGuestPlan(
      { hw_firmware_type: 'uefi', hw_machine_type: 'q35', os_secure_boot: 'required' },
      {},
      { ...host, secureBoot: false },
    );
    expect(plan.firmware).toEqual({ type: 'uefi', secureBoot: true });
  });

  it('Secure Boot policy: required needs UEFI on q35; optional follows the host; disabled is plain OVMF', () => {
    const uefi = { hw_firmware_type: 'uefi' };
    expect(() =>
      resolveGuestPlan({ ...uefi, hw_machine_type: 'pc', os_secure_boot: 'required' }, {}, host),
    ).toThrow(/q35/);
    expect(resolveGuestPlan({ ...uefi, os_secure_boot: 'required' }, {}, host).machine).toBe('q35');
    expect(resolveGuestPlan({ ...uefi, os_secure_boot: 'optional' }, {}, host).firmware).toEqual({
      type: 'uefi',
      secureBoot: true,
    });
    expect(
      resolveGuestPlan({ ...uefi, os_secure_boot: 'optional' }, {}, { ...host, secureBoot: false }).firmware,
    ).toEqual({ type: 'uefi', secureBoot: false });
    expect(
      resolveGuestPlan({ ...uefi, hw_machine_type: 'pc', os_secure_boot: 'optional' }, {}, host).firmware,
    ).toEqual({ type: 'uefi', secureBoot: false });
    expect(resolveGuestPlan({ ...uefi, os_secure_boot: 'disabled' }, {}, host).firmware).toEqual({
      type: 'uefi',
      secureBoot: false,
    });
    expect(resolveGuestPlan(uefi, {}, host).firmware).toEqual({ type: 'uefi', secureBoot: false });
  });

  it('vTPM: flavor and image must agree; unknown values and a TPM without a host swtpm are refused', () => {
    expect(() =>
      resolveGuestPlan(
        { hw_tpm_model: 'tpm-tis', hw_tpm_version: '2.0' },
        { 'hw:tpm_model': 'tpm-crb' },
        host,
      ),
    ).toThrow(/conflicts/);
    expect(() => resolveGuestPlan({ hw_tpm_version: '1.2' }, { 'hw:tpm_version': '2.0' }, host)).toThrow(
      /conflicts/,
    );
    expect(
      resolveGuestPlan(
        { hw_tpm_model: 'tpm-crb', hw_tpm_version: '2.0' },
        { 'hw:tpm_model': 'tpm-crb' },
        host,
      ).tpm,
    ).toEqual({ version: '2.0', model: 'tpm-crb' });
    expect(resolveGuestPlan({ hw_tpm_version: '1.2' }, {}, host).tpm).toEqual({
      version: '1.2',
      model: 'tpm-tis',
    });
    expect(() => resolveGuestPlan({ hw_tpm_model: 'tpm-crb' }, {}, host)).toThrow(/needs hw:tpm_version/);
    expect(() => resolveGuestPlan({ hw_tpm_version: '2.0' }, {}, { ...host, tpm: false })).toThrow(/swtpm/);
    expect(() => validateImageProperties({ hw_tpm_model: 'tpm-foo' })).toThrow(/tpm-tis, tpm-crb/);
    expect(() => validateImageProperties({ hw_tpm_version: '3.0' })).toThrow(/1\.2, 2\.0/);
    expect(() => validateExtraSpecs({ 'hw:tpm_model': 'tpm-spapr' })).toThrow(/tpm-tis, tpm-crb/);
  });

  it('maps vTPM, pinning and I/O limits', () => {
    const plan = resolveGuestPlan(
      {},
      {
        'hw:tpm_model': 'tpm-crb',
        'hw:tpm_version': '2.0',
        'hw:cpu_policy': 'dedicated',
        'hw:cpu_cores_pinned': '1,2',
        'quota:disk_read_bytes_sec': '1048576',
        'quota:disk_write_iops_sec': '100',
      },
      host,
    );
    expect(plan.tpm).toEqual({ version: '2.0', model: 'tpm-crb' });
    expect(plan.cpu.pinning).toEqual([1, 2]);
    expect(plan.io).toEqual({ readBytesSec: 1048576, writeIopsSec: 100 });
  });

  it('refuses tpm-crb with TPM 1.2 and pinning to CPUs the host lacks', () => {
    expect(() => resolveGuestPlan({}, { 'hw:tpm_model': 'tpm-crb', 'hw:tpm_version': '1.2' }, host)).toThrow(
      /tpm-crb needs/,
    );
    expect(() =>
      resolveGuestPlan({}, { 'hw:cpu_policy': 'dedicated', 'hw:cpu_cores_pinned': '7' }, host),
    ).toThrow(/does not exist/);
  });

  it('CPU features: allow-listed, the host must have what is turned on, QEMU names; memory_max_mb floor', () => {
    const flagged = { ...host, cpuFlags: ['aes', 'sse4_2'] };
    expect(resolveGuestPlan({}, { 'hw:cpu_features': '+aes,+sse4_2,-avx' }, flagged).cpu.features).toEqual([
      '+aes',
      '-avx',
      '+sse4.2',
    ]);
    expect(() => resolveGuestPlan({}, { 'hw:cpu_features': '+avx2' }, flagged)).toThrow(
      /host's CPU does not have/,
    );
    expect(() => validateExtraSpecs({ 'hw:cpu_features': '+vmx' })).toThrow(/vmx is refused: nested/);
    expect(() => validateExtraSpecs({ 'hw:cpu_features': '-md_clear' })).toThrow(/weakens isolation/);
    expect(() => validateExtraSpecs({ 'hw:cpu_features': 'aes' })).toThrow(/\+feature or -feature/);
    expect(() => validateExtraSpecs({ 'hw:cpu_features': '+pdpe1gb' })).toThrow(/allow-list/);
    expect(resolveGuestPlan({}, { 'quota:memory_max_mb': '516' }, host, 256).memoryMaxMiB).toBe(516);
    expect(() => resolveGuestPlan({}, { 'quota:memory_max_mb': '515' }, host, 256)).toThrow(/at least 516/);
  });
});
