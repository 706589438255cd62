import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { fakeSysfs, TYPICAL_ALLOW } from '../../test/helpers/fake-sysfs.js';
import { decidePassthrough, type PassthroughConfig, passthroughArgs } from '../compute/passthrough-policy.js';
import { BulwarkError } from '../errors.js';
import { planPassthrough, readPciHostView, readUsbDevices } from './passthrough.js';

const SERVER = '11111111-2222-4333-8444-555555555555';
const admin = { userId: 'u-admin', isAdmin: true };
const member = { userId: 'u-alice', isAdmin: false };
const config: PassthroughConfig = TYPICAL_ALLOW;

let sys: Awaited<ReturnType<typeof fakeSysfs>>;
let root: string;

const refusal = async (p: Promise<unknown>): Promise<BulwarkError> => {
  try {
    await p;
  } catch (e) {
    expect(e).toBeInstanceOf(BulwarkError);
    return e as BulwarkError;
  }
  throw new Error('expected a refusal');
};

const req = (pciAddrs: string[], usbSel: { vendorId: string; productId: string }[] = []) => ({
  serverId: SERVER,
  pci: pciAddrs,
  usb: usbSel,
});

beforeEach(async () => {
  sys = await fakeSysfs();
  root = sys.root;
  await sys.typicalHost();
});
afterEach(async () => {
  await sys.remove();
});

describe('PCI passthrough', () => {
  it('reads vendor:product, driver and the whole IOMMU group from sysfs', async () => {
    const view = await readPciHostView('0000:03:00.0', root);
    expect(view.device).toEqual({
      address: '0000:03:00.0',
      vendorId: '10de',
      productId: '1eb8',
      classCode: '030000',
      driver: 'vfio-pci',
      iommuGroup: '14',
    });
    expect(view.group.map((d) => d.address)).toEqual(['0000:00:01.0', '0000:03:00.0', '0000:03:00.1']);
  });

  it('allows a whole group bound to vfio-pci, bridge excepted, and gives the exact arguments', async () => {
    const plan = await planPassthrough(admin, req(['0000:03:00.0', '0000:03:00.1']), config, root);
    expect(passthroughArgs(plan)).toEqual([
      '-device',
      'vfio-pci,host=0000:03:00.0,id=hostpci0',
      '-device',
      'vfio-pci,host=0000:03:00.1,id=hostpci1',
    ]);
    expect(plan.summary).toBe('pci 0000:03:00.0 10de:1eb8 group 14; pci 0000:03:00.1 10de:10f8 group 14');
  });

  it('refuses a device that is not on the allow-list', async () => {
    const e = await refusal(planPassthrough(admin, req(['0000:06:00.0']), config, root));
    expect(e.kind).toBe('Forbidden');
    expect(e.message).toMatch(/0000:06:00\.0 \(144d:a808\) is not on the site's PCI passthrough allow-list/);
  });

  it('refuses part of an IOMMU group, naming the missing device', async () => {
    const e = await refusal(planPassthrough(admin, req(['0000:03:00.0']), config, root));
    expect(e.kind).toBe('BadRequest');
    expect(e.message).toMatch(/shares IOMMU group 14 with 0000:03:00\.1 \(10de:10f8\)/);
    expect(e.message).toMatch(/Request 0000:03:00\.1 too/);
  });

  it('refuses a device not bound to vfio-pci, saying how to bind it', async () => {
    const e = await refusal(planPassthrough(admin, req(['0000:05:00.0']), config, root));
    expect(e.kind).toBe('Conflict');
    expect(e.message).toMatch(/0000:05:00\.0 \(IOMMU group 20\) is bound to nouveau, not vfio-pci/);
    expect(e.message).toMatch(/driverctl set-override 0000:05:00\.0 vfio-pci/);
  });

  it('refuses a device with no IOMMU group, and a bridge', async () => {
    await sys.pci('0000:07:00.0', { vendor: '10de', device: '1eb8', group: null });
    const e = await refusal(planPassthrough(admin, req(['0000:07:00.0']), config, root));
    expect(e.message).toMatch(/no IOMMU group: enable the IOMMU/);
    const b = await refusal(
      planPassthrough(admin, req(['0000:00:01.0', '0000:03:00.0', '0000:03:00.1']), config, root),
    );
    expect(b.message).toMatch(/0000:00:01\.0 is a bridge/);
  });

  it('refuses non-admins before reading the host', async () => {
    const e = await refusal(planPassthrough(member, req(['0000:03:00.0', '0000:03:00.1']), config, root));
    expect(e.kind).toBe('Forbidden');
    expect(e.message).toMatch(/admin-only/);
    // Even a request naming a device that does not exist gets the same answer.
    const n = await refusal(planPassthrough(member, req(['0000:99:00.0']), config, '/nonexistent'));
    expect(n.message).toBe(e.message);
  });

  it('refuses malformed and missing addresses', async () => {
    expect((await refusal(planPassthrough(admin, req(['../../etc']), config, root))).kind).toBe('BadRequest');
    expect((await refusal(planPassthrough(admin, req(['0000:09:00.0']), config, root))).kind).toBe(
      'NotFound',
    );
  });
});

describe('USB passthrough', () => {
  it('lists devices, not interfaces', async () => {
    expect(await readUsbDevices(root)).toEqual([
      { sysName: '1-1', vendorId: '046d', productId: 'c52b' },
      { sysName: '1-2', vendorId: '1050', productId: '0407' },
      { sysName: '2-1', vendorId: '1050', productId: '0407' },
    ]);
  });

  it('allows an allow-listed device behind a qemu-xhci controller', async () => {
    const plan = await planPassthrough(
      admin,
      req([], [{ vendorId: '046D', productId: '0xc52b' }]),
      config,
      root,
    );
    expect(passthroughArgs(plan)).toEqual([
      '-device',
      'qemu-xhci,id=bw-xhci',
      '-device',
      'usb-host,bus=bw-xhci.0,vendorid=0x046d,productid=0xc52b,id=hostusb0',
    ]);
  });

  it('refuses a device not on the allow-list, an ambiguous one, a missing one and non-admins', async () => {
    await sys.usb('3-1', '0781', '5581');
    const notListed = await refusal(
      planPassthrough(admin, req([], [{ vendorId: '0781', productId: '5581' }]), config, root),
    );
    expect(notListed.message).toMatch(/USB device 0781:5581 is not on the site's USB passthrough allow-list/);
    const twice = await refusal(
      planPassthrough(admin, req([], [{ vendorId: '1050', productId: '0407' }]), config, root),
    );
    expect(twice.message).toMatch(/2 USB devices match 1050:0407 \(1-2, 2-1\)/);
    await rm(join(root, 'bus/usb/devices/1-1'), { recursive: true });
    const gone = await refusal(
      planPassthrough(admin, req([], [{ vendorId: '046d', productId: 'c52b' }]), config, root),
    );
    expect(gone.kind).toBe('NotFound');
    const user = await refusal(
      planPassthrough(member, req([], [{ vendorId: '046d', productId: 'c52b' }]), config, root),
    );
    expect(user.message).toMatch(/admin-only/);
  });

  it('the pure decision refuses a bad allow-list entry', () => {
    expect(() =>
      decidePassthrough(admin, req([]), { pciAllowList: ['nvidia'], usbAllowList: [] }, { pci: [], usb: [] }),
    ).toThrow(/Bad passthrough allow-list entry "nvidia"/);
  });
});
