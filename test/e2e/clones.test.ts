/**
 * Clones (docs/clones.md) against the real `bulwark serve`, real guests under
 * TCG: every server gets a NoCloud seed whose instance-id is its own UUID,
 * and the guest makes its machine-id and SSH host key at first boot and keeps
 * them on its disk. Two servers from one template differ; a reboot keeps them.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type DaemonProcess,
  passwordCliEnv,
  startDaemonProcess,
  stopDaemon,
} from '../helpers/daemon-process.js';
import { imageCreateArgs, waitFor } from '../helpers/guests.js';

const PASS = 'Long-enough-pass-1';

/** The identity lines of each boot on a console log, in order. */
interface Identity {
  instanceId: string;
  machineId: string;
  hostKey: string;
  /** first-boot, kept, or reset (the disk held another instance's identity). */
  how: string;
}
function identities(log: string): Identity[] {
  const re =
    /BULWARK-INSTANCE-ID=(\S+)\r?\nBULWARK-MACHINE-ID=([0-9a-f]{32})\r?\nBULWARK-HOST-KEY=(SHA256:[A-Za-z0-9+/]+)\r?\nBULWARK-IDENTITY=(\S+)/g;
  return [...log.matchAll(re)].map((m) => ({
    instanceId: m[1]!,
    machineId: m[2]!,
    hostKey: m[3]!,
    how: m[4]!,
  }));
}

describe.runIf(process.getuid?.() === 0)('clones: fresh identity per server', { timeout: 900_000 }, () => {
  let d: DaemonProcess;
  const as = (user: string) => passwordCliEnv(d, user, PASS);
  const osAs = async (user: string, ...args: string[]) => {
    const r = await d.openstack(args, as(user));
    if (r.code !== 0) throw new Error(`openstack ${args.join(' ')} as ${user}: ${r.stderr}`);
    return r.stdout;
  };
  const consoleOf = (vm: string) => d.os('console', 'log', 'show', vm);
  const status = async (vm: string) => {
    const s = JSON.parse(await osAs('carol', 'server', 'show', vm, '-f', 'json'));
    if (s.status === 'ERROR') throw new Error(`${vm} in ERROR: ${JSON.stringify(s.fault)}`);
    return s.status as string;
  };
  /** Waits for boot number `n` (1-based) of `vm` to show its identity, and returns it. */
  const boot = (vm: string, n: number) =>
    waitFor(
      `${vm} boot ${n} identity on the console`,
      async () => identities(await consoleOf(vm))[n - 1],
      240_000,
      1000,
    );

  beforeAll(async () => {
    d = await startDaemonProcess();
    await d.os('flavor', 'create', '--vcpus', '1', '--ram', '256', '--disk', '1', 'tiny');
    await d.os(...imageCreateArgs('tiny-bios', 'bios.raw', ['hw_firmware_type=bios']));
    for (const [user, role] of [
      ['admin2', 'admin'],
      ['carol', 'member'],
    ] as const) {
      await d.os('user', 'create', '--password', PASS, user);
      await d.os('role', 'add', '--project', 'admin', '--user', user, role);
    }
    // The template: made by one admin, approved by another (docs/templates.md).
    const t = await d.bulwark(['template', 'create', 'golden', '--image', 'tiny-bios', '-f', 'json']);
    expect(t.code, t.stderr).toBe(0);
    const pending = await d.bulwark(['approval', 'list', '--status', 'pending', '-f', 'json']);
    const approval = JSON.parse(pending.stdout).find((a: { kind: string }) => a.kind === 'template-version');
    const ok = await d.bulwark(['approval', 'approve', approval.id, '--reason', 'golden v1'], as('admin2'));
    expect(ok.code, ok.stderr).toBe(0);
  });
  afterAll(() => stopDaemon(d));

  it('two servers from one template boot with different instance-id, machine-id and host key', async () => {
    for (const vm of ['vm-a', 'vm-b'])
      await osAs('carol', 'server', 'create', '--flavor', 'tiny', '--image', 'tiny-bios', '--wait', vm);
    const a = await boot('vm-a', 1);
    const b = await boot('vm-b', 1);
    const ids = await Promise.all(
      ['vm-a', 'vm-b'].map(
        async (vm) => JSON.parse(await osAs('carol', 'server', 'show', vm, '-f', 'json')).id,
      ),
    );
    // The instance-id is each server's own UUID.
    expect([a.instanceId, b.instanceId]).toEqual(ids);
    expect(a.machineId).not.toBe(b.machineId);
    expect(a.hostKey).not.toBe(b.hostKey);
    expect([a.how, b.how]).toEqual(['first-boot', 'first-boot']);
  });

  it('a reboot of the same disk shows the same identity (kept on the disk, not made again)', async () => {
    const first = await boot('vm-a', 1);
    await osAs('carol', 'server', 'stop', 'vm-a');
    await waitFor('vm-a SHUTOFF', async () => (await status('vm-a')) === 'SHUTOFF', 120_000, 1000);
    await osAs('carol', 'server', 'start', 'vm-a');
    expect(await boot('vm-a', 2)).toEqual({ ...first, how: 'kept' });
  });

  it('a clone of vm-a: held for a second admin, then a fresh identity; vm-a keeps its own', async () => {
    const a = await boot('vm-a', 1);
    const stopA = await d.openstack(['server', 'stop', 'vm-a'], as('carol'));
    expect(stopA.code, stopA.stderr).toBe(0);
    await waitFor('vm-a SHUTOFF', async () => (await status('vm-a')) === 'SHUTOFF', 120_000, 1000);
    const held = await d.bulwark(['server', 'clone', 'vm-a', '--name', 'vm-c', '-f', 'json'], as('carol'));
    expect(held.code, held.stderr).toBe(0);
    const approval = JSON.parse(held.stdout);
    expect(approval).toMatchObject({ kind: 'server-clone', status: 'pending' });
    // A member cannot approve (their own request, and no admin): 403; nothing is cloned yet.
    const self = await d.bulwark(['approval', 'approve', approval.id, '--reason', 'mine'], as('carol'));
    expect(self.code).toBe(1);
    expect(self.stderr).toMatch(/HTTP 403/);
    expect((await d.osJson('server', 'list')).map((s: { Name: string }) => s.Name)).not.toContain('vm-c');
    const ok = await d.bulwark(['approval', 'approve', approval.id, '--reason', 'reviewed'], as('admin2'));
    expect(ok.code, ok.stderr).toBe(0);
    await waitFor('vm-c ACTIVE', async () => (await status('vm-c')) === 'ACTIVE', 240_000, 1000);
    const c = await boot('vm-c', 1);
    const cId = JSON.parse(await osAs('carol', 'server', 'show', 'vm-c', '-f', 'json')).id;
    expect(c.instanceId).toBe(cId);
    expect(c.instanceId).not.toBe(a.instanceId);
    expect(c.machineId).not.toBe(a.machineId);
    expect(c.hostKey).not.toBe(a.hostKey);
    // The clone's disk is a copy of vm-a's: it held vm-a's identity, which the guest replaced.
    expect(c.how).toBe('reset');
    // vm-a, started again, is still itself.
    await osAs('carol', 'server', 'start', 'vm-a');
    expect(await boot('vm-a', 3)).toEqual({ ...a, how: 'kept' });
  });
});
