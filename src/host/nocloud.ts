import { rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { GuestSpec } from './hypervisor.js';
import { runTool } from './run.js';

/**
 * cloud-init's NoCloud seed (docs/clones.md): an ISO 9660 image labelled
 * `cidata` holding `meta-data`, attached as a read-only CD-ROM (so it takes no
 * /dev/vdX name from the volumes). The instance-id is the
 * server's own UUID, so every server, and every clone, has a fresh one; guests
 * make per-instance identity (machine-id, SSH host keys) again when it
 * changes. It holds no secrets: anything in it is readable by the guest's
 * every process.
 */
export const SEED_LABEL = 'cidata';

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

/** Builds the seed image at `path` with genisoimage (Rock Ridge keeps the name `meta-data`; nothing is mounted). */
export async function buildSeed(
  path: string,
  spec: Pick<GuestSpec, 'id' | 'name'>,
  workDir: string,
): Promise<void> {
  const meta = join(workDir, 'meta-data');
  await writeFile(meta, nocloudMetaData(spec), { mode: 0o600 });
  try {
    const r = await runTool('genisoimage', [
      '-quiet',
      '-output',
      path,
      '-volid',
      SEED_LABEL,
      '-rock',
      '-joliet',
      meta,
    ]);
    if (r.code !== 0) throw new Error(`genisoimage failed building the cloud-init seed: ${r.stderr.trim()}`);
  } finally {
    await rm(meta, { force: true });
  }
}
