import { BulwarkError } from '../errors.js';

/**
 * Host device passthrough: the decision and the QEMU arguments, both pure.
 * What the host has is read from sysfs by host/passthrough.ts into the
 * snapshot types below; nothing here touches the filesystem.
 *
 * The rules (docs/passthrough-and-agent.md):
 *  - only a cloud admin may ask (the guide's "admin-only");
 *  - every device must be on the site allow-list, by vendor:product;
 *  - PCI: the whole IOMMU group goes to the guest together. Every endpoint
 *    in the group must be requested and bound to vfio-pci. PCI bridges and
 *    host bridges (class 0x0604 / 0x0600) are the one exception, as with
 *    the kernel's VFIO and libvirt: they stay on the host, need not be
 *    requested and need not be bound to vfio-pci, and cannot be requested.
 *  - USB: the device must be present and the only one with that vendor:product
 *    (QEMU's usb-host picks by vendor:product).
 */

export const PCI_ADDRESS = /^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$/;
const HEX4 = /^[0-9a-f]{4}$/;
export const VFIO_DRIVER = 'vfio-pci';

export interface PassthroughCaller {
  userId: string;
  /** The cloud admin (admin role on the admin project), as in AuthContext. */
  isAdmin: boolean;
}

/** The site allow-lists: `vendor:product` in lowercase hex, e.g. `10de:1eb8`. */
export interface PassthroughConfig {
  pciAllowList: readonly string[];
  usbAllowList: readonly string[];
}

export interface PciDeviceInfo {
  /** Full address, e.g. `0000:03:00.0`. */
  address: string;
  vendorId: string;
  productId: string;
  /** The 24-bit class code as 6 hex digits, e.g. `030000` (VGA), `060400` (PCI bridge). */
  classCode: string;
  /** The bound driver's name, or null when none is bound. */
  driver: string | null;
  /** The IOMMU group number, or null when the host has no IOMMU (or it is off). */
  iommuGroup: string | null;
}

/** One requested PCI device with every device of its IOMMU group (itself included). */
export interface PciHostView {
  device: PciDeviceInfo;
  group: readonly PciDeviceInfo[];
}

export interface UsbDeviceInfo {
  /** The sysfs name, e.g. `1-1.2`. */
  sysName: string;
  vendorId: string;
  productId: string;
}

export interface UsbSelector {
  vendorId: string;
  productId: string;
}

export interface PassthroughRequest {
  serverId: string;
  pci: readonly string[];
  usb: readonly UsbSelector[];
}

export interface PassthroughPlan {
  serverId: string;
  pci: readonly PciDeviceInfo[];
  usb: readonly UsbDeviceInfo[];
  /** One line for the audit record. */
  summary: string;
}

const refuse = (message: string, kind: 'Forbidden' | 'BadRequest' | 'Conflict' | 'NotFound' = 'Forbidden') =>
  new BulwarkError(kind, message);

export const vendorProduct = (d: { vendorId: string; productId: string }): string =>
  `${d.vendorId}:${d.productId}`;

/** `0x10DE\n` → `10de`; refuses anything that is not four hex digits. */
export function normaliseId(raw: string, what: string): string {
  const v = raw.trim().toLowerCase().replace(/^0x/, '');
  if (!HEX4.test(v))
    throw refuse(`Bad ${what} ${JSON.stringify(raw.trim())}: expected four hex digits.`, 'BadRequest');
  return v;
}

/** Lowercases and checks a PCI address: `0000:03:00.0` (domain:bus:slot.function). */
export function normalisePciAddress(raw: string): string {
  const a = raw.trim().toLowerCase();
  if (!PCI_ADDRESS.test(a))
    throw refuse(
      `Bad PCI address ${JSON.stringify(raw)}: expected domain:bus:slot.function, e.g. 0000:03:00.0.`,
      'BadRequest',
    );
  return a;
}

/** PCI-to-PCI bridges (0x0604) and host bridges (0x0600) stay with the host. */
export const isBridge = (d: Pick<PciDeviceInfo, 'classCode'>): boolean =>
  d.classCode.startsWith('0604') || d.classCode.startsWith('0600');

function checkAllowList(list: readonly string[]): Set<string> {
  const out = new Set<string>();
  for (const entry of list) {
    const [v, p, ...rest] = entry.split(':');
    if (v === undefined || p === undefined || rest.length)
      throw refuse(
        `Bad passthrough allow-list entry ${JSON.stringify(entry)}: use vendor:product.`,
        'BadRequest',
      );
    out.add(`${normaliseId(v, 'vendor id')}:${normaliseId(p, 'product id')}`);
  }
  return out;
}

/** Refuses anyone but the cloud admin, before anything about the host is looked at. */
export function assertMayPassThrough(caller: PassthroughCaller): void {
  if (!caller.isAdmin)
    throw refuse(
      'Device passthrough is admin-only: a passed-through device can reach host memory by DMA. ' +
        'Ask a cloud admin (admin role on the admin project) to attach it.',
    );
}

/**
 * Decides a passthrough request against what the host has. Returns the plan or
 * throws a BulwarkError naming the device, the reason and the fix.
 */
