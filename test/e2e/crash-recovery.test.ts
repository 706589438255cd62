/**
 * Crash recovery (issue 14 item 4, docs/reliability.md): the real daemon is
 * SIGKILLed at a random point of a storm of concurrent server creates and
 * deletes, volume creates, deletes, attachments and detachments against real
 * guests (TCG). After each restart on the same data dir: every request that
 * got a 2xx before the kill is reflected, the state converges (nothing stuck
 * in BUILD, deleting, creating, attaching...), the audit chain verifies, and
 * the host holds no orphan QEMU, swtpm, tap, nft table, per-VM user, instance
 * or volume file, key-manager key, loose key file or keyring entry.
 *
 * CI: 3 kills x 30 operations. BULWARK_LONG=1: 10 kills x 100 operations.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tapName } from '../../src/network/model.js';
import { type DaemonHttp, daemonHttp } from '../helpers/daemon-http.js';
import {
  type DaemonProcess,
  removeDaemon,
  startDaemonProcess,
  stopDaemon,
} from '../helpers/daemon-process.js';
import { LONG, reportFigures } from '../helpers/figures.js';
import { imageCreateArgs, waitFor } from '../helpers/guests.js';
import {
  guestProcesses,
  instanceDirs,
  keyringEntries,
  killGuests,
  looseKeyFiles,
  nftTables,
  taps,
  vmUserExists,
  volumeFiles,
} from '../helpers/host-leftovers.js';
import { filesUnder } from '../helpers/leaks.js';

const ITERATIONS = LONG ? 10 : 3;
const OPERATIONS = LONG ? 100 : 30;
// Real guests under TCG on a shared 2-core host: a few boots per storm, the rest is volumes and reads.
const SERVER_CREATES = LONG ? 10 : 4;
const ARGS = ['--server-create-rate', '0', '--api-rate', '0'];
const C = '/compute/v2.1';
const V = '/volume/v3';

type Kind =
  | 'server-create'
  | 'server-delete'
  | 'volume-create'
  | 'volume-delete'
  | 'attach'
  | 'detach'
  | 'read';
interface Outcome {
  kind: Kind;
  /** The server or volume the operation made or acted on. */
  id?: string;
  serverId?: string;
  status: number | 'cut';
}

const ok = (o: Outcome) => typeof o.status === 'number' && o.status >= 200 && o.status < 300;
const SETTLED_SERVER = new Set(['ACTIVE', 'SHUTOFF', 'ERROR']);
const SETTLED_VOLUME = new Set(['available', 'in-use', 'error']);

