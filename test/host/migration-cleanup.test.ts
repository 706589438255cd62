import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { processesOf } from '../../src/host/procfs.js';
import { createQemuDriver, type QemuDriver } from '../../src/host/qemu-driver.js';
import { lookupVmUser, vmUserName } from '../../src/host/users.js';
import { waitFor } from '../helpers/guests.js';
import { biosSpec, isRoot, makeBaseDir, teardownDriver, userExists } from './host-helpers.js';

/**
 * A live migration's source cleans up what it owns (QemuDriver#migrationCleanup,
 * docs/multi-host.md): the guest's files go, and its Unix user goes only when
 * nothing runs as it any more. Two drivers on one machine stand for two agent
 * hosts sharing /etc/passwd; a process of the user stands for the destination's guest.
 */
describe.runIf(isRoot)('live migration: the source cleans up after the move (real driver)', () => {
  let baseA: string;
  let baseB: string;
  let a: QemuDriver;
  let b: QemuDriver;
  const ids = new Set<string>();
  let destination: ChildProcess | undefined;

  beforeAll(async () => {
    baseA = makeBaseDir('mig-src');
    baseB = makeBaseDir('mig-dst');
    a = await createQemuDriver({ baseDir: baseA, accel: 'tcg', cgroupParent: 'bulwark-test' });
    b = await createQemuDriver({ baseDir: baseB, accel: 'tcg', cgroupParent: 'bulwark-test' });
  });
  afterAll(async () => {
    destination?.kill('SIGKILL');
    await teardownDriver(a, baseA, ids);
    await teardownDriver(b, baseB, ids);
  });

  it('keeps the user while the destination on the same machine runs as it, and removes it with the last guest', async () => {
    const spec = biosSpec({ name: 'mig-shared' });
    ids.add(spec.id);
    await a.define(spec);
    await b.define(spec);
    const user = vmUserName(spec.id);
    const ids0 = (await lookupVmUser(user))!;
    const uid = ids0.uid;
    // The destination's guest: a process of the same user on this machine.
    destination = spawn('sleep', ['300'], { stdio: 'ignore', uid, gid: ids0.gid });
    await waitFor('the destination runs as the user', async () => (await processesOf(uid)).length > 0);
    await a.migrationCleanup(spec.id);
    expect(existsSync(a.layout(spec.id).dir)).toBe(false);
    expect(existsSync(a.layout(spec.id).hostDir)).toBe(false);
    expect((await lookupVmUser(user))?.uid).toBe(uid);
    expect(existsSync(b.layout(spec.id).dir)).toBe(true);
    // The guest is deleted where it runs: its user goes with it.
    destination.kill('SIGKILL');
    await new Promise((r) => destination?.once('exit', r));
    await b.undefine(spec.id);
    expect(userExists(user)).toBe(false);
  });

  it('removes the user on a source where nothing runs as it (a separate host)', async () => {
    const spec = biosSpec({ name: 'mig-alone' });
    ids.add(spec.id);
    await a.define(spec);
    expect(userExists(vmUserName(spec.id))).toBe(true);
    await a.migrationCleanup(spec.id);
    expect(existsSync(a.layout(spec.id).dir)).toBe(false);
    expect(userExists(vmUserName(spec.id))).toBe(false);
  });
});
