import { statSync } from 'node:fs';
import { chmod } from 'node:fs/promises';
import type { GuestSpec } from './hypervisor.js';
import { createTap, deleteLink, linkExists, plugPort } from './net/links.js';
import type { VmUser } from './users.js';

/**
 * The guest's taps, made persistent and owned by its user so its QEMU opens
 * them without privileges, then routed to the port's fixed IPs. The nftables
 * ruleset names the tap before it exists (the port is synced when it is
 * created), and drops any `tap*` device it does not know, so a tap never
 * passes a packet unfiltered.
 */
export async function ensureTaps(nics: NonNullable<GuestSpec['nics']>, user: VmUser): Promise<void> {
  if (!nics.length) return;
  // Debian's default 0666: opening /dev/net/tun grants nothing by itself; attaching needs to own the tap.
  if ((statSync('/dev/net/tun').mode & 0o006) !== 0o006) await chmod('/dev/net/tun', 0o666);
  for (const nic of nics) {
    if (!(await linkExists(nic.tap))) await createTap(nic.tap, { uid: user.uid, gid: user.gid });
    await plugPort({ device: nic.tap, ips: nic.ips, gateways: nic.gateways ?? [] });
  }
}

export async function deleteTaps(nics: NonNullable<GuestSpec['nics']>): Promise<void> {
  for (const nic of nics) await deleteLink(nic.tap);
}
