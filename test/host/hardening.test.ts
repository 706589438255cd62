import { readFileSync } from 'node:fs';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { HOST_CHECKS, SYSCTL_BASELINE } from '../../src/compliance/host-checks.js';
import { probeHardening, REAL_ROOTS } from '../../src/host/hardening.js';
import { fakeHost } from '../helpers/fake-host.js';

const NAMES = SYSCTL_BASELINE.map((s) => s.name);
const DATA = '/var/lib/bulwark';
const judge = async (roots: Parameters<typeof probeHardening>[0]) => {
  const facts = await probeHardening(roots, NAMES);
  return Object.fromEntries(
    Object.entries(HOST_CHECKS).map(([id, check]) => [id, check('h1', facts, { dataDir: DATA })]),
  );
};

/** Host hardening on a prepared fake /proc, /sys and /etc: each reading flipped flips its verdict. */
describe('host hardening checks on a fake host tree', () => {
  let host: Awaited<ReturnType<typeof fakeHost>>;
  beforeEach(async () => {
    host = await fakeHost(DATA);
  });
  afterEach(async () => host?.cleanup());

  it('a hardened host passes every check', async () => {
    const v = await judge(host.roots);
    for (const [id, r] of Object.entries(v)) expect([id, r.verdict, r.offenders]).toEqual([id, 'pass', []]);
  });

  it('sysctls: a weak or absent parameter fails, naming it and the value wanted', async () => {
    await host.sysctl('kernel.kptr_restrict', '0');
    await host.remove('proc/sys/kernel/yama');
    const r = (await judge(host.roots))['host-sysctls'];
    expect(r?.verdict).toBe('fail');
    expect(r?.offenders.map((o) => o.detail)).toEqual([
      'kernel.kptr_restrict = 0 (want >= 1)',
      'kernel.yama.ptrace_scope is absent (want >= 1)',
    ]);
    await host.sysctl('kernel.kptr_restrict', '1');
    await host.sysctl('kernel.yama.ptrace_scope', '1');
    expect((await judge(host.roots))['host-sysctls']?.verdict).toBe('pass');
  });

  it('ssh: passwords allowed by an included file or by default fail; no sshd is not applicable', async () => {
    await host.put('etc/ssh/sshd_config.d/10-bulwark.conf', 'PasswordAuthentication yes\n');
    let r = (await judge(host.roots))['host-ssh-key-only'];
    expect(r?.verdict).toBe('fail');
    expect(r?.reason).toMatch(/PasswordAuthentication is not no; KbdInteractiveAuthentication is not no/);
    // First value wins, as in sshd: an earlier include overrides a later line.
    await host.put(
      'etc/ssh/sshd_config.d/10-bulwark.conf',
      'PasswordAuthentication no\nKbdInteractiveAuthentication no\n',
    );
    await host.put(
      'etc/ssh/sshd_config',
      'Include sshd_config.d/*.conf\nPasswordAuthentication yes\nPermitRootLogin yes\n',
    );
    r = (await judge(host.roots))['host-ssh-key-only'];
    expect(r?.offenders.map((o) => o.detail)).toEqual(['PermitRootLogin is yes']);
    await host.remove('etc/ssh');
    r = (await judge(host.roots))['host-ssh-key-only'];
    expect(r).toMatchObject({ verdict: 'not_applicable', reason: 'sshd is not installed on this host' });
  });

  it('auditd: not running, or a guide watch missing, fails', async () => {
    await host.put('etc/audit/rules.d/bulwark.rules', '-w /etc/shadow -p wa -k shadow_changes\n');
    await host.remove('proc/812');
    const r = (await judge(host.roots))['host-auditd'];
    expect(r?.verdict).toBe('fail');
    expect(r?.offenders.map((o) => o.detail)).toEqual([
      'auditd is not running',
      `no -w ${DATA} -p wa rule`,
      'no -w /var/log/auth.log -p wa rule',
      'no -w /etc/nftables.conf -p wa rule',
    ]);
  });

  it('nested virtualisation on fails; no KVM module is not applicable', async () => {
    await host.put('sys/module/kvm_intel/parameters/nested', 'Y\n');
    expect((await judge(host.roots))['host-nested-virt']?.offenders[0]?.detail).toBe('kvm_intel nested = Y');
    await host.remove('sys/module/kvm_intel');
    expect((await judge(host.roots))['host-nested-virt']?.verdict).toBe('not_applicable');
  });

  it('AppArmor off or no seccomp fails; a kernel without vsyscall=none fails; telnet listening fails', async () => {
    await host.put('sys/module/apparmor/parameters/enabled', 'N\n');
    await host.put('proc/cmdline', 'root=/dev/vda1 mitigations=off\n');
    await host.listen('tcp', 23);
    const v = await judge(host.roots);
    expect(v['host-mac-seccomp']?.offenders.map((o) => o.detail)).toEqual([
      'AppArmor is not enabled (module parameter: N)',
    ]);
    expect(v['host-hardened-kernel']?.offenders.map((o) => o.detail)).toEqual([
      'vsyscall=none is not on the kernel command line',
      'mitigations=off turns CPU vulnerability mitigations off',
    ]);
    expect(v['host-unneeded-services']?.offenders.map((o) => o.detail)).toEqual(['telnet listens on tcp/23']);
  });
});

/** The same probe on this very machine: its readings match the kernel's files, and every check decides. */
describe('host hardening checks on the real host', () => {
  it('reads the real /proc, /sys and /etc and gives each check a verdict with evidence', async () => {
    const facts = await probeHardening(REAL_ROOTS, NAMES);
    expect(facts.sysctls['kernel.randomize_va_space']).toBe(
      readFileSync('/proc/sys/kernel/randomize_va_space', 'utf8').trim(),
    );
    expect(facts.cmdline).toBe(readFileSync('/proc/cmdline', 'utf8').trim());
    // This test's own process's parent listens nowhere in particular, but the file parses: every entry is sane.
    for (const l of facts.listening) expect(l.port).toBeGreaterThanOrEqual(0);
    for (const [id, check] of Object.entries(HOST_CHECKS)) {
      const r = check('local', facts, { dataDir: DATA });
      expect(['pass', 'fail', 'not_applicable'], id).toContain(r.verdict);
      expect(r.checked.length, id).toBeGreaterThan(0);
      if (r.verdict === 'fail') expect(r.offenders.length, id).toBeGreaterThan(0);
    }
    // A sysctl this kernel has, read and judged as the baseline says.
    const aslr = HOST_CHECKS['host-sysctls']?.('local', facts, { dataDir: DATA });
    const bad = aslr?.offenders.some((o) => o.detail.startsWith('kernel.randomize_va_space'));
    expect(bad).toBe(facts.sysctls['kernel.randomize_va_space'] !== '2');
  });
});
