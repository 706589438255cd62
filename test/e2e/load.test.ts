/**
 * Load (issue 14 item 6, docs/reliability.md): concurrent API clients, each
 * with its own token, run a mix of reads and writes (security groups and
 * their rules, volumes, key-manager secrets) against the real daemon for a
 * fixed time. Nothing but a rate limit may refuse them (429s are counted on
 * their own), nothing hangs, and the daemon's memory stays flat.
 *
 * CI: 50 clients for 30 s. BULWARK_LONG=1: 200 clients for 5 minutes.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type DaemonHttp, daemonHttp, daemonRssKiB } from '../helpers/daemon-http.js';
import { type DaemonProcess, startDaemonProcess, stopDaemon } from '../helpers/daemon-process.js';
import { LONG, reportFigures } from '../helpers/figures.js';

const CLIENTS = LONG ? 200 : 50;
const SECONDS = LONG ? 300 : 30;
// Per-token limit well above what one sequential client asks (the per-address one is off: all come from loopback).
const ARGS = ['--api-rate', '6000', '--api-address-rate', '0'];

describe.runIf(process.getuid?.() === 0)(
  `load: ${CLIENTS} concurrent clients for ${SECONDS} s`,
  { timeout: (SECONDS + 240) * 1000 },
  () => {
    let d: DaemonProcess;
    let http: DaemonHttp;
    const tokens: string[] = [];
    beforeAll(async () => {
      d = await startDaemonProcess({ extraArgs: ARGS });
      // Generous: firewall-changing writes queue on the dataplane on a loaded 2-core host (their p99 14 s in the long run).
      http = await daemonHttp(d, { timeoutMs: 180_000 });
      // Room for every client's groups and volumes at once: quotas are not what this suite measures.
      const limits = [
        '--secgroups',
        '1000',
        '--secgroup-rules',
        '10000',
        '--volumes',
        '1000',
        '--gigabytes',
        '10000',
      ];
      await d.os('quota', 'set', ...limits, 'admin');
      // Logins (argon2) are not what this suite measures: a few at a time, in setup
      // (200 at once took over 3 minutes for the slowest on a loaded 2-core host).
      while (tokens.length < CLIENTS)
        tokens.push(
          ...(await Promise.all(
            Array.from({ length: Math.min(8, CLIENTS - tokens.length) }, () => http.login()),
          )),
        );
    }, 600_000);
    afterAll(async () => {
      await http?.close();
      await stopDaemon(d);
    }, 300_000);

    it('serves mixed reads and writes with no errors but rate limits, memory flat', async () => {
      const counts = { requests: 0, reads: 0, writes: 0, errors: 0, rateLimited: 0 };
      const errors: string[] = [];
      const latencies: number[] = [];
      // Where the tail is: reads, and each kind of write (security groups and rules, volumes, secrets).
      const byKind = new Map<string, number[]>();
      const kindOf = (path: string, write: boolean) =>
        !write
          ? 'read'
          : (path.split('/')[3]?.replace(/s$/, '').replace('security-group-rule', 'security-group') ??
            'write');
      const call = async (token: string, method: string, path: string, body?: unknown, write = false) => {
        const t0 = performance.now();
        counts.requests++;
        if (write) counts.writes++;
        else counts.reads++;
        try {
          const r = await http.call(method, path, token, body);
          const ms = performance.now() - t0;
          latencies.push(ms);
          const k = kindOf(path, write);
          const xs = byKind.get(k) ?? [];
          xs.push(ms);
          byKind.set(k, xs);
          if (r.status === 429) counts.rateLimited++;
          else if (r.status >= 400) {
            counts.errors++;
            errors.push(`${method} ${path} -> ${r.status} ${JSON.stringify(r.json).slice(0, 200)}`);
          }
          return r;
        } catch (err) {
          counts.errors++;
          errors.push(`${method} ${path} -> ${(err as Error).message}`);
          return null;
        }
      };
      const reads = [
        '/compute/v2.1/servers/detail',
        '/network/v2.0/networks',
        '/network/v2.0/security-groups',
        '/volume/v3/volumes/detail',
        '/compute/v2.1/flavors/detail',
        '/key-manager/v1/secrets',
        '/identity/v3/projects',
      ];
      const until = Date.now() + SECONDS * 1000;
      const client = async (token: string, n: number) => {
        let i = 0;
        while (Date.now() < until) {
          i++;
          // Six reads, then one write round (a group with a rule, a volume, or a secret, made and removed).
          if (i % 7) {
            await call(token, 'GET', reads[(n + i) % reads.length] as string);
            continue;
          }
          const round = (n + i) % 3;
          if (round === 0) {
            const g = await call(
              token,
              'POST',
              '/network/v2.0/security-groups',
              { security_group: { name: `load-${n}-${i}` } },
              true,
            );
            const id = g?.json?.security_group?.id;
            if (!id) continue;
            await call(
              token,
              'POST',
              '/network/v2.0/security-group-rules',
              {
                security_group_rule: {
                  security_group_id: id,
                  direction: 'ingress',
                  protocol: 'tcp',
                  port_range_min: 22,
                  port_range_max: 22,
                  remote_ip_prefix: '10.0.0.0/8',
                  ethertype: 'IPv4',
                },
              },
              true,
            );
            await call(token, 'DELETE', `/network/v2.0/security-groups/${id}`, undefined, true);
          } else if (round === 1) {
            const v = await call(
              token,
              'POST',
              '/volume/v3/volumes',
              { volume: { size: 1, name: `load-${n}-${i}` } },
              true,
            );
            const id = v?.json?.volume?.id;
            if (!id) continue;
            // Cinder refuses to delete a volume still being created: wait for it, as a client would.
            for (let t = 0; t < 120; t++) {
              const s = await call(token, 'GET', `/volume/v3/volumes/${id}`);
              if (s?.json?.volume?.status !== 'creating') break;
              await new Promise((r) => setTimeout(r, 250));
            }
            await call(token, 'DELETE', `/volume/v3/volumes/${id}`, undefined, true);
          } else {
            const s = await call(
              token,
              'POST',
              '/key-manager/v1/secrets',
              {
                name: `load-${n}-${i}`,
                payload: 'c2VjcmV0',
                payload_content_type: 'application/octet-stream',
                payload_content_encoding: 'base64',
              },
              true,
            );
            const ref = s?.json?.secret_ref as string | undefined;
            if (!ref) continue;
            await call(token, 'DELETE', `/key-manager/v1/secrets/${ref.split('/').pop()}`, undefined, true);
          }
        }
      };
      // Warm-up, so the start figure is the daemon serving, not the daemon idle.
      await Promise.all(tokens.slice(0, 5).map((t) => call(t, 'GET', '/compute/v2.1/servers/detail')));
      const rssStartKiB = daemonRssKiB(d);
      const samples: number[] = [];
      const sampler = setInterval(() => samples.push(daemonRssKiB(d)), 5000);
      const t0 = Date.now();
      try {
        await Promise.all(tokens.map((t, n) => client(t, n)));
      } finally {
        clearInterval(sampler); // a timed-out run must not sample a daemon that is gone
      }
      const seconds = (Date.now() - t0) / 1000;
      const rssEndKiB = daemonRssKiB(d);
      const at = (xs: number[], p: number) => Math.round(xs[Math.floor((xs.length - 1) * p)] ?? 0);
      latencies.sort((a, b) => a - b);
      const pct = (p: number) => at(latencies, p);
      const latencyByKindMs = Object.fromEntries(
        [...byKind].map(([k, xs]) => {
          xs.sort((a, b) => a - b);
          return [k, { n: xs.length, p50: at(xs, 0.5), p99: at(xs, 0.99) }];
        }),
      );
      const figures = {
        clients: CLIENTS,
        seconds: Math.round(seconds),
        ...counts,
        requestsPerSecond: Math.round(counts.requests / seconds),
        latencyMs: { p50: pct(0.5), p99: pct(0.99), max: pct(1) },
        latencyByKindMs,
        rssStartMiB: Math.round(rssStartKiB / 1024),
        rssPeakMiB: Math.round(Math.max(rssStartKiB, ...samples) / 1024),
        rssEndMiB: Math.round(rssEndKiB / 1024),
      };
      reportFigures('load', figures);
      expect(errors.slice(0, 20)).toEqual([]);
      expect(counts.requests).toBeGreaterThan(CLIENTS * 5);
      // Flat: the heap grows to its working size under load, then no further (a leak grows with requests).
      expect(rssEndKiB).toBeLessThan(rssStartKiB + 256 * 1024);
      // Nothing the clients made is left behind (every write round removed what it made).
      const left = await http.call('GET', '/network/v2.0/security-groups', tokens[0]);
      expect(left.json.security_groups.filter((g: { name: string }) => g.name.startsWith('load-'))).toEqual(
        [],
      );
    });
  },
);
