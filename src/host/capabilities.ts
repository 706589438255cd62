import { existsSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import type { HostCapabilities } from '../compute/properties.js';

const OVMF = '/usr/share/OVMF';
const onPath = (bin: string) =>
  (process.env.PATH ?? '').split(':').some((d) => d && existsSync(`${d}/${bin}`));

/** What this hypervisor host can offer guests, from the firmware and tools installed. */
export function probeCapabilities(): HostCapabilities {
  return {
    uefi: existsSync(`${OVMF}/OVMF_CODE_4M.fd`) && existsSync(`${OVMF}/OVMF_VARS_4M.fd`),
    secureBoot: existsSync(`${OVMF}/OVMF_CODE_4M.secboot.fd`),
    tpm: onPath('swtpm'),
    cpus: availableParallelism(),
  };
}