export function decidePassthrough(
  caller: PassthroughCaller,
  request: PassthroughRequest,
  config: PassthroughConfig,
  host: { pci: readonly PciHostView[]; usb: readonly UsbDeviceInfo[] },
): PassthroughPlan {
  assertMayPassThrough(caller);
  const pciAllowed = checkAllowList(config.pciAllowList);
  const usbAllowed = checkAllowList(config.usbAllowList);
  const requested = new Set(request.pci.map(normalisePciAddress));
  if (requested.size !== request.pci.length) throw refuse('A PCI device is requested twice.', 'BadRequest');

  const pci: PciDeviceInfo[] = [];
  for (const address of requested) {
    const view = host.pci.find((v) => v.device.address === address);
    if (!view) throw refuse(`PCI device ${address} is not on this host.`, 'NotFound');
    const dev = view.device;
    if (isBridge(dev))
      throw refuse(`PCI device ${address} is a bridge (class ${dev.classCode}); bridges stay with the host.`);
    if (!pciAllowed.has(vendorProduct(dev)))
      throw refuse(
        `PCI device ${address} (${vendorProduct(dev)}) is not on the site's PCI passthrough allow-list; ` +
          `an operator must add ${vendorProduct(dev)} to it first.`,
      );
    if (dev.iommuGroup === null)
      throw refuse(
        `PCI device ${address} has no IOMMU group: enable the IOMMU (intel_iommu=on or amd_iommu=on, ` +
          'and VT-d/AMD-Vi in the firmware); without it the device could reach all host memory.',
        'Conflict',
      );
    for (const member of view.group) {
      if (isBridge(member)) continue;
      if (!requested.has(member.address))
        throw refuse(
          `PCI device ${address} shares IOMMU group ${dev.iommuGroup} with ${member.address} ` +
            `(${vendorProduct(member)}), which is not requested: a group can only be passed through whole. ` +
            `Request ${member.address} too.`,
          'BadRequest',
        );
      if (member.driver !== VFIO_DRIVER)
        throw refuse(
          `PCI device ${member.address} (IOMMU group ${dev.iommuGroup}) is bound to ` +
            `${member.driver ?? 'no driver'}, not ${VFIO_DRIVER}: unbind it from the host and bind it to ` +
            `${VFIO_DRIVER} (e.g. driverctl set-override ${member.address} ${VFIO_DRIVER}).`,
          'Conflict',
        );
    }
    pci.push(dev);
  }

  const usb: UsbDeviceInfo[] = [];
  const seen = new Set<string>();
  for (const sel of request.usb) {
    const key = `${normaliseId(sel.vendorId, 'USB vendor id')}:${normaliseId(sel.productId, 'USB product id')}`;
    if (seen.has(key)) throw refuse(`USB device ${key} is requested twice.`, 'BadRequest');
    seen.add(key);
    if (!usbAllowed.has(key))
      throw refuse(
        `USB device ${key} is not on the site's USB passthrough allow-list; an operator must add ${key} to it first.`,
      );
    const matches = host.usb.filter((d) => vendorProduct(d) === key);
    if (matches.length === 0) throw refuse(`USB device ${key} is not plugged into this host.`, 'NotFound');
    if (matches.length > 1)
      throw refuse(
        `${matches.length} USB devices match ${key} (${matches.map((d) => d.sysName).join(', ')}); ` +
          'passthrough by vendor:product needs exactly one. Unplug the others.',
        'Conflict',
      );
    usb.push(matches[0]!);
  }

  const summary = [
    ...pci.map((d) => `pci ${d.address} ${vendorProduct(d)} group ${d.iommuGroup}`),
    ...usb.map((d) => `usb ${vendorProduct(d)} at ${d.sysName}`),
  ].join('; ');
  return { serverId: request.serverId, pci, usb, summary: summary || 'no devices' };
}

/** The USB controller host USB devices hang off. */
export const USB_CONTROLLER_ID = 'bw-xhci';

/**
 * QEMU arguments for a decided plan. Pure. PCI devices go through VFIO by host
 * address; USB devices hang off one qemu-xhci controller, selected by
 * vendor:product (the plan has checked that pair is unique on the host).
 */
export function passthroughArgs(plan: Pick<PassthroughPlan, 'pci' | 'usb'>): string[] {
  const args: string[] = [];
  for (const [i, d] of plan.pci.entries()) {
    const addr = normalisePciAddress(d.address);
    args.push('-device', `vfio-pci,host=${addr},id=hostpci${i}`);
  }
  if (plan.usb.length) args.push('-device', `qemu-xhci,id=${USB_CONTROLLER_ID}`);
  for (const [i, d] of plan.usb.entries()) {
    const v = normaliseId(d.vendorId, 'USB vendor id');
    const p = normaliseId(d.productId, 'USB product id');
    args.push(
      '-device',
      `usb-host,bus=${USB_CONTROLLER_ID}.0,vendorid=0x${v},productid=0x${p},id=hostusb${i}`,
    );
  }
  return args;
}
