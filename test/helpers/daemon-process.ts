import { type ChildProcess, execFile, spawn } from 'node:child_process';
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
  url: string;
  output: string;
  child: ChildProcess;
  env: NodeJS.ProcessEnv;
  /** Runs the real openstack CLI against this daemon. */
  openstack(
    args: string[],
    env?: NodeJS.ProcessEnv,
  ): Promise<{ stdout: string; stderr: string; code: number }>;
  bulwark(args: string[], env?: NodeJS.ProcessEnv): Promise<{ stdout: string; stderr: string; code: number }>;
  kill(signal?: NodeJS.Signals): Promise<void>;
}

async function exec(cmd: string, args: string[], env: NodeJS.ProcessEnv) {
  try {
    const r = await run(cmd, args, { env, timeout: 120_000, maxBuffer: 16 * 1024 * 1024 });
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

export async function startDaemonProcess(
  opts: { dataDir?: string; extraArgs?: string[] } = {},
): Promise<DaemonProcess> {
  if (!existsSync(join(REPO, 'dist', 'cli', 'main.js')))
    throw new Error('dist/ is missing: run `npm run build` first');
  const dataDir = opts.dataDir ?? mkdtempSync(join(tmpdir(), 'bulwark-e2e-'));
  const child = spawn(
    process.execPath,
    [BIN, 'serve', '--data-dir', dataDir, '--listen', '127.0.0.1:0', ...(opts.extraArgs ?? [])],
    {
      stdio: ['ignore', 'pipe', 'pipe'],
      // The KVM probe boots a real kernel: on hosts where KVM only looks usable, that picks TCG.
      env: { ...process.env, BULWARK_PROBE_KERNEL: join(REPO, 'guests', 'out', 'vmlinuz') },
    },
  );
  let output = '';
  const url = await new Promise<string>((res, rej) => {
    const timer = setTimeout(() => rej(new Error(`daemon did not start:\n${output}`)), 60_000);
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
  });
  const env = {
    ...process.env,
    OS_CLIENT_CONFIG_FILE: join(dataDir, 'clouds.yaml'),
    OS_CLOUD: 'bulwark',
    PYTHONWARNINGS: 'ignore',
  };
  return {
    dataDir,
    url,
    output,
    child,
    env,
    openstack: (args, extra) => exec('openstack', args, { ...env, ...extra }),
    bulwark: (args, extra) => exec(process.execPath, [BIN, ...args], { ...env, ...extra }),
    kill: (signal = 'SIGTERM') =>
      new Promise<void>((res) => {
        if (child.exitCode !== null || child.signalCode !== null) return res();
        child.once('exit', () => res());
        child.kill(signal);
      }),
  };
}

export const removeDir = (dir: string) => rmSync(dir, { recursive: true, force: true });
