import { rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { GuestSpec } from './hypervisor.js';
import { runTool } from './run.js';

/**
 * cloud-init's NoCloud seed (docs/clones.md): a small FAT disk labelled
 * `cidata` holding `meta-data`, attached read-only. The instance-id is the
 * server's own UUID, so every server, and every clone, has a fresh one; guests
 * make per-instance identity (machine-id, SSH host keys) again when it
 * changes. It holds no secrets: anything in it is readable by the guest's
 * every process.
 */
export const SEED_LABEL = 'CIDATA';
const SEED_KIB = 1024;

/** The seed's meta-data (YAML); the hostname is cut down to what a hostname may hold. */
export function nocloudMetaData(spec: Pick<GuestSpec, 'id' | 'name'>): string {
  const host =
    spec.name
      .toLowerCase()
      .replace(/[^a-z0-9-]+/g, '-')
      .replace(/^-+|-+$/g, '')
      .slice(0, 63) || 'server';
  return `instance-id: ${spec.id}\nlocal-hostname: ${host}\n`;
}

/** Builds the seed image at `path` (mkfs.vfat, then mcopy: nothing is mounted on the host). */
export async function buildSeed(
  path: string,
  spec: Pick<GuestSpec, 'id' | 'name'>,
  workDir: string,
): Promise<void> {
  const meta = join(workDir, 'meta-data');
  await writeFile(meta, nocloudMetaData(spec), { mode: 0o600 });
  const steps: [string, string[]][] = [
    ['mkfs.vfat', ['-C', '-n', SEED_LABEL, path, String(SEED_KIB)]],
    ['mcopy', ['-i', path, meta, '::/meta-data']],
  ];
  try {
    for (const [cmd, args] of steps) {
      const r = await runTool(cmd, args);
      if (r.code !== 0) throw new Error(`${cmd} failed building the cloud-init seed: ${r.stderr.trim()}`);
    }
  } finally {
    await rm(meta, { force: true });
  }
}
