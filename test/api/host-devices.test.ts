import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { instanceLayout } from '../../src/host/layout.js';
import { buildQemuArgs } from '../../src/host/qemu-args.js';
import { lastAuditEvent, startTestApi, type TestApi } from '../helpers/api.js';
import { fakeSysfs, TYPICAL_ALLOW } from '../helpers/fake-sysfs.js';
import { dialects } from '../helpers/store.js';

/**
 * Host device passthrough through the API (guide 11): admin only, allow-list,
 * whole IOMMU groups read from a fake sysfs tree (this machine has no IOMMU
 * or spare device), a second admin's approval, audited, and the QEMU
 * arguments the server then starts with.
 */
describe.each(dialects())('host device passthrough on %s (fake sysfs)', (dialect) => {
  let api: TestApi;
  let sys: Awaited<ReturnType<typeof fakeSysfs>>;
  let admin: string;
  let admin2: { token: string; userId: string };
  let alice: { token: string; userId: string; projectId: string };
  let server: string;
  const url = () => `/bulwark/v1/servers/${server}/host-devices`;
  const gpu = {
    host_devices: { pci: ['0000:03:00.0', '0000:03:00.1'], usb: [{ vendor_id: '046d', product_id: 'c52b' }] },
  };
  const lastAudit = (action: string) => lastAuditEvent(api, action);

  beforeAll(async () => {
    sys = await fakeSysfs();
    await sys.typicalHost();
    api = await startTestApi(dialect, { passthrough: TYPICAL_ALLOW, sysfsRoot: sys.root });
    admin = await api.login('admin', api.adminPassword, 'admin');
    admin2 = await api.persona('admin', 'hd-admin2', 'admin');
    alice = await api.persona('hd-a', 'hd-alice', 'member');
    const fx = await api.bootable(alice.token, 'hd');
    server = (
      await api.platform.compute.servers.create(api.authOf(alice.token), {
        name: 'gpu-vm',
        imageRef: fx.imageId,
        flavorRef: fx.flavorId,
        metadata: {},
        hints: {},
        userData: undefined,
        networks: undefined,
        securityGroups: undefined,
      })
    ).id;
    await api.platform.compute.servers.settled();
  });
  afterAll(async () => {
    await api?.close();
    await sys?.remove();
  });

  it("is the cloud admin's only: the owner gets 403 and learns nothing about the host", async () => {
    const r = await api.call('POST', url(), alice.token, gpu);
    expect(r.status).toBe(403);
    expect((await api.call('GET', url(), alice.token)).status).toBe(403);
    expect((await lastAudit('server:host_devices:attach'))?.outcome).toBe('denied');
  });

  it('refuses a running server, devices off the allow-list, part of a group, and a device not on vfio-pci', async () => {
    const running = await api.call('POST', url(), admin, gpu);
    expect(running.status).toBe(409);
    expect(running.json.error.message).toMatch(/Stop server .* first/);
    await api.call('POST', `/compute/v2.1/servers/${server}/action`, alice.token, { 'os-stop': null });
    await api.platform.compute.servers.settled();
    const cases: [unknown, number, RegExp][] = [
      [{ host_devices: { pci: ['0000:06:00.0'] } }, 403, /not on the site's PCI passthrough allow-list/],
      [{ host_devices: { pci: ['0000:03:00.0'] } }, 400, /shares IOMMU group 14 with 0000:03:00\.1/],
      [{ host_devices: { pci: ['0000:05:00.0'] } }, 409, /bound to nouveau, not vfio-pci/],
      [{ host_devices: { pci: ['0000:00:01.0'] } }, 403, /is a bridge/],
      [
        { host_devices: { usb: [{ vendor_id: '1050', product_id: '0407' }] } },
        409,
        /2 USB devices match 1050:0407/,
      ],
      [{ host_devices: { pci: ['0000:09:00.0'] } }, 404, /not on this host/],
      [{ host_devices: { pci: ['../../etc'] } }, 400, /PCI address|Invalid input/],
    ];
    for (const [body, status, re] of cases) {
      const r = await api.call('POST', url(), admin, body);
      expect(r.status, JSON.stringify(body)).toBe(status);
      expect(r.json.error.message).toMatch(re);
    }
    expect((await api.call('GET', url(), admin)).json.host_devices).toBeNull();
  });

  it('holds a whole group for another admin, then records it, audits it, and starts QEMU with VFIO and usb-host', async () => {
    const held = await api.call('POST', url(), admin, gpu);
    expect(held.status).toBe(202);
    expect(held.json.approval).toMatchObject({ kind: 'device-passthrough', status: 'pending' });
    expect(held.json.approval.summary).toMatch(
      /pci 0000:03:00\.0 10de:1eb8 group 14; pci 0000:03:00\.1 10de:10f8 group 14; usb 046d:c52b at 1-1/,
    );
    expect((await api.call('GET', url(), admin)).json.host_devices).toBeNull();
    expect(
      (
        await api.call('POST', `/bulwark/v1/approvals/${held.json.approval.id}/approve`, admin, {
          reason: 'mine',
        })
      ).status,
    ).toBe(403);
    const ok = await api.call(
      'POST',
      `/bulwark/v1/approvals/${held.json.approval.id}/approve`,
      admin2.token,
      {
        reason: 'ML training box, CHG-77',
      },
    );
    expect(ok.json.approval).toMatchObject({ status: 'executed', error: null });
    const plan = (await api.call('GET', url(), admin)).json.host_devices;
    expect(plan.pci.map((d: { address: string }) => d.address)).toEqual(['0000:03:00.0', '0000:03:00.1']);
    expect((await lastAudit('compute:host_device:attach'))?.reason).toMatch(/approved by hd-admin2/);
    const history = (await api.call('GET', `/bulwark/v1/servers/${server}/history`, alice.token)).json
      .changes;
    expect(history.at(-1)).toMatchObject({ change: 'host-devices', user_name: 'admin' });

    expect(
      (await api.call('POST', `/compute/v2.1/servers/${server}/action`, alice.token, { 'os-start': null }))
        .status,
    ).toBe(202);
    await api.platform.compute.servers.settled();
    const spec = api.driver.guests.get(server)?.spec;
    expect(spec?.hostDevices?.pci).toHaveLength(2);
    const args = buildQemuArgs(spec!, {
      accel: 'tcg',
      paths: instanceLayout('/var/lib/bulwark/instances', server),
    });
    expect(args.join(' ')).toContain(
      '-device vfio-pci,host=0000:03:00.0,id=hostpci0 -device vfio-pci,host=0000:03:00.1,id=hostpci1 ' +
        '-device qemu-xhci,id=bw-xhci -device usb-host,bus=bw-xhci.0,vendorid=0x046d,productid=0xc52b,id=hostusb0',
    );
  });

  it('detaches only when stopped, audited', async () => {
    expect((await api.call('DELETE', url(), admin)).status).toBe(409);
    await api.call('POST', `/compute/v2.1/servers/${server}/action`, alice.token, { 'os-stop': null });
    await api.platform.compute.servers.settled();
    expect((await api.call('DELETE', url(), admin)).status).toBe(204);
    expect((await api.call('GET', url(), admin)).json.host_devices).toBeNull();
    expect((await lastAudit('compute:host_device:detach'))?.reason).toMatch(/pci 0000:03:00\.0/);
  });
});
