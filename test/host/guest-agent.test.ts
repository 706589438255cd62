import { lstatSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BulwarkError } from '../../src/errors.js';
import { createQemuDriver, type QemuDriver } from '../../src/host/qemu-driver.js';
import { biosSpec, isRoot, join, makeBaseDir, procCmdline, scrub, waitConsole } from './host-helpers.js';

/**
 * The guest agent channel on real guests (TCG): the test guest runs Debian's
 * qemu-ga on the virtio-serial port when (and only when) the driver wires one;
 * the socket is the guest user's, in its 0700 dir; the daemon's client syncs,
 * sends one request and reads one reply. The filter in front of it is tested
 * through the API (test/api/guest-agent.test.ts, test/e2e/openstack-governance.test.ts).
 */
describe.runIf(isRoot)('guest agent channel with real guests', () => {
  let base: string;
  let driver: QemuDriver;
  const withAgent = biosSpec({ name: 'qga-on', guestAgent: true });
  const without = biosSpec({ name: 'qga-off' });
  const ask = (id: string, execute: string) =>
    driver.guestAgent(id, JSON.stringify({ execute })) as Promise<any>;

  beforeAll(async () => {
    base = makeBaseDir('qga');
    driver = await createQemuDriver({ baseDir: base, accel: 'tcg', cgroupParent: 'bulwark-test' });
    for (const s of [withAgent, without]) {
      await driver.define(s);
      await driver.start(s.id);
    }
    await waitConsole(driver, withAgent.id, 'BULWARK-QGA: running');
    await waitConsole(driver, without.id, 'BULWARK-QGA: absent');
  }, 120_000);
  afterAll(async () => {
    const cg = driver.cgroups;
    for (const s of [withAgent, without]) await driver.undefine(s.id).catch(() => undefined);
    await driver.close();
    scrub(base, [withAgent.id, without.id], (id) => cg.paths(`vm-${id}`));
  });

  it("puts the channel on a socket in the guest's own dir, owned by the guest's user", async () => {
    const info = await driver.processInfo(withAgent.id);
    const sock = lstatSync(join(base, withAgent.id, 'qga.sock'));
    expect(sock.isSocket()).toBe(true);
    expect(sock.uid).toBe(info?.uid);
    expect(lstatSync(join(base, withAgent.id)).mode & 0o777).toBe(0o700);
    const cmd = procCmdline(info!.pid).join(' ');
    expect(cmd).toContain('name=org.qemu.guest_agent.0');
    expect(procCmdline((await driver.processInfo(without.id))!.pid).join(' ')).not.toContain('guest_agent');
  });

  it('gets real answers from qemu-ga in the guest: guest-ping and guest-info', async () => {
    expect(await ask(withAgent.id, 'guest-ping')).toEqual({ return: {} });
    const info = await ask(withAgent.id, 'guest-info');
    expect(info.return.version).toMatch(/^\d+\.\d+/);
    // The agent itself would run guest-exec: only the daemon's filter stands in the way.
    const names = (info.return.supported_commands as { name: string; enabled: boolean }[]).map((c) => c.name);
    expect(names).toContain('guest-exec');
    // An unknown command is the agent's own error, passed back as a reply.
    expect((await ask(withAgent.id, 'guest-no-such')).error.class).toBe('CommandNotFound');
    // QEMU's chardev takes one client at a time: requests at once are taken in turn, each answered.
    const many = await Promise.all([1, 2, 3].map(() => ask(withAgent.id, 'guest-ping')));
    expect(many).toEqual([{ return: {} }, { return: {} }, { return: {} }]);
  });

  it('has no channel when not asked for', async () => {
    await expect(ask(without.id, 'guest-ping')).rejects.toBeInstanceOf(BulwarkError);
    expect(() => lstatSync(join(base, without.id, 'qga.sock'))).toThrow();
  });
});
