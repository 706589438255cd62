import { join } from 'node:path';
import { badRequest } from '../errors.js';

/** Server ids are UUIDs; anything else never becomes a path, a user name or a cgroup. */
export const GUEST_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

export function checkGuestId(id: string): string {
  if (!GUEST_ID.test(id)) throw badRequest(`Bad server id ${JSON.stringify(id)}: expected a lowercase UUID.`);
  return id;
}

/**
 * Where one guest's files live.
 *
 * - `dir` (`<base>/<id>/`, 0700, owned by the guest's user) holds what QEMU
 *   itself opens by path: the disk overlay, the UEFI variable store, fw_cfg
 *   blobs, the QMP and console sockets, the console log and QEMU's pidfile.
 *   The guest's user can rename anything in it, so the daemon treats every
 *   file there as untrusted (no symlinks followed, owner checked).
 * - `hostDir` (`<base>/.host/<id>/`, 0700 root) holds what the daemon keeps
 *   from the guest: its record, QEMU's stderr, the suspended RAM image.
 */
export interface InstanceLayout {
  dir: string;
  overlay: string;
  vars: string;
  qmpSocket: string;
  consoleSocket: string;
  consoleLog: string;
  pidFile: string;
  migrateSocket: string;
  /** The file holding fw_cfg entry number `i` (entries sorted by name). */
  fwCfgFile: (i: number) => string;
  /** The cloud-init NoCloud seed disk (nocloud.ts), attached read-only. */
  seed: string;
  hostDir: string;
  record: string;
  stderrLog: string;
  savedState: string;
  staging: string;
}

export const HOST_DIR = '.host';

export function instanceLayout(baseDir: string, id: string): InstanceLayout {
  checkGuestId(id);
  const dir = join(baseDir, id);
  const hostDir = join(baseDir, HOST_DIR, id);
  return {
    dir,
    overlay: join(dir, 'disk.qcow2'),
    vars: join(dir, 'vars.fd'),
    qmpSocket: join(dir, 'qmp.sock'),
    consoleSocket: join(dir, 'console.sock'),
    consoleLog: join(dir, 'console.log'),
    pidFile: join(dir, 'qemu.pid'),
    migrateSocket: join(dir, 'migrate.sock'),
    fwCfgFile: (i) => join(dir, `fw_cfg-${i}`),
    seed: join(dir, 'seed.iso'),
    hostDir,
    record: join(hostDir, 'guest.json'),
    stderrLog: join(hostDir, 'qemu.log'),
    savedState: join(hostDir, 'suspend.state'),
    staging: join(hostDir, 'staging'),
  };
}
