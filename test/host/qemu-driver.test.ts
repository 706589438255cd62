import { existsSync, lstatSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BulwarkError } from '../../src/errors.js';
import { memoryLimitBytes } from '../../src/host/cgroups.js';
import { processConfinement } from '../../src/host/hardening.js';
import type { GuestSpec } from '../../src/host/hypervisor.js';
import { SANDBOX } from '../../src/host/qemu-args.js';
import { createQemuDriver, type QemuDriver } from '../../src/host/qemu-driver.js';
import { vmUserName } from '../../src/host/users.js';
import { guestImage, waitFor } from '../helpers/guests.js';
import {
  biosSpec,
  cgroupOf,
  groupExists,
  isRoot,
  join,
  MiB,
  makeBaseDir,
  pidsMentioning,
  procCmdline,
  procStatus,
  runAs,
  SNAKEOIL_VARS,
  sh,
  teardownDriver,
  userExists,
  waitConsole,
} from './host-helpers.js';

/**
 * Real QEMU guests under TCG: isolation (user, seccomp, cgroups, nested virt
 * off, 0700 dirs), the lifecycle, daemon restarts (adopt, orphans), clean
 * removal, Secure Boot, and start failures. Tests share guests and run in order.
 */
describe.runIf(isRoot)('QEMU driver with real guests', () => {
  let base: string;
  let driver: QemuDriver;
  const ids = new Set<string>();
  const events: { id: string; event: string }[] = [];
  const track = (d: QemuDriver) => d.onEvent((id, event) => events.push({ id, event }));
  const define = async (spec: GuestSpec) => {
    ids.add(spec.id);
    await driver.define(spec);
    return spec;
  };
  const log = (id: string) => driver.consoleLog(id);
  const count = (text: string, needle: string) => text.split(needle).length - 1;
  const waitLog = (id: string, needle: string, times = 1, timeoutMs = 45_000) =>
    waitConsole(driver, id, needle, times, timeoutMs);

  const A = biosSpec({
    name: 'guest-a',
    io: { readIopsSec: 2000, writeBytesSec: 50 * MiB },
    fwCfg: { 'opt/org.bulwark/run': 'echo "fw,cfg works"; grep -c -w -e vmx -e svm /proc/cpuinfo; true' },
  });
  const B = biosSpec({ name: 'guest-b' });

  // Each driver instance is what a daemon (re)start makes.
  const newDriver = () =>
    createQemuDriver({
      baseDir: base,
      accel: 'tcg',
      cgroupParent: 'bulwark-test',
      secureBootVars: SNAKEOIL_VARS,
    });

  beforeAll(async () => {
    base = makeBaseDir('driver');
    driver = await newDriver();
    track(driver);
  });

  afterAll(async () => {
    await teardownDriver(driver, base, ids);
  });

  it('boots a BIOS guest as its own user, sandboxed, confined by its cgroup, without nested virt', async () => {
    await define(A);
    await driver.start(A.id);
    expect(await driver.state(A.id)).toBe('running');
    await waitLog(A.id, 'BULWARK-RUN-END rc=0');
    const console = await log(A.id);
    expect(console).toContain('BULWARK-GUEST-READY');
    expect(console).toContain('fw,cfg works');
    expect(console).toContain('BULWARK-NESTED: unavailable');

    const info = await driver.processInfo(A.id);
    expect(info).not.toBeNull();
    const user = vmUserName(A.id);
    expect(info?.user).toBe(user);
    expect(info?.uid).toBe(Number(sh('id', ['-u', user]).trim()));
    expect(info?.uid).not.toBe(0);
    const status = procStatus(info!.pid);
    expect(status).toMatch(/^Seccomp:\s+2$/m);
    expect(status).toMatch(/^NoNewPrivs:\s+1$/m);
    expect(status).toMatch(/^Groups:\s*$/m); // no supplementary groups
    expect(status).toMatch(/^CapEff:\s+0+$/m);
    // What the compliance check `escape-hardening` reads of a real guest (docs/compliance.md).
    const confined = await processConfinement('/proc', info!.pid);
    expect(confined).toMatchObject({ uid: info?.uid, seccomp: 2 });
    expect(confined?.cgroup).toMatch(new RegExp(`/vm-${A.id}$`));

    const argv = procCmdline(info!.pid);
    expect(argv[argv.indexOf('-cpu') + 1]).toMatch(/-vmx,-svm$/);
    expect(argv[argv.indexOf('-sandbox') + 1]).toBe(SANDBOX);
    expect(argv).toContain('-nodefaults');
    expect(argv.join(' ')).not.toContain('fw,cfg works'); // user data is not on the command line

    // The memory limit is the documented formula: flavor RAM + 256 MiB + RAM/64.
    const cg = await driver.cgroups.read(`vm-${A.id}`);
    expect(cg?.memoryBytes).toBe((256 + 256 + 4) * MiB);
    expect(cg?.memoryBytes).toBe(memoryLimitBytes(A.memoryMiB));
    expect(cg?.cpuQuotaUs).toBe(100_000); // one CPU per vCPU
    expect(cg?.cpuPeriodUs).toBe(100_000);
    expect(cg?.pidsMax).toBeGreaterThan(0);
    expect(cg?.procs).toContain(info!.pid);
    expect(cgroupOf(info!.pid)).toContain(`bulwark-test/vm-${A.id}`);

    const L = driver.layout(A.id);
    const dir = lstatSync(L.dir);
    expect(dir.mode & 0o777).toBe(0o700);
    expect(dir.uid).toBe(info!.uid);
    expect(lstatSync(L.overlay).mode & 0o777).toBe(0o600);
    expect(statSync(base).mode & 0o777).toBe(0o711);
    expect(lstatSync(L.hostDir).uid).toBe(0);
    expect(lstatSync(L.hostDir).mode & 0o777).toBe(0o700);
  });

  it("a second guest's user cannot read the first guest's disk or reach its sockets", async () => {
    await define(B);
    const L = driver.layout(A.id);
    const userB = vmUserName(B.id);
    const cat = runAs(userB, ['cat', L.overlay]);
    expect(cat.status).not.toBe(0);
    expect(cat.out).toMatch(/Permission denied/);
    const probe = (path: string) =>
      runAs(userB, [
        process.execPath,
        '-e',
        `require('net').connect(${JSON.stringify(path)}).on('connect',()=>{console.log('CONNECTED');process.exit(0)}).on('error',e=>{console.log(e.code);process.exit(3)})`,
      ]);
    for (const sock of [L.qmpSocket, L.consoleSocket]) {
      const r = probe(sock);
      expect(r.out.trim()).toBe('EACCES');
      expect(r.status).toBe(3);
    }
    // Nor list which guests exist.
    expect(runAs(userB, ['ls', base]).out).toMatch(/Permission denied/);
    // The guest's own user can reach its own directory (QEMU opens its files by path).
    expect(runAs(vmUserName(A.id), ['ls', L.dir]).status).toBe(0);
  });

  it('pause, unpause, reboot, suspend, resume, shutdown and start', async () => {
    const since = events.length;
    const evs = () =>
      events
        .slice(since)
        .filter((e) => e.id === A.id)
        .map((e) => e.event);

    await driver.pause(A.id);
    expect(await driver.state(A.id)).toBe('paused');
    await driver.unpause(A.id);
    expect(await driver.state(A.id)).toBe('running');
    await waitFor('STOP and RESUME events', async () => evs().includes('STOP') && evs().includes('RESUME'));

    await driver.reboot(A.id);
    await waitLog(A.id, 'BULWARK-GUEST-READY', 2);
    expect(evs()).toContain('RESET');

    const pidBefore = (await driver.processInfo(A.id))!.pid;
    await driver.suspend(A.id);
    expect(await driver.state(A.id)).toBe('suspended');
    expect(await driver.processInfo(A.id)).toBeNull();
    expect(pidsMentioning(`${driver.layout(A.id).dir}/`)).toEqual([]);
    expect(await driver.cgroups.exists(`vm-${A.id}`)).toBe(false);
    expect(existsSync(driver.layout(A.id).savedState)).toBe(true);
    await expect(driver.start(A.id)).rejects.toThrow(/suspended/);

    await driver.resume(A.id);
    expect(await driver.state(A.id)).toBe('running');
    const pidAfter = (await driver.processInfo(A.id))!.pid;
    expect(pidAfter).not.toBe(pidBefore);
    expect(existsSync(driver.layout(A.id).savedState)).toBe(false);
    expect(await driver.cgroups.read(`vm-${A.id}`)).toMatchObject({ procs: [pidAfter] });
    // The same guest carries on (no new boot): its shell answers on the console socket.
    await typeOnConsole(driver.layout(A.id).consoleSocket, 'echo resumed-$((20+22))\n');
    await waitLog(A.id, 'resumed-42');
    expect(count(await log(A.id), 'BULWARK-GUEST-READY')).toBe(2);

    // The test guest ignores ACPI, so this is the forced path after the timeout.
    await driver.shutdown(A.id, { timeoutMs: 1500 });
    expect(await driver.state(A.id)).toBe('shutoff');
    expect(await driver.processInfo(A.id)).toBeNull();
    expect(await driver.cgroups.exists(`vm-${A.id}`)).toBe(false);
    expect(evs()).toContain('EXITED');

    await driver.define(A); // as the compute domain does before each start: keeps the disk
    await driver.start(A.id);
    await waitLog(A.id, 'BULWARK-GUEST-READY', 3);
    expect(await driver.state(A.id)).toBe('running');
  });

  it('a new driver adopts running guests after close() and kills an unknown orphan', async () => {
    const O = await define(biosSpec({ name: 'orphan' }));
    await driver.start(O.id);
    const pidA = (await driver.processInfo(A.id))!.pid;
    const pidO = (await driver.processInfo(O.id))!.pid;
    await driver.close(); // a daemon restart: guests keep running
    expect(procStatus(pidA)).toMatch(/State:\s+[RS]/);

    driver = await newDriver();
    track(driver);
    const result = await driver.reconcile([A.id, B.id]);
    expect(result.adopted).toEqual([A.id]);
    expect(result.vanished).toEqual([]);
    expect(result.orphansKilled).toEqual([O.id]);
    expect(existsSync(`/proc/${pidO}`)).toBe(false);
    expect(userExists(vmUserName(O.id))).toBe(false);
    expect(existsSync(driver.layout(O.id).dir)).toBe(false);
    expect(await driver.cgroups.exists(`vm-${O.id}`)).toBe(false);

    // QMP works again on the adopted guest.
    expect((await driver.processInfo(A.id))?.pid).toBe(pidA);
    await driver.pause(A.id);
    expect(await driver.state(A.id)).toBe('paused');
    await driver.unpause(A.id);
    expect(await driver.state(A.id)).toBe('running');
  });

  it('reports a guest whose QEMU died as crashed, and as vanished on reconcile', async () => {
    const since = events.length;
    const { pid } = (await driver.processInfo(A.id))!;
    process.kill(pid, 'SIGKILL');
    await waitFor('EXITED event', async () =>
      events.slice(since).some((e) => e.id === A.id && e.event === 'EXITED'),
    );
    expect(await driver.state(A.id)).toBe('crashed');
    expect(await driver.cgroups.exists(`vm-${A.id}`)).toBe(false);
    const again = await newDriver();
    expect(await again.reconcile([A.id, B.id])).toEqual({
      adopted: [],
      vanished: [A.id],
      orphansKilled: [],
      tpmLost: [],
    });
    await again.close();
    await driver.start(A.id);
    expect(await driver.state(A.id)).toBe('running');
  });

  it('undefine leaves no process, user, group, cgroup or directory', async () => {
    for (const g of [A, B]) {
      const L = driver.layout(g.id);
      await driver.undefine(g.id);
      await driver.undefine(g.id); // idempotent
      expect(pidsMentioning(`${L.dir}/`)).toEqual([]);
      expect(userExists(vmUserName(g.id))).toBe(false);
      expect(groupExists(vmUserName(g.id))).toBe(false);
      expect(await driver.cgroups.exists(`vm-${g.id}`)).toBe(false);
      for (const p of driver.cgroups.paths(`vm-${g.id}`)) expect(existsSync(p)).toBe(false);
      expect(existsSync(L.dir)).toBe(false);
      expect(existsSync(L.hostDir)).toBe(false);
      expect(await driver.state(g.id)).toBe('missing');
    }
  });

  it('a guest that powers itself off is shut off, not crashed', async () => {
    const since = events.length;
    const P = await define(biosSpec({ name: 'poweroff', fwCfg: { 'opt/org.bulwark/run': 'poweroff -f' } }));
    await driver.start(P.id);
    await waitFor(
      'EXITED',
      async () => events.slice(since).some((e) => e.id === P.id && e.event === 'EXITED'),
      45_000,
    );
    const seen = events
      .slice(since)
      .filter((e) => e.id === P.id)
      .map((e) => e.event);
    expect(seen).toContain('SHUTDOWN');
    expect(await driver.state(P.id)).toBe('shutoff');
    expect(await driver.processInfo(P.id)).toBeNull();
    expect(await driver.cgroups.exists(`vm-${P.id}`)).toBe(false);
    await driver.undefine(P.id);
  });

  it('Secure Boot: a signed UEFI guest boots with Secure Boot enabled', async () => {
    const S = await define(
      biosSpec({
        name: 'sb-signed',
        machine: 'q35',
        firmware: { type: 'uefi', secureBoot: true },
        bootDisk: { imagePath: guestImage('uefi-signed.raw'), imageFormat: 'raw', sizeGiB: 0 },
      }),
    );
    await driver.start(S.id);
    await waitLog(S.id, 'BULWARK-SECUREBOOT:', 1, 60_000);
    expect(await log(S.id)).toContain('BULWARK-SECUREBOOT: enabled');
    const argv = procCmdline((await driver.processInfo(S.id))!.pid);
    expect(argv[argv.indexOf('-machine') + 1]).toMatch(/^q35,.*smm=on/);
    expect(argv).toContain('driver=cfi.pflash01,property=secure,value=on');
    await driver.undefine(S.id);
  });

  it('Secure Boot: an unsigned UEFI guest never boots', async () => {
    const U = await define(
      biosSpec({
        name: 'sb-unsigned',
        machine: 'q35',
        firmware: { type: 'uefi', secureBoot: true },
        bootDisk: { imagePath: guestImage('uefi-unsigned.raw'), imageFormat: 'raw', sizeGiB: 0 },
      }),
    );
    await driver.start(U.id);
    // The firmware refuses the kernel; give it what the signed one needed, and more.
    const deadline = Date.now() + 25_000;
    while (Date.now() < deadline && !/Access Denied/i.test(await log(U.id)))
      await new Promise((r) => setTimeout(r, 500));
    await new Promise((r) => setTimeout(r, 3000));
    const text = await log(U.id);
    expect(text).toMatch(/Access Denied/i);
    expect(text).not.toContain('BULWARK-GUEST-READY');
    expect(text).not.toContain('Linux version');
    await driver.undefine(U.id);
  });

  it('a bad image fails with a clear error and leaves nothing behind', async () => {
    const junk = join(base, 'junk.qcow2');
    writeFileSync(junk, 'this is not a disk image'.repeat(100));
    const bad = biosSpec({ bootDisk: { imagePath: junk, imageFormat: 'qcow2', sizeGiB: 1 } });
    ids.add(bad.id);
    const err = await driver.define(bad).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BulwarkError);
    expect((err as BulwarkError).kind).toBe('BadRequest');
    expect((err as Error).message).toMatch(/not a usable qcow2 image/);
    expect(userExists(vmUserName(bad.id))).toBe(false);
    expect(existsSync(driver.layout(bad.id).dir)).toBe(false);
    expect(existsSync(driver.layout(bad.id).hostDir)).toBe(false);
    expect(await driver.state(bad.id)).toBe('missing');
  });

  it('QEMU exiting during start-up rejects with its stderr and leaves no process or cgroup', async () => {
    // QEMU cannot open the overlay (gone after define): it exits during start-up, saying why.
    const F = await define(biosSpec());
    unlinkSync(driver.layout(F.id).overlay);
    const err = await driver.start(F.id).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BulwarkError);
    expect((err as Error).message).toMatch(/could not start: QEMU exited/);
    expect((err as Error).message).toMatch(/disk\.qcow2/);
    expect(pidsMentioning(`${driver.layout(F.id).dir}/`)).toEqual([]);
    expect(await driver.cgroups.exists(`vm-${F.id}`)).toBe(false);
    expect(await driver.state(F.id)).toBe('shutoff');
    await driver.undefine(F.id);
    expect(userExists(vmUserName(F.id))).toBe(false);
    expect(existsSync(driver.layout(F.id).dir)).toBe(false);
  });
});

/** Types on the guest's serial console through its socket (as an interactive console would). */
function typeOnConsole(path: string, text: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const s = connect(path, () => {
      s.write(text, () => setTimeout(() => s.end(() => resolve()), 300));
    });
    s.on('error', reject);
  });
}
