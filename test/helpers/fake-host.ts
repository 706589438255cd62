import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { SYSCTL_BASELINE } from '../../src/compliance/host-checks.js';
import type { HostRoots } from '../../src/host/hardening.js';

/** The baseline's safe value for each sysctl, as a hardened host has it. */
export const HARDENED_SYSCTLS: Record<string, string> = Object.fromEntries(
  SYSCTL_BASELINE.map((s) => [s.name, s.name === 'kernel.kptr_restrict' ? '2' : s.want.replace('>= ', '')]),
);

/**
 * A fake host in a temp dir: proc/, sys/ and etc/ trees laid out as the
 * kernel and Debian do, hardened as the baseline wants unless a test changes
 * a file (host/hardening.ts reads it through HostRoots).
 */
export async function fakeHost(dataDir = '/var/lib/bulwark') {
  const root = await mkdtemp(join(tmpdir(), 'bw-host-'));
  const roots: HostRoots = { proc: join(root, 'proc'), sys: join(root, 'sys'), etc: join(root, 'etc') };
  const put = async (path: string, text: string) => {
    await mkdir(dirname(join(root, path)), { recursive: true });
    await writeFile(join(root, path), text);
  };
  const sysctl = (name: string, value: string) => put(`proc/sys/${name.split('.').join('/')}`, `${value}\n`);
  for (const [n, v] of Object.entries(HARDENED_SYSCTLS)) await sysctl(n, v);
  await put('proc/cmdline', 'BOOT_IMAGE=/vmlinuz root=/dev/vda1 ro vsyscall=none quiet\n');
  await put(
    'proc/sys/kernel/seccomp/actions_avail',
    'kill_process kill_thread trap errno user_notif trace log allow\n',
  );
  await put('sys/module/apparmor/parameters/enabled', 'Y\n');
  await put('sys/module/kvm_intel/parameters/nested', 'N\n');
  await put('etc/ssh/sshd_config', 'Include /etc/ssh/sshd_config.d/*.conf\nPermitRootLogin no\n');
  await put(
    'etc/ssh/sshd_config.d/10-bulwark.conf',
    'PasswordAuthentication no\nKbdInteractiveAuthentication no\n',
  );
  await put('proc/812/comm', 'auditd\n');
  await put(
    'etc/audit/rules.d/bulwark.rules',
    [
      `-w ${dataDir}/ -p wa -k vm_changes`,
      '-w /var/log/auth.log -p wa -k auth_log',
      '-w /etc/shadow -p wa -k shadow_changes',
      '-w /etc/nftables.conf -p wa -k firewall_changes',
      '',
    ].join('\n'),
  );
  const header =
    '  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n';
  // Only sshd (22) listens, plus a connected (not listening) socket to 23 that must not count.
  await put(
    'proc/net/tcp',
    `${header}   0: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1\n` +
      `   1: 0100007F:9C40 0100007F:0017 01 00000000:00000000 00:00000000 00000000     0        0 2 1\n`,
  );
  await put('proc/net/tcp6', header);
  await put('proc/net/udp', header);
  await put('proc/net/udp6', header);
  return {
    root,
    roots,
    put,
    sysctl,
    /** A listening socket on `port` (TCP LISTEN or bound UDP). */
    listen: (proto: 'tcp' | 'udp', port: number) =>
      put(
        `proc/net/${proto}`,
        `${header}   0: 00000000:${port.toString(16).toUpperCase().padStart(4, '0')} 00000000:0000 ${proto === 'tcp' ? '0A' : '07'} 00000000:00000000 00:00000000 00000000     0        0 3 1\n`,
      ),
    /** A guest process as /proc shows it: uid, seccomp mode, cgroup v2 path. */
    process: async (pid: number, o: { uid: number; seccomp: number; cgroup: string }) => {
      await put(
        `proc/${pid}/status`,
        `Name:\tqemu-system-x86\nUid:\t${o.uid}\t${o.uid}\t${o.uid}\t${o.uid}\nSeccomp:\t${o.seccomp}\n`,
      );
      await put(`proc/${pid}/cgroup`, `0::${o.cgroup}\n`);
      await put(`proc/${pid}/comm`, 'qemu-system-x86\n');
    },
    remove: (path: string) => rm(join(root, path), { recursive: true, force: true }),
    cleanup: () => rm(root, { recursive: true, force: true }),
  };
}
