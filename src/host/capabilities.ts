import { existsSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import type { HostCapabilities } from '../compute/properties.js';

const OVMF = '/usr/share/OVMF';
const onPath = (bin: string) =>
  (process.env.PATH ?? '').split(':').some((d) => d && existsSync(`${d}/${bin}`));

/**
 * What this hypervisor host can offer guests, from the firmware and tools
 * installed. Secure Boot needs both the SMM firmware and the site's variable
 * store with enrolled keys (`--secure-boot-vars`).
 */
export function probeCapabilities(opts: { secureBootVars?: string } = {}): HostCapabilities {
  return {
    uefi: existsSync(`${OVMF}/OVMF_CODE_4M.fd`) && existsSync(`${OVMF}/OVMF_VARS_4M.fd`),
    secureBoot:
      existsSync(`${OVMF}/OVMF_CODE_4M.secboot.fd`) &&
      existsSync(opts.secureBootVars ?? `${OVMF}/OVMF_VARS_4M.ms.fd`),
    tpm: onPath('swtpm'),
    cpus: availableParallelism(),
  };
}
