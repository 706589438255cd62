import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { type AddressInfo, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createCa, issueCertificate, type PemPair } from '../../src/pki/ca.js';

/** One line rsyslog wrote: the fields it parsed out of our RFC 5424 message. */
export interface Received {
  pri: number;
  time: string;
  hostname: string;
  appName: string;
  procId: string;
  msgId: string;
  sd: string;
  msg: string;
}

export const freePort = () =>
  new Promise<number>((res) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const p = (s.address() as AddressInfo).port;
      s.close(() => res(p));
    });
  });

/**
 * A real rsyslogd (Debian's, with rsyslog-gnutls) receiving RFC 5425 syslog
 * over TLS on its own loopback port, with its own config, pid file and work
 * dir, writing what it parsed to a file. `mtls`: the client must present a
 * certificate from the CA whose name is `bulwark-siem` (AuthMode x509/name).
 */
export class TestRsyslog {
  readonly dir: string;
  readonly out: string;
  private proc: ChildProcess | null = null;

  private constructor(
    readonly port: number,
    readonly ca: PemPair,
    readonly client: PemPair,
    readonly mtls: boolean,
    /** Run inside this network namespace (a daemon's, test/helpers/daemon-process.ts); absent: the test's own. */
    readonly netns: string | undefined,
  ) {
    this.dir = mkdtempSync(join(tmpdir(), 'bulwark-rsyslog-'));
    this.out = join(this.dir, 'received.log');
  }

  static async create(opts: { mtls: boolean; netns?: string }): Promise<TestRsyslog> {
    const ca = await createCa('Bulwark test SIEM CA');
    const client = await issueCertificate(ca, {
      commonName: 'bulwark-siem',
      names: ['bulwark-siem'],
      usage: 'client',
    });
    const r = new TestRsyslog(await freePort(), ca, client, opts.mtls, opts.netns);
    const server = await issueCertificate(ca, {
      commonName: '127.0.0.1',
      names: ['127.0.0.1', 'localhost'],
      usage: 'server',
    });
    mkdirSync(join(r.dir, 'work'));
    writeFileSync(join(r.dir, 'ca.pem'), ca.certPem);
    writeFileSync(join(r.dir, 'server.pem'), server.certPem);
    writeFileSync(join(r.dir, 'server.key'), server.keyPem, { mode: 0o600 });
    const auth = opts.mtls
      ? 'StreamDriver.AuthMode="x509/name" PermittedPeer=["bulwark-siem"]'
      : 'StreamDriver.AuthMode="anon"';
    writeFileSync(
      join(r.dir, 'rsyslog.conf'),
      `global(workDirectory="${r.dir}/work"
  defaultNetstreamDriver="gtls"
  defaultNetstreamDriverCAFile="${r.dir}/ca.pem"
  defaultNetstreamDriverCertFile="${r.dir}/server.pem"
  defaultNetstreamDriverKeyFile="${r.dir}/server.key")
module(load="imtcp" StreamDriver.Name="gtls" StreamDriver.Mode="1" ${auth})
template(name="fields" type="string"
  string="%pri%|%timereported:::date-rfc3339%|%hostname%|%app-name%|%procid%|%msgid%|%structured-data%|%msg%\\n")
ruleset(name="siem") {
  action(type="omfile" file="${r.out}" template="fields" flushOnTXEnd="on" asyncWriting="off")
}
input(type="imtcp" address="127.0.0.1" port="${r.port}" ruleset="siem")
`,
    );
    return r;
  }

  /** Starts rsyslogd in the foreground and waits until its port accepts connections. */
  async start(): Promise<void> {
    const stderr: Buffer[] = [];
    const argv = [
      'rsyslogd',
      '-n',
      '-f',
      join(this.dir, 'rsyslog.conf'),
      '-i',
      join(this.dir, 'rsyslog.pid'),
    ];
    // nsenter execs rsyslogd, so the child is rsyslogd itself and the signals in stop() reach it.
    const [cmd, ...args] = this.netns ? ['nsenter', `--net=/run/netns/${this.netns}`, '--', ...argv] : argv;
    const proc = spawn(cmd as string, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    proc.stderr?.on('data', (b: Buffer) => stderr.push(b));
    this.proc = proc;
    const deadline = Date.now() + 10_000;
    while (Date.now() < deadline) {
      if (proc.exitCode !== null)
        throw new Error(`rsyslogd exited ${proc.exitCode}: ${Buffer.concat(stderr).toString()}`);
      if (this.listening()) return;
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(`rsyslogd did not listen on ${this.port}: ${Buffer.concat(stderr).toString()}`);
  }

  /** Whether rsyslogd listens on its port, read from its own namespace's /proc/PID/net/tcp (state 0A = LISTEN). */
  private listening(): boolean {
    const pid = this.proc?.pid;
    if (!pid) return false;
    try {
      const hexPort = this.port.toString(16).toUpperCase().padStart(4, '0');
      const rows = readFileSync(`/proc/${pid}/net/tcp`, 'utf8').split('\n').slice(1);
      return rows.some((l) => {
        const f = l.trim().split(/\s+/);
        return f[1]?.endsWith(`:${hexPort}`) === true && f[3] === '0A';
      });
    } catch {
      return false;
    }
  }

  /** SIGTERM and wait for the exit; rsyslog writes out what it has queued first. */
  async stop(): Promise<void> {
    const proc = this.proc;
    this.proc = null;
    if (!proc || proc.exitCode !== null) return;
    const exited = new Promise((r) => proc.once('exit', r));
    proc.kill('SIGTERM');
    const timer = setTimeout(() => proc.kill('SIGKILL'), 10_000);
    await exited;
    clearTimeout(timer);
  }

  received(): Received[] {
    if (!existsSync(this.out)) return [];
    return readFileSync(this.out, 'utf8')
      .split('\n')
      .filter((l) => l.length > 0)
      .map((l) => {
        const [pri, time, hostname, appName, procId, msgId, sd, ...rest] = l.split('|');
        return {
          pri: Number(pri),
          time: time ?? '',
          hostname: hostname ?? '',
          appName: appName ?? '',
          procId: procId ?? '',
          msgId: msgId ?? '',
          sd: sd ?? '',
          msg: rest.join('|'),
        };
      });
  }

  async waitFor(pred: (r: Received[]) => boolean, timeoutMs = 30_000): Promise<Received[]> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const r = this.received();
      if (pred(r)) return r;
      if (Date.now() > deadline) throw new Error(`rsyslog received ${r.length} lines; condition not met`);
      await new Promise((res) => setTimeout(res, 100));
    }
  }

  async close(): Promise<void> {
    await this.stop();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** The `seq` SD-PARAM of a received RFC 5424 line. */
export const seqOf = (r: Received): number => Number(/\bseq="(\d+)"/.exec(r.sd)?.[1] ?? Number.NaN);
