import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/**
 * A fake sysfs tree in a temp dir, with the same files and symlinks the
 * kernel makes for PCI devices, IOMMU groups and USB devices (this machine has
 * no IOMMU and no device to give away; host/passthrough.ts reads it as /sys).
 */
export async function fakeSysfs() {
  const root = await mkdtemp(join(tmpdir(), 'bw-sysfs-'));
  const pci = async (
    addr: string,
    o: { vendor: string; device: string; cls?: string; driver?: string | null; group?: string | null },
  ): Promise<void> => {
    const dir = join(root, 'bus/pci/devices', addr);
    await mkdir(dir, { recursive: true });
    await writeFile(join(dir, 'vendor'), `0x${o.vendor}\n`);
    await writeFile(join(dir, 'device'), `0x${o.device}\n`);
    await writeFile(join(dir, 'class'), `0x${o.cls ?? '030000'}\n`);
    if (o.driver !== null)
      await symlink(`../../../bus/pci/drivers/${o.driver ?? 'vfio-pci'}`, join(dir, 'driver'));
    if (o.group !== null) {
      const g = o.group ?? '14';
      await symlink(`../../../kernel/iommu_groups/${g}`, join(dir, 'iommu_group'));
      const gdir = join(root, 'kernel/iommu_groups', g, 'devices');
      await mkdir(gdir, { recursive: true });
      await symlink(`../../../../bus/pci/devices/${addr}`, join(gdir, addr));
    }
  };
  const usb = async (name: string, vendor: string, product: string): Promise<void> => {
    const dir = join(root, 'bus/usb/devices', name);
    await mkdir(dir, { recursive: true });
    await writeFile(join(dir, 'idVendor'), `${vendor}\n`);
    await writeFile(join(dir, 'idProduct'), `${product}\n`);
    await mkdir(join(root, 'bus/usb/devices', `${name}:1.0`), { recursive: true }); // an interface
  };
  /**
   * A typical host: a GPU and its HDMI audio function sharing group 14 with the
   * root port above them; a GPU alone in group 20 still on its host driver; a
   * disk controller not on the allow-list; three USB devices, two alike.
   */
  const typicalHost = async () => {
    await pci('0000:03:00.0', { vendor: '10de', device: '1eb8' });
    await pci('0000:03:00.1', { vendor: '10de', device: '10f8', cls: '040300' });
    await pci('0000:00:01.0', { vendor: '8086', device: '1901', cls: '060400', driver: 'pcieport' });
    await pci('0000:05:00.0', { vendor: '10de', device: '1eb8', driver: 'nouveau', group: '20' });
    await pci('0000:06:00.0', { vendor: '144d', device: 'a808', cls: '010802', group: '21' });
    await usb('1-1', '046d', 'c52b');
    await usb('1-2', '1050', '0407');
    await usb('2-1', '1050', '0407');
  };
  return { root, pci, usb, typicalHost, remove: () => rm(root, { recursive: true, force: true }) };
}

/** The allow-lists that go with `typicalHost()`. */
export const TYPICAL_ALLOW = {
  pciAllowList: ['10de:1eb8', '10DE:10F8'],
  usbAllowList: ['046d:c52b', '1050:0407'],
};
