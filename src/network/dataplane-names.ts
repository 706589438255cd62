/**
 * Names of the nftables objects the compiler makes. They derive from port and
 * group ids, so the control plane can find a port's chains and counters.
 */

/** nft table names Bulwark accepts. */
export const TABLE_NAME = /^[a-z][a-z0-9_]{0,30}$/;
/** Interface names: at most 15 characters (IFNAMSIZ - 1), nothing nft or a shell would read specially. */
export const DEVICE_NAME = /^[A-Za-z0-9_-]{1,15}$/;

/** An id reduced to nft-safe characters (UUIDs lose their dashes). */
export const keyOf = (id: string): string => id.toLowerCase().replace(/[^0-9a-z]/g, '');

/** Chain, set and counter names derive from ids; these are what readers of counters use. */
export const names = {
  preChain: (portId: string) => `pre_${keyOf(portId)}`,
  egressChain: (portId: string) => `out_${keyOf(portId)}`,
  ingressChain: (portId: string) => `in_${keyOf(portId)}`,
  arpChain: (portId: string) => `arp_${keyOf(portId)}`,
  groupSet: (groupId: string, family: 4 | 6) => `sg_${keyOf(groupId)}_v${family}`,
  quarantineSet: 'quarantined',
  portsSet: 'ports',
} as const;

/** Named counters of one port: drops by cause, so a "firewall drop spike" can name port and cause. */
export interface PortCounterNames {
  /** inet table: dropped by the port's ingress rules (incl. conntrack-invalid). */
  ingress: string;
  /** inet table: dropped by the port's egress rules (incl. conntrack-invalid). */
  egress: string;
  /** inet table: port security (source MAC/IP, DHCP server, router advertisement, NA target). */
  spoof: string;
  /** inet table: cross-zone traffic refused at this port. */
  zone: string;
  /** arp table: ARP with a sender the port may not use. */
  arp: string;
}

export function portCounterNames(portId: string): PortCounterNames {
  const k = keyOf(portId);
  return {
    ingress: `p_${k}_ingress`,
    egress: `p_${k}_egress`,
    spoof: `p_${k}_spoof`,
    zone: `p_${k}_zone`,
    arp: `p_${k}_arp`,
  };
}

/** Table-wide counters (in the inet table; `quarantine` and `unknown_device` exist in the arp table too). */
export const GLOBAL_COUNTERS = {
  quarantine: 'quarantine',
  unknownDevice: 'unknown_device',
  hostInput: 'host_input',
} as const;
