import { existsSync, statSync } from 'node:fs';
import { chmod } from 'node:fs/promises';
import type { GuestSpec } from './hypervisor.js';
import { runTool } from './run.js';
import type { VmUser } from './users.js';

/**
 * The guest's taps, made persistent and owned by its user so its QEMU opens
 * them without privileges. They stay attached to nothing until the network
 * dataplane wires them (src/host/net), so nothing passes before it does.
 */
export async function ensureTaps(nics: NonNullable<GuestSpec['nics']>, user: VmUser): Promise<void> {
  if (!nics.length) return;
  // Debian's default 0666: opening /dev/net/tun grants nothing by itself; attaching needs to own the tap.
  if ((statSync('/dev/net/tun').mode & 0o006) !== 0o006) await chmod('/dev/net/tun', 0o666);
  for (const nic of nics) {
    if (!existsSync(`/sys/class/net/${nic.tap}`)) {
      const r = await runTool('ip', [
        'tuntap',
        'add',
        'dev',
        nic.tap,
        'mode',
        'tap',
        'user',
        String(user.uid),
        'group',
        String(user.gid),
      ]);
      if (r.code !== 0) throw new Error(`cannot create tap ${nic.tap}: ${r.stderr.trim()}`);
    }
    await runTool('ip', ['link', 'set', 'dev', nic.tap, 'up']);
  }
}

export async function deleteTaps(nics: NonNullable<GuestSpec['nics']>): Promise<void> {
  for (const nic of nics)
    if (existsSync(`/sys/class/net/${nic.tap}`)) await runTool('ip', ['link', 'del', 'dev', nic.tap]);
}
