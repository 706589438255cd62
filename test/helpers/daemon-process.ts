import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);
export const REPO = resolve(import.meta.dirname, '..', '..');
const BIN = join(REPO, 'bin', 'bulwark.js');

/** The real `bulwark serve` in a child process, as a user would run it. */
export interface DaemonProcess {
  dataDir: string;
  /** The daemon's own network namespace: its nftables tables, taps and routes touch nothing else. */
  netns: string;
  url: string;
  output: string;
  child: ChildProcess;
  env: NodeJS.ProcessEnv;
  /** Runs the real openstack CLI against this daemon (killed after `timeoutMs`, default 120 s). */
  openstack(
    args: string[],
    env?: NodeJS.ProcessEnv,
    timeoutMs?: number,
  ): Promise<{ stdout: string; stderr: string; code: number }>;
  bulwark(args: string[], env?: NodeJS.ProcessEnv): Promise<{ stdout: string; stderr: string; code: number }>;
  /** The openstack CLI's stdout; a non-zero exit throws with its stderr. */
  os(...args: string[]): Promise<string>;
  /** The same with `-f json`, parsed. */
  osJson(...args: string[]): Promise<any>;
  kill(signal?: NodeJS.Signals): Promise<void>;
}

async function exec(cmd: string, args: string[], env: NodeJS.ProcessEnv, timeout = 120_000) {
  try {
    const r = await run(cmd, args, { env, timeout, maxBuffer: 16 * 1024 * 1024 });
    return { stdout: r.stdout, stderr: r.stderr, code: 0 };
  } catch (e) {
    const err = e as { stdout?: string; stderr?: string; code?: number };
    return {
      stdout: err.stdout ?? '',
      stderr: err.stderr ?? '',
      code: typeof err.code === 'number' ? err.code : 1,
    };
  }
}

/** Makes (or reuses) a network namespace with loopback up. */
export async function ensureNetns(name: string): Promise<void> {
  if (!existsSync(`/run/netns/${name}`)) await run('ip', ['netns', 'add', name]);
  await run('ip', ['-n', name, 'link', 'set', 'lo', 'up']);
}

export async function removeNetns(name: string): Promise<void> {
  await run('ip', ['netns', 'del', name]).catch(() => undefined);
}

/**
 * Starts `bulwark serve` in its own network namespace (made unless `netns`
 * names one, e.g. to restart on the same data dir), so parallel daemons never
 * share an nftables table, a tap or a route.
 */
