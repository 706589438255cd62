import { readdir, readFile, readlink } from 'node:fs/promises';
import { basename, join } from 'node:path';
import {
  assertMayPassThrough,
  decidePassthrough,
  normaliseId,
  normalisePciAddress,
  type PassthroughCaller,
  type PassthroughConfig,
  type PassthroughPlan,
  type PassthroughRequest,
  type PciDeviceInfo,
  type PciHostView,
  type UsbDeviceInfo,
} from '../compute/passthrough-policy.js';
import { BulwarkError } from '../errors.js';

/**
 * What the host has, read from sysfs. Only reads: binding a device to
 * vfio-pci is left to the operator (driverctl), so nothing here changes the
 * host. `sysfsRoot` is `/sys`; tests build a fake tree in a temp dir.
 */

const errno = (e: unknown): string | undefined => (e as NodeJS.ErrnoException)?.code;

async function readText(path: string): Promise<string | null> {
  try {
    return (await readFile(path, 'utf8')).trim();
  } catch (e) {
    if (errno(e) === 'ENOENT') return null;
    throw e;
  }
}

/** The last component of a symlink's target (`driver` → `…/drivers/vfio-pci`), or null if absent. */
async function linkName(path: string): Promise<string | null> {
  try {
    return basename(await readlink(path));
  } catch (e) {
    if (errno(e) === 'ENOENT') return null;
    throw e;
  }
}

/** One PCI device's identity, driver and IOMMU group. NotFound if the address is not on the host. */
export async function readPciDevice(address: string, sysfsRoot = '/sys'): Promise<PciDeviceInfo> {
  const addr = normalisePciAddress(address);
  const dir = join(sysfsRoot, 'bus/pci/devices', addr);
  const vendor = await readText(join(dir, 'vendor'));
  const device = await readText(join(dir, 'device'));
  if (vendor === null || device === null)
    throw new BulwarkError('NotFound', `PCI device ${addr} is not on this host (no ${dir}).`);
  const cls = (await readText(join(dir, 'class'))) ?? '';
  return {
    address: addr,
    vendorId: normaliseId(vendor, `vendor id of ${addr}`),
    productId: normaliseId(device, `product id of ${addr}`),
    classCode: cls.toLowerCase().replace(/^0x/, ''),
    driver: await linkName(join(dir, 'driver')),
    iommuGroup: await linkName(join(dir, 'iommu_group')),
  };
}

/** A device and every member of its IOMMU group (`/sys/kernel/iommu_groups/N/devices/*`). */
export async function readPciHostView(address: string, sysfsRoot = '/sys'): Promise<PciHostView> {
  const device = await readPciDevice(address, sysfsRoot);
  if (device.iommuGroup === null) return { device, group: [device] };
  if (!/^\d+$/.test(device.iommuGroup))
    throw new BulwarkError('Internal', `PCI device ${device.address} has a bad IOMMU group link.`);
  const members = await readdir(join(sysfsRoot, 'kernel/iommu_groups', device.iommuGroup, 'devices'));
  const group = await Promise.all(members.sort().map((m) => readPciDevice(m, sysfsRoot)));
  return { device, group };
}

/** Every USB device (not interface) the host has: `/sys/bus/usb/devices/*` with idVendor and idProduct. */
export async function readUsbDevices(sysfsRoot = '/sys'): Promise<UsbDeviceInfo[]> {
  const dir = join(sysfsRoot, 'bus/usb/devices');
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (e) {
    if (errno(e) === 'ENOENT') return [];
    throw e;
  }
  const out: UsbDeviceInfo[] = [];
  for (const name of names.sort()) {
    const vendor = await readText(join(dir, name, 'idVendor'));
    const product = await readText(join(dir, name, 'idProduct'));
    if (vendor === null || product === null) continue; // an interface (1-1:1.0), not a device
    out.push({
      sysName: name,
      vendorId: normaliseId(vendor, 'USB vendor id'),
      productId: normaliseId(product, 'USB product id'),
    });
  }
  return out;
}

/**
 * Reads what a request needs from sysfs and decides it. The caller is checked
 * first, so a non-admin learns nothing about the host's devices.
 */
export async function planPassthrough(
  caller: PassthroughCaller,
  request: PassthroughRequest,
  config: PassthroughConfig,
  sysfsRoot = '/sys',
): Promise<PassthroughPlan> {
  assertMayPassThrough(caller);
  const pci = await Promise.all(request.pci.map((a) => readPciHostView(a, sysfsRoot)));
  const usb = request.usb.length ? await readUsbDevices(sysfsRoot) : [];
  return decidePassthrough(caller, request, config, { pci, usb });
}