describe.runIf(process.getuid?.() === 0)(
  'crash recovery: SIGKILL during a storm of operations',
  { timeout: LONG ? 3_600_000 : 900_000 },
  () => {
    let d: DaemonProcess | undefined;
    let http: DaemonHttp | undefined;
    let token = '';
    let flavors: string[] = [];
    let imageId = '';
    let networkId = '';
    let baselineTables: string[] = [];
    // Every server and volume id this suite saw, to look for their leftovers after they are gone.
    const seenServers = new Set<string>();
    const seenVolumes = new Set<string>();
    const figures = {
      iterations: 0,
      operations: 0,
      committed: 0,
      cut: 0,
      refused: 0,
      /** Refusals by operation and status, e.g. `attach 409` (a server still building). */
      refusedBy: {} as Record<string, number>,
      orphansFound: 0,
      auditRowsVerified: 0,
      killAfterMs: [] as number[],
    };
    const tag = randomBytes(3).toString('hex');

    const connect = async () => {
      if (!d) throw new Error('no daemon');
      const h = await daemonHttp(d, { timeoutMs: 180_000 });
      http = h;
      // Up means listening; a restart on a loaded host may still refuse a moment (a 503 while the
      // store reconnects): log in once the API answers, within a deadline.
      token = await waitFor('the API to take a login after the (re)start', () => h.login(), 120_000, 1000);
    };
    const api = (method: string, path: string, body?: unknown) => {
      if (!http) throw new Error('no client');
      return http.call(method, path, token, body);
    };

    beforeAll(async () => {
      d = await startDaemonProcess({ extraArgs: ARGS });
      // Room for every storm's creates: a quota refusal (413/403) changes nothing and tests nothing here.
      await d.os(
        'quota',
        'set',
        ...['--instances', '40', '--cores', '40', '--ram', String(40 * 256)],
        ...['--volumes', '400', '--gigabytes', '400'],
        'admin',
      );
      await d.os('flavor', 'create', '--vcpus', '1', '--ram', '256', '--disk', '1', 'tiny');
      await d.os('flavor', 'create', '--vcpus', '1', '--ram', '256', '--disk', '1', 'tiny-tpm');
      await d.os(
        'flavor',
        'set',
        'tiny-tpm',
        '--property',
        'hw:tpm_version=2.0',
        '--property',
        'hw:tpm_model=tpm-crb',
      );
      const img = await d.osJson(...imageCreateArgs('tiny-bios', 'bios.raw'));
      imageId = img.id;
      networkId = (await d.osJson('network', 'create', 'storm-net')).id;
      await d.os(
        'subnet',
        'create',
        '--network',
        'storm-net',
        '--subnet-range',
        '10.77.0.0/24',
        'storm-subnet',
      );
      flavors = [
        (await d.osJson('flavor', 'show', 'tiny')).id,
        (await d.osJson('flavor', 'show', 'tiny-tpm')).id,
      ];
      await connect();
      baselineTables = nftTables(d);
    });

    afterAll(async () => {
      await http?.close();
      if (!d) return;
      const dataDir = d.dataDir;
      try {
        if (d.child.exitCode === null && d.child.signalCode === null) await stopDaemon(d);
        else await removeDaemon(d);
      } finally {
        // Whatever a failed run left running goes too (the assertions above said so already).
        killGuests(dataDir, seenServers);
      }
    });

    const servers = async () => {
      const r = await api('GET', `${C}/servers/detail`);
      expect(r.status).toBe(200);
      for (const s of r.json.servers) seenServers.add(s.id);
      return r.json.servers as Record<string, any>[];
    };
    const volumes = async () => {
      const r = await api('GET', `${V}/volumes/detail`);
      expect(r.status).toBe(200);
      for (const v of r.json.volumes) seenVolumes.add(v.id);
      return r.json.volumes as Record<string, any>[];
    };

    /** The storm's operations, from the state the previous iteration left. */
    const plan = async (i: number): Promise<(() => Promise<Outcome>)[]> => {
      const ss = await servers();
      const vs = await volumes();
      const active = ss.filter((s) => s.status === 'ACTIVE');
      const keep = active.slice(0, 2).map((s) => s.id);
      const ops: (() => Promise<Outcome>)[] = [];
      const call = async (
        kind: Kind,
        method: string,
        path: string,
        body?: unknown,
        id?: string,
        serverId?: string,
      ) => {
        try {
          const r = await api(method, path, body);
          const made = r.json?.server?.id ?? r.json?.volume?.id;
          if (made) (kind === 'server-create' ? seenServers : seenVolumes).add(made);
          return { kind, id: id ?? made, ...(serverId ? { serverId } : {}), status: r.status };
        } catch {
          return { kind, ...(id ? { id } : {}), ...(serverId ? { serverId } : {}), status: 'cut' as const };
        }
      };
      for (let n = 0; n < SERVER_CREATES; n++)
        ops.push(() =>
          call('server-create', 'POST', `${C}/servers`, {
            server: {
              name: `storm-${tag}-${i}-${n}`,
              flavorRef: flavors[n % 2],
              imageRef: imageId,
              networks: [{ uuid: networkId }],
            },
          }),
        );
      // Servers from earlier storms go, but for two running ones the volumes attach to.
      for (const s of ss.filter((x) => !keep.includes(x.id)))
        ops.push(() => call('server-delete', 'DELETE', `${C}/servers/${s.id}`, undefined, s.id));
      const available = vs.filter((v) => v.status === 'available');
      let target = 0;
      for (const v of available) {
        const serverId = keep[target++ % Math.max(keep.length, 1)];
        if (serverId && target <= 4)
          ops.push(() =>
            call(
              'attach',
              'POST',
              `${C}/servers/${serverId}/os-volume_attachments`,
              { volumeAttachment: { volumeId: v.id } },
              v.id,
              serverId,
            ),
          );
        else ops.push(() => call('volume-delete', 'DELETE', `${V}/volumes/${v.id}`, undefined, v.id));
      }
      for (const v of vs.filter((x) => x.status === 'in-use')) {
        const serverId = v.attachments?.[0]?.server_id as string | undefined;
        if (serverId)
          ops.push(() =>
            call(
              'detach',
              'DELETE',
              `${C}/servers/${serverId}/os-volume_attachments/${v.id}`,
              undefined,
              v.id,
              serverId,
            ),
          );
      }
      const creates = Math.max(4, Math.floor((OPERATIONS - ops.length) / 2));
      for (let n = 0; n < creates && ops.length < OPERATIONS; n++)
        ops.push(() =>
          call('volume-create', 'POST', `${V}/volumes`, { volume: { size: 1, name: `sv-${tag}-${i}-${n}` } }),
        );
      while (ops.length < OPERATIONS)
        ops.push(() =>
          ops.length % 2
            ? call('read', 'GET', `${C}/servers/detail`)
            : call('read', 'GET', `${V}/volumes/detail`),
        );
      return ops;
    };

    /** Everything settles: no server or volume in a transitional state, the gone ones gone. */
    let busyLast = '';
    const converged = async () =>
      waitFor(
        'the state to converge after the restart',
        async () => {
          const ss = await servers();
          const vs = await volumes();
          const busy = [
            ...ss.filter((s) => !SETTLED_SERVER.has(s.status) || s['OS-EXT-STS:task_state'] !== null),
            ...vs.filter((v) => !SETTLED_VOLUME.has(v.status)),
          ];
          busyLast = JSON.stringify(busy.map((b) => [b.id, b.status, b['OS-EXT-STS:task_state']]));
          return busy.length === 0 ? { ss, vs } : false;
        },
        240_000,
        2000,
      ).catch((err: Error) => {
        throw new Error(`${err.message}; still busy: ${busyLast}`);
      });

    /** What must not be on the host, given the servers and volumes that exist. */
    const orphans = async (ss: Record<string, any>[], vs: Record<string, any>[]) => {
      if (!d) throw new Error('no daemon');
      const live = new Set(ss.map((s) => s.id as string));
      const running = new Set(ss.filter((s) => s.status === 'ACTIVE').map((s) => s.id as string));
      const found: string[] = [];
      const procs = guestProcesses(d.dataDir);
      for (const p of procs)
        if (!running.has(p.id)) found.push(`${p.kind} ${p.pid} of ${p.id} (not running)`);
      for (const id of running)
        if (procs.filter((p) => p.kind === 'qemu' && p.id === id).length !== 1)
          found.push(`server ${id} is ACTIVE with ${procs.filter((p) => p.id === id).length} QEMU`);
      for (const id of instanceDirs(d.dataDir)) if (!live.has(id)) found.push(`instance dir of ${id}`);
      for (const id of seenServers)
        if (!live.has(id) && vmUserExists(id)) found.push(`user of gone server ${id}`);
      const liveVolumes = new Set(vs.map((v) => v.id as string));
      for (const id of volumeFiles(d.dataDir)) if (!liveVolumes.has(id)) found.push(`volume file ${id}`);
      for (const v of vs)
        if (!volumeFiles(d.dataDir).includes(v.id) && v.status !== 'error')
          found.push(`volume ${v.id} has no file`);
      const ports = (await api('GET', '/network/v2.0/ports')).json.ports as Record<string, any>[];
      const wanted = new Set(
        ports.filter((p) => running.has(p.device_id)).map((p) => tapName(p.id as string)),
      );
      for (const p of ports)
        if (p.device_id && !live.has(p.device_id)) found.push(`port ${p.id} of gone server`);
      for (const t of taps(d)) if (!wanted.has(t)) found.push(`tap ${t}`);
      for (const t of nftTables(d)) if (!baselineTables.includes(t)) found.push(`nft table ${t}`);
      const secrets = (await api('GET', '/key-manager/v1/secrets?limit=1000')).json.secrets as Record<
        string,
        any
      >[];
      for (const s of secrets) {
        const m = /^(?:root-disk-|vtpm-|volume )([0-9a-f-]{36})$/.exec(s.name ?? '');
        if (m?.[1] && !live.has(m[1]) && !liveVolumes.has(m[1])) found.push(`key ${s.name}`);
      }
      for (const f of looseKeyFiles(d.dataDir, filesUnder(d.dataDir))) found.push(`key file ${f}`);
      for (const k of keyringEntries([...seenServers])) found.push(`keyring entry ${k}`);
      return found;
    };

    it(`survives ${ITERATIONS} kills during storms of ${OPERATIONS} concurrent operations`, async () => {
      for (let i = 0; i < ITERATIONS; i++) {
        if (!d) throw new Error('no daemon');
        const ops = await plan(i);
        const killAfterMs = 500 + Math.floor(Math.random() * 4000);
        figures.killAfterMs.push(killAfterMs);
        const running = ops.map((op) => op());
        await new Promise((r) => setTimeout(r, killAfterMs));
        await d.kill('SIGKILL');
        const outcomes = await Promise.all(running);
        await http?.close();
        figures.iterations++;
        figures.operations += outcomes.length;
        figures.cut += outcomes.filter((o) => o.status === 'cut').length;
        figures.committed += outcomes.filter((o) => o.kind !== 'read' && ok(o)).length;
        for (const o of outcomes.filter((x) => typeof x.status === 'number' && x.status >= 400)) {
          figures.refused++;
          const k = `${o.kind} ${o.status}`;
          figures.refusedBy[k] = (figures.refusedBy[k] ?? 0) + 1;
        }
        // A refusal is a 4xx with a reason (a volume busy, a server in a state that does not allow it), never a 5xx.
        expect(outcomes.filter((o) => typeof o.status === 'number' && o.status >= 500)).toEqual([]);

        d = await startDaemonProcess({ dataDir: d.dataDir, netns: d.netns, extraArgs: ARGS });
        await connect();
        const { ss, vs } = await converged();
        const sIds = new Set(ss.map((s) => s.id));
        const vIds = new Set(vs.map((v) => v.id));
        // Every committed record is there; every committed delete is done.
        for (const o of outcomes.filter(ok)) {
          if (o.kind === 'server-create') expect(sIds.has(o.id), `created server ${o.id}`).toBe(true);
          if (o.kind === 'volume-create') expect(vIds.has(o.id), `created volume ${o.id}`).toBe(true);
          if (o.kind === 'server-delete') expect(sIds.has(o.id), `deleted server ${o.id}`).toBe(false);
          if (o.kind === 'volume-delete') expect(vIds.has(o.id), `deleted volume ${o.id}`).toBe(false);
          if (o.kind === 'attach' && sIds.has(o.serverId)) {
            const v = vs.find((x) => x.id === o.id);
            expect(v?.status, `attached volume ${o.id}`).toBe('in-use');
            expect(v?.attachments?.[0]?.server_id).toBe(o.serverId);
          }
          if (o.kind === 'detach') {
            const v = vs.find((x) => x.id === o.id);
            // The detach answered 202: it completes (or, if the kill came first, the volume is still whole).
            expect(['available', 'in-use']).toContain(v?.status);
          }
        }
        // Servers that failed because of the kill say why.
        for (const s of ss.filter((x) => x.status === 'ERROR')) expect(s.fault?.message).toMatch(/\S/);
        const found = await orphans(ss, vs);
        figures.orphansFound += found.length;
        expect(found).toEqual([]);
        const audit = await api('GET', '/bulwark/v1/audit/verify');
        expect(audit.status).toBe(200);
        expect(audit.json.verification.ok, JSON.stringify(audit.json.verification.failure)).toBe(true);
        figures.auditRowsVerified = audit.json.verification.checked;
      }

      // Finally everything goes, and nothing of it stays on the host.
      for (const s of await servers()) expect((await api('DELETE', `${C}/servers/${s.id}`)).status).toBe(204);
      await waitFor('servers gone', async () => (await servers()).length === 0, 180_000, 2000);
      for (const v of await volumes()) {
        if (v.status === 'in-use') continue; // its server is gone: the attachment is reaped on the next list
        expect((await api('DELETE', `${V}/volumes/${v.id}`)).status).toBe(202);
      }
      await waitFor(
        'volumes gone',
        async () => {
          const vs = await volumes();
          for (const v of vs.filter((x) => x.status === 'available'))
            await api('DELETE', `${V}/volumes/${v.id}`);
          return vs.length === 0;
        },
        180_000,
        2000,
      );
      const found = await orphans([], []);
      figures.orphansFound += found.length;
      expect(found).toEqual([]);
      reportFigures('crash-recovery', figures);
    });
  },
);
