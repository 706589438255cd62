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

  it('fails with Nova’s message when the host cannot do Secure Boot', () => {
    expect(() =>
      resolveGuestPlan(
        { hw_firmware_type: 'uefi', hw_machine_type: 'q35', os_secure_boot: 'required' },
        {},
        { ...host, secureBoot: false },
      ),
    ).toThrow('Secure Boot is not supported by host');
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
});
