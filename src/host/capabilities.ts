import { existsSync, readFileSync, statfsSync } from 'node:fs';
import { availableParallelism, totalmem } from 'node:os';
import { cpuinfoFlags } from '../compute/cpu-features.js';
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
    cpuFlags: cpuinfoFlags(readFileSync('/proc/cpuinfo', 'utf8')),
  };
}

/** What this machine offers the scheduler: its CPUs, RAM, and the size of the file system holding `dir`. */
export function probeCapacity(dir: string): { vcpus: number; ramMiB: number; diskGiB: number } {
  const fs = statfsSync(dir);
  return {
    vcpus: availableParallelism(),
    ramMiB: Math.floor(totalmem() / 2 ** 20),
    diskGiB: Math.floor((fs.blocks * fs.bsize) / 2 ** 30),
  };
}
