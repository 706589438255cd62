import type { HardeningFacts } from '../host/hardening.js';
import { type Evidence, notApplicable, type Offender, type Verdict } from './verdict.js';

/**
 * Host hardening verdicts (docs/compliance.md, "Host hardening") from the
 * readings host/hardening.ts takes on one host. Pure: the same facts give the
 * same verdicts wherever they were read.
 */

/** The kernel security parameters of the baseline (KSPP/CIS values) and what each must be. */
export const SYSCTL_BASELINE: readonly { name: string; want: string; ok: (v: number) => boolean }[] = [
  { name: 'kernel.kptr_restrict', want: '>= 1', ok: (v) => v >= 1 },
  { name: 'kernel.dmesg_restrict', want: '1', ok: (v) => v === 1 },
  { name: 'kernel.unprivileged_bpf_disabled', want: '>= 1', ok: (v) => v >= 1 },
  { name: 'kernel.yama.ptrace_scope', want: '>= 1', ok: (v) => v >= 1 },
  { name: 'kernel.randomize_va_space', want: '2', ok: (v) => v === 2 },
  { name: 'fs.protected_hardlinks', want: '1', ok: (v) => v === 1 },
  { name: 'fs.protected_symlinks', want: '1', ok: (v) => v === 1 },
  { name: 'fs.suid_dumpable', want: '0', ok: (v) => v === 0 },
  { name: 'net.ipv4.conf.all.accept_redirects', want: '0', ok: (v) => v === 0 },
  { name: 'net.ipv4.conf.all.send_redirects', want: '0', ok: (v) => v === 0 },
  { name: 'net.ipv4.conf.all.accept_source_route', want: '0', ok: (v) => v === 0 },
  { name: 'net.ipv4.conf.all.rp_filter', want: '>= 1', ok: (v) => v >= 1 },
  { name: 'net.ipv4.conf.all.log_martians', want: '1', ok: (v) => v === 1 },
  { name: 'net.ipv4.tcp_syncookies', want: '1', ok: (v) => v === 1 },
  { name: 'net.ipv6.conf.all.accept_redirects', want: '0', ok: (v) => v === 0 },
];

/** Ports nothing on a hypervisor host should listen on: clear-text or needless services. */
export const UNNEEDED_PORTS: readonly { proto: 'tcp' | 'udp'; port: number; service: string }[] = [
  { proto: 'tcp', port: 21, service: 'ftp' },
  { proto: 'tcp', port: 23, service: 'telnet' },
  { proto: 'udp', port: 69, service: 'tftp' },
  { proto: 'tcp', port: 111, service: 'rpcbind' },
  { proto: 'udp', port: 111, service: 'rpcbind' },
  { proto: 'tcp', port: 512, service: 'rexec' },
  { proto: 'tcp', port: 513, service: 'rlogin' },
  { proto: 'tcp', port: 514, service: 'rsh' },
  { proto: 'tcp', port: 631, service: 'cups' },
  { proto: 'udp', port: 5353, service: 'mdns (avahi)' },
];

/** The guide's audit watches, Bulwark's data dir standing in for libvirt's. */
export const auditWatches = (dataDir: string): string[] => [
  dataDir,
  '/etc/shadow',
  '/var/log/auth.log',
  '/etc/nftables.conf',
];

type HostVerdict = { verdict: Verdict } & Evidence;
const off = (host: string, detail: string): Offender => ({ type: 'host', id: host, name: host, detail });
const result = (host: string, problems: string[], checked: string, observed: Record<string, unknown>) => ({
  verdict: (problems.length ? 'fail' : 'pass') as Verdict,
  checked,
  reason: problems.length ? problems.join('; ') : 'as the baseline requires',
  offenders: problems.map((p) => off(host, p)),
  observed,
});

export const HOST_CHECKS: Record<
  string,
  (host: string, f: HardeningFacts, ctx: { dataDir: string }) => HostVerdict
