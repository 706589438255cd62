import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { Agent, request } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { DaemonProcess } from './daemon-process.js';

export interface HttpAnswer {
  status: number;
  json: any;
  headers: Record<string, string | string[] | undefined>;
}

/**
 * Plain HTTPS calls from the test process to a daemon that listens on
 * loopback inside its own network namespace. A Unix socket is not
 * namespaced, so a tiny forwarder in the daemon's namespace bridges a socket
 * file to its port; this suite's many concurrent callers then need no CLI.
 */
export interface DaemonHttp {
  call(method: string, path: string, token?: string | null, body?: unknown): Promise<HttpAnswer>;
  /** A password login scoped to `project` (default the admin project); returns the token. */
  login(user?: string, password?: string, project?: string): Promise<string>;
  close(): Promise<void>;
}

const FORWARDER = `
const net = require('node:net');
const [sock, port] = process.argv.slice(1);
net.createServer((c) => {
  const s = net.connect(Number(port), '127.0.0.1');
  c.on('error', () => s.destroy());
  s.on('error', () => c.destroy());
  c.pipe(s).pipe(c);
})
  // Said, not swallowed: a forwarder gone makes every later call ECONNREFUSED.
  .on('error', (err) => { process.stderr.write('API forwarder: ' + err.message + '\\n'); process.exit(1); })
  .listen(sock, () => process.stdout.write('ready\\n'));
`;

/**
 * Resolves once the forwarder says it listens. The socket file alone is not
 * enough: it exists from bind(), before listen(), and stays after the
 * forwarder dies, and a connect in either case is ECONNREFUSED.
 */
function forwarderReady(fwd: ChildProcess, sock: string): Promise<void> {
  return new Promise<void>((res, rej) => {
    let out = '';
    const done = (err?: Error) => {
      clearTimeout(timer);
      fwd.stdout?.off('data', onData);
      fwd.off('exit', onExit);
      if (err) {
        fwd.kill('SIGKILL');
        rej(err);
      } else res();
    };
    const onData = (b: Buffer) => {
      out += b.toString();
      if (out.includes('ready\n')) done();
    };
    const onExit = (code: number | null, signal: string | null) =>
      done(new Error(`the API forwarder for ${sock} exited (${code ?? signal}) before it listened`));
    const timer = setTimeout(
      () => done(new Error(`the API forwarder for ${sock} did not listen in 20 s`)),
      20_000,
    );
    fwd.stdout?.on('data', onData);
    fwd.once('exit', onExit);
  });
}

export async function daemonHttp(d: DaemonProcess, opts: { timeoutMs?: number } = {}): Promise<DaemonHttp> {
  const dir = mkdtempSync(join(tmpdir(), 'bwhttp-'));
  const sock = join(dir, 'api.sock');
  const port = new URL(d.url).port;
  const fwd: ChildProcess = spawn(
    'nsenter',
    [`--net=/run/netns/${d.netns}`, '--', process.execPath, '-e', FORWARDER, sock, port],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  await forwarderReady(fwd, sock);
  const ca = readFileSync(join(d.dataDir, 'pki', 'ca.crt'));
  const agent = new Agent({ keepAlive: true, maxSockets: 256, socketPath: sock, ca } as never);
  const timeoutMs = opts.timeoutMs ?? 120_000;
  const call = (method: string, path: string, token?: string | null, body?: unknown) =>
    new Promise<HttpAnswer>((resolve, reject) => {
      if (fwd.exitCode !== null || fwd.signalCode !== null)
        return reject(
          new Error(`${method} ${path}: the API forwarder exited (${fwd.exitCode ?? fwd.signalCode})`),
        );
      const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
      const req = request(
        {
          agent,
          socketPath: sock,
          host: '127.0.0.1',
          path,
          method,
          ca,
          headers: {
            accept: 'application/json',
            ...(payload ? { 'content-type': 'application/json', 'content-length': payload.length } : {}),
            ...(token ? { 'x-auth-token': token } : {}),
          },
          timeout: timeoutMs,
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => {
            const text = Buffer.concat(chunks).toString('utf8');
            let json: unknown = null;
            try {
              json = text ? JSON.parse(text) : null;
            } catch {
              json = text;
            }
            resolve({ status: res.statusCode ?? 0, json, headers: res.headers });
          });
          res.on('error', reject);
        },
      );
      // A hang is a failure too: the caller sees it as one, never waits forever.
      req.on('timeout', () => req.destroy(new Error(`${method} ${path}: no answer in ${timeoutMs} ms`)));
      req.on('error', reject);
      req.end(payload);
    });
  const adminPassword = () => readFileSync(join(d.dataDir, 'admin-password'), 'utf8').trim();
  return {
    call,
    async login(user = 'admin', password = adminPassword(), project = 'admin') {
      const r = await call('POST', '/identity/v3/auth/tokens', null, {
        auth: {
          identity: {
            methods: ['password'],
            password: { user: { name: user, domain: { id: 'default' }, password } },
          },
          scope: { project: { name: project, domain: { id: 'default' } } },
        },
      });
      const token = r.headers['x-subject-token'];
      if (r.status !== 201 || typeof token !== 'string')
        throw new Error(`login as ${user} failed (${r.status}): ${JSON.stringify(r.json)}`);
      return token;
    },
    async close() {
      agent.destroy();
      await new Promise<void>((res) => {
        if (fwd.exitCode !== null || fwd.signalCode !== null) return res();
        fwd.once('exit', () => res());
        fwd.kill('SIGKILL');
      });
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** The daemon's resident memory in KiB, from /proc (the child is the daemon itself: nsenter execs it). */
export function daemonRssKiB(d: DaemonProcess): number {
  const m = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${d.child.pid}/status`, 'utf8'));
  if (!m?.[1]) throw new Error('no VmRSS for the daemon');
  return Number(m[1]);
}