export async function startDaemonProcess(
  opts: {
    dataDir?: string;
    extraArgs?: string[];
    netns?: string;
    adminMfa?: boolean;
    /** More environment for the daemon (e.g. a PATH with a wrapped tool, test/e2e/faults.test.ts). */
    env?: NodeJS.ProcessEnv;
    /** How long it may take to say it is up (a restart reconciling guests on a loaded host); default 60 s. */
    startTimeoutMs?: number;
  } = {},
): Promise<DaemonProcess> {
  if (!existsSync(join(REPO, 'dist', 'cli', 'main.js')))
    throw new Error('dist/ is missing: run `npm run build` first');
  const dataDir = opts.dataDir ?? mkdtempSync(join(tmpdir(), 'bulwark-e2e-'));
  const netns = opts.netns ?? `bwe2e-${randomBytes(4).toString('hex')}`;
  await ensureNetns(netns);
  // nsenter execs the command, so the child is the daemon itself (signals reach it). Not `ip netns
  // exec`: it remounts /sys, which hides the cgroup hierarchies the driver confines guests with.
  const child = spawn(
    'nsenter',
    [
      `--net=/run/netns/${netns}`,
      '--',
      process.execPath,
      BIN,
      'serve',
      '--data-dir',
      dataDir,
      '--listen',
      '127.0.0.1:0',
      // Suites about other rooms log the admin in with a password only; test/e2e/openstack-mfa.test.ts keeps it on.
      ...(opts.adminMfa ? [] : ['--no-admin-mfa-required']),
      ...(opts.extraArgs ?? []),
    ],
    {
      stdio: ['ignore', 'pipe', 'pipe'],
      // The KVM probe boots a real kernel: on hosts where KVM only looks usable, that picks TCG.
      env: { ...process.env, BULWARK_PROBE_KERNEL: join(REPO, 'guests', 'out', 'vmlinuz'), ...opts.env },
    },
  );
  let output = '';
  const url = await new Promise<string>((res, rej) => {
    const timer = setTimeout(
      () => rej(new Error(`daemon did not start:\n${output}`)),
      opts.startTimeoutMs ?? 60_000,
    );
    const onData = (d: Buffer) => {
      output += d.toString();
      const m = /Bulwark is up at (\S+)/.exec(output);
      if (m?.[1]) {
        clearTimeout(timer);
        res(m[1]);
      }
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', onData);
    child.once('exit', (code) => {
      clearTimeout(timer);
      rej(new Error(`daemon exited with ${code}:\n${output}`));
    });
  }).catch(async (err: unknown) => {
    // A daemon that never came up leaves nothing behind that this call made.
    child.kill('SIGKILL');
    if (!opts.netns) await removeNetns(netns);
    if (!opts.dataDir) rmSync(dataDir, { recursive: true, force: true });
    throw err;
  });
  const env = {
    ...process.env,
    OS_CLIENT_CONFIG_FILE: join(dataDir, 'clouds.yaml'),
    OS_CLOUD: 'bulwark',
    PYTHONWARNINGS: 'ignore',
  };
  const inNetns = (cmd: string, args: string[], e: NodeJS.ProcessEnv, timeoutMs?: number) =>
    exec('nsenter', [`--net=/run/netns/${netns}`, '--', cmd, ...args], e, timeoutMs);
  const os = async (...args: string[]) => {
    const r = await inNetns('openstack', args, env);
    if (r.code !== 0) throw new Error(`openstack ${args.join(' ')} failed (${r.code}): ${r.stderr}`);
    return r.stdout;
  };
  return {
    dataDir,
    netns,
    url,
    output,
    child,
    env,
    openstack: (args, extra, timeoutMs) => inNetns('openstack', args, { ...env, ...extra }, timeoutMs),
    os,
    osJson: async (...args) => JSON.parse(await os(...args, '-f', 'json')),
    bulwark: (args, extra) => inNetns(process.execPath, [BIN, ...args], { ...env, ...extra }),
    kill: (signal = 'SIGTERM') =>
      new Promise<void>((res) => {
        if (child.exitCode !== null || child.signalCode !== null) return res();
        child.once('exit', () => res());
        child.kill(signal);
      }),
  };
}

/** The openstack CLI's environment for `user`/`password` scoped to `project` on `d` (no clouds.yaml). */
export const passwordCliEnv = (
  d: Pick<DaemonProcess, 'url' | 'dataDir'>,
  user: string,
  password: string,
  project = 'admin',
): Record<string, string> => ({
  OS_CLOUD: '',
  OS_CLIENT_CONFIG_FILE: '',
  OS_AUTH_URL: `${d.url}/identity/v3`,
  OS_USERNAME: user,
  OS_PASSWORD: password,
  OS_PROJECT_NAME: project,
  OS_USER_DOMAIN_NAME: 'Default',
  OS_PROJECT_DOMAIN_NAME: 'Default',
  OS_CACERT: join(d.dataDir, 'pki', 'ca.crt'),
  OS_IDENTITY_API_VERSION: '3',
});

/** After a suite: deletes every server so no guest outlives it, stops the daemon, removes what it left. */
export async function stopDaemon(d: DaemonProcess | undefined): Promise<void> {
  if (!d) return;
  // Every page (a suite may run the daemon with a small --api-max-limit).
  const left = await d.openstack(['server', 'list', '--limit', '-1', '-f', 'value', '-c', 'ID']);
  for (const id of left.stdout.split('\n').filter(Boolean))
    await d.openstack(['server', 'delete', '--wait', id]);
  await d.kill();
  await removeDaemon(d);
}

/** Removes what a stopped daemon leaves: its data dir and its namespace. */
export async function removeDaemon(d: DaemonProcess): Promise<void> {
  try {
    rmSync(d.dataDir, { recursive: true, force: true });
  } finally {
    // Even when the data dir cannot go (a mount point: the disk-full suite's tmpfs), the namespace must.
    await removeNetns(d.netns);
  }
}