> = {
  'host-sysctls': (host, f) => {
    const problems = SYSCTL_BASELINE.flatMap(({ name, want, ok }) => {
      const v = f.sysctls[name];
      if (v === null || v === undefined) return [`${name} is absent (want ${want})`];
      return ok(Number(v)) ? [] : [`${name} = ${v} (want ${want})`];
    });
    return result(host, problems, `${SYSCTL_BASELINE.length} sysctls under /proc/sys`, {
      sysctls: f.sysctls,
    });
  },
  'host-ssh-key-only': (host, f) => {
    if (!f.sshd) return notApplicable('/etc/ssh/sshd_config', 'sshd is not installed on this host');
    const s = f.sshd.settings;
    const problems: string[] = [];
    // sshd's defaults: PasswordAuthentication and KbdInteractiveAuthentication yes, PermitRootLogin prohibit-password.
    if ((s.passwordauthentication ?? 'yes') !== 'no') problems.push('PasswordAuthentication is not no');
    const kbd = s.kbdinteractiveauthentication ?? s.challengeresponseauthentication ?? 'yes';
    if (kbd !== 'no') problems.push('KbdInteractiveAuthentication is not no');
    const root = s.permitrootlogin ?? 'prohibit-password';
    if (!['no', 'prohibit-password', 'without-password'].includes(root))
      problems.push(`PermitRootLogin is ${root}`);
    return result(host, problems, f.sshd.files.join(', '), { sshd: s });
  },
  'host-auditd': (host, f, { dataDir }) => {
    const problems: string[] = [];
    if (!f.auditd.running) problems.push('auditd is not running');
    const watched = (path: string) =>
      f.auditd.rules.some((r) => {
        const m = /(?:^|\s)-w\s+(\S+)/.exec(r);
        return (
          m?.[1] !== undefined && m[1].replace(/\/+$/, '') === path.replace(/\/+$/, '') && /-p\s+\S*w/.test(r)
        );
      });
    for (const p of auditWatches(dataDir)) if (!watched(p)) problems.push(`no -w ${p} -p wa rule`);
    return result(
      host,
      problems,
      `auditd process; ${f.auditd.ruleFiles.join(', ') || 'no audit rule files'}`,
      {
        auditd_running: f.auditd.running,
        rule_files: f.auditd.ruleFiles,
        rules: f.auditd.rules.length,
      },
    );
  },
  'host-nested-virt': (host, f) => {
    const loaded = Object.entries(f.nested).filter(([, v]) => v !== null);
    if (loaded.length === 0)
      return notApplicable(
        '/sys/module/kvm_intel, /sys/module/kvm_amd',
        'neither kvm_intel nor kvm_amd is loaded on this host (no hardware virtualisation to nest)',
      );
    const problems = loaded.filter(([, v]) => v === 'Y' || v === '1').map(([m, v]) => `${m} nested = ${v}`);
    return result(host, problems, loaded.map(([m]) => `/sys/module/${m}/parameters/nested`).join(', '), {
      nested: f.nested,
    });
  },
  'host-mac-seccomp': (host, f) => {
    const problems: string[] = [];
    if (!f.seccompActions?.split(/\s+/).includes('kill_process'))
      problems.push('seccomp filters are not available (no kernel/seccomp/actions_avail)');
    if (f.apparmor !== 'Y')
      problems.push(`AppArmor is not enabled (module parameter: ${f.apparmor ?? 'absent'})`);
    return result(
      host,
      problems,
      '/proc/sys/kernel/seccomp/actions_avail, /sys/module/apparmor/parameters/enabled',
      {
        seccomp_actions: f.seccompActions,
        apparmor: f.apparmor,
      },
    );
  },
  'host-hardened-kernel': (host, f) => {
    if (f.cmdline === null)
      return notApplicable('/proc/cmdline', 'the kernel command line could not be read');
    const args = f.cmdline.split(/\s+/);
    const problems: string[] = [];
    if (!args.includes('vsyscall=none')) problems.push('vsyscall=none is not on the kernel command line');
    if (args.includes('mitigations=off'))
      problems.push('mitigations=off turns CPU vulnerability mitigations off');
    return result(host, problems, '/proc/cmdline', { cmdline: f.cmdline });
  },
  'host-unneeded-services': (host, f) => {
    const problems = UNNEEDED_PORTS.filter((u) =>
      f.listening.some((l) => l.proto === u.proto && l.port === u.port),
    ).map((u) => `${u.service} listens on ${u.proto}/${u.port}`);
    return result(host, problems, `${f.listening.length} listening sockets in /proc/net`, {
      listening: f.listening.map((l) => `${l.proto}/${l.port}`),
    });
  },
};
