import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { REPO } from './daemon-process.js';

/** Paths of the test guest images built by guests/build.sh (scripts/test.sh runs it). */
export function guestImage(
  name: 'bios.raw' | 'bios.qcow2' | 'uefi-signed.raw' | 'uefi-unsigned.raw',
): string {
  const path = join(REPO, 'guests', 'out', name);
  if (!existsSync(path)) throw new Error(`${path} is missing: run bash guests/build.sh`);
  return path;
}

/** `openstack image create` arguments for a test guest image (raw or qcow2, as its file), with `--property` pairs. */
export function imageCreateArgs(
  name: string,
  file: Parameters<typeof guestImage>[0],
  properties: readonly string[] = [],
): string[] {
  return [
    ...['image', 'create', '--disk-format', file.endsWith('.qcow2') ? 'qcow2' : 'raw'],
    ...['--container-format', 'bare', '--file', guestImage(file)],
    ...properties.flatMap((p) => ['--property', p]),
    name,
  ];
}

/** Polls `probe` until it returns a value or the time runs out. */
export async function waitFor<T>(
  what: string,
  probe: () => Promise<T | undefined | false>,
  timeoutMs = 60_000,
  everyMs = 250,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const v = await probe();
      if (v !== undefined && v !== false) return v as T;
    } catch (err) {
      last = err;
    }
    await new Promise((r) => setTimeout(r, everyMs));
  }
  throw new Error(`timed out waiting for ${what}${last ? `: ${String(last)}` : ''}`);
}
