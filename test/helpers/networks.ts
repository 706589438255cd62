import type { DaemonProcess } from './daemon-process.js';

/**
 * A tenant network with one IPv4 subnet, made with the real openstack CLI, for
 * a suite's guests to boot on (`--network NAME`). The subnet is NAME without
 * `-net`, plus `-subnet`; the gateway is the range's first address.
 */
export async function privateNetwork(
  d: Pick<DaemonProcess, 'os'>,
  name = 'private-net',
  cidr = '10.0.0.0/24',
): Promise<void> {
  await d.os('network', 'create', name);
  await d.os(
    'subnet',
    'create',
    '--network',
    name,
    '--subnet-range',
    cidr,
    `${name.replace(/-net$/, '')}-subnet`,
  );
}
