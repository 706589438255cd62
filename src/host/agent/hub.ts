import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { ColdMover } from '../../compute/cold-migration.js';
import type { LiveMigrator, ServerService } from '../../compute/servers.js';
import { BulwarkError } from '../../errors.js';
import { loadDataplaneState } from '../../network/dataplane-state.js';
import type { DataplaneSync } from '../../network/networks.js';
import { type PemPair, signCsr } from '../../pki/ca.js';
import type { Store } from '../../store/database.js';
import type { GuestFile } from '../guest-transfer.js';
import type { MigrationProgress } from '../live-migration.js';
import { CHUNK_MAX } from './migration-calls.js';
import { type KeyScope, RemoteDriver } from './remote-driver.js';

/**
 * The control plane's connected agents (docs/multi-host.md): one
 * RemoteDriver per host, attached to ServerService while its channel is
 * open. Each agent's firewall gets the desired state of the ports of the
 * servers placed on its host (the same loader and compiler as the local
 * host's), after every network change and before any guest runs there.
 */
export class AgentHub implements DataplaneSync, LiveMigrator, ColdMover {
  private readonly remotes = new Map<string, RemoteDriver>();
  /** Hosts whose channel is open and whose firewall and guests were taken over. */
  private readonly ready = new Set<string>();

  constructor(
    private readonly store: Store,
    private readonly servers: ServerService,
    private readonly opts: {
      /** The platform CA: signs each migration's one-time certificates. */
      ca?: PemPair;
      uplink?: string | undefined;
      log?: (line: string) => void;
    } = {},
  ) {}

  /** Each connected agent's address as this control plane sees it: where the others reach it (migration). */
  private readonly addresses = new Map<string, string>();

  /** Keys only for servers placed on (or migrating to) the asking host, and their volumes. */
  readonly scope: KeyScope = {
    server: async (host, id) => (await this.hostsOf(id)).includes(host),
    volume: async (host, volumeId) => {
      const rows = await this.store.db
        .selectFrom('volume_attachments')
        .select('server_id')
        .where('volume_id', '=', volumeId)
        .execute();
      for (const r of rows) if ((await this.hostsOf(r.server_id)).includes(host)) return true;
      return false;
    },
  };

  /** The hosts a server's guest may be on now: where it runs, and where its claim is (a migration's destination). */
  async hostsOf(serverId: string): Promise<string[]> {
    const s = await this.store.db
      .selectFrom('servers as s')
      .leftJoin('placements as p', 'p.server_id', 's.id')
      .select(['s.host', 'p.host as claimed'])
      .where('s.id', '=', serverId)
      .where('s.deleted_at', 'is', null)
      .executeTakeFirst();
    return [s?.host, s?.claimed].filter((h): h is string => !!h);
  }

  /** The driver of an agent host ready for work. */
  get(host: string): RemoteDriver | undefined {
    const r = this.remotes.get(host);
    return r?.connected && this.ready.has(host) ? r : undefined;
  }

  /** An authenticated agent channel: attach the host, apply its firewall, adopt its guests. */
  async connect(host: string, io: Duplex): Promise<void> {
    let r = this.remotes.get(host);
    if (!r) {
      const made = new RemoteDriver(host, this.scope, () => this.syncHost(made));
      r = made;
      this.remotes.set(host, r);
    }
    const remote = r;
    const addr = (io as Socket).remoteAddress?.replace(/^::ffff:/, '');
    if (addr) this.addresses.set(host, addr);
    const peer = await remote.connect(io);
    peer.onClose(() => {
      if (remote.connected) return; // a newer channel took over
      this.ready.delete(host);
      this.servers.detachHost(host);
    });
    await this.syncHost(remote);
    const ids = await this.store.db
      .selectFrom('servers')
      .select('id')
      .where('host', '=', host)
      .where('deleted_at', 'is', null)
      .execute();
    const found = await remote.reconcile(ids.map((x) => x.id));
    this.servers.attachHost(host, remote);
    this.ready.add(host);
    // Guests its reconcile stopped for a dead swtpm or found gone: as on the local host (a store away must not refuse the host).
    await this.servers
      .reconcileHost(host, found)
      .catch((err: Error) => this.opts.log?.(`host ${host}: reconcile failed: ${err.message}`));
    peer.notify('attached');
    this.opts.log?.(`host ${host}: agent connected`);
  }

  /** The host's ports' rules, applied on the agent (fail closed there: NftDataplane's lockdown). */
  async syncHost(remote: RemoteDriver): Promise<void> {
    // Its servers, and one migrating here: its port's rules are in place before it runs here.
    const here = new Set(
      (
        await this.store.db
          .selectFrom('servers as s')
          .leftJoin('placements as p', 'p.server_id', 's.id')
          .select('s.id')
          .where((eb) => eb.or([eb('s.host', '=', remote.hostName), eb('p.host', '=', remote.hostName)]))
          .where('s.deleted_at', 'is', null)
          .execute()
      ).map((x) => x.id),
    );
    const state = await loadDataplaneState(this.store, {
      uplink: this.opts.uplink,
      isLocal: (p) => p.device_owner.startsWith('compute:') && here.has(p.device_id),
    });
    await remote.call('firewall.apply', state);
  }

  /** DataplaneSync: every connected agent's firewall after a network change. */
  async sync(reason: string): Promise<void> {
    await Promise.all(
      [...this.remotes.values()]
        .filter((r) => r.connected)
        .map((r) =>
          this.syncHost(r).catch((err: Error) =>
            this.opts.log?.(`host ${r.hostName}: firewall sync (${reason}) failed: ${err.message}`),
          ),
        ),
    );
  }

  canHost(host: string): boolean {
    return this.get(host) !== undefined;
  }

  /**
   * Live migration (host/live-migration.ts): one-time certificates from the
   * CA for both ends; the destination's firewall for the port first; the
   * destination paused and listening (TLS, only the source admitted); the
   * source mirrors the disk and streams the guest; the destination runs it;
   * the source's copy goes. Progress is read from the source as it runs.
   */
  async live(o: Parameters<LiveMigrator['live']>[0]): Promise<void> {
    const log = (what: string) =>
      this.opts.log?.(`live migration of ${o.serverId} ${o.from} -> ${o.to}: ${what}`);
    log('starting');
    try {
      await this.move(o, log);
      log('done');
    } catch (err) {
      log(`failed: ${(err as Error).message}`);
      throw err;
    }
  }

  private async move(o: Parameters<LiveMigrator['live']>[0], log: (what: string) => void): Promise<void> {
    const src = this.get(o.from);
    const dst = this.get(o.to);
    const dstAddr = this.addresses.get(o.to);
    if (!src || !dst || !dstAddr || !this.opts.ca)
      throw new BulwarkError('Unavailable', `hosts ${o.from} and ${o.to} must both be connected agents`);
    const ca = this.opts.ca;
    const sign = async (remote: RemoteDriver, usage: 'server' | 'client') =>
      signCsr(ca, await remote.call<string>('migration.csr', o.serverId), {
        commonName: remote.hostName,
        names: [remote.hostName],
        usage,
        days: 1,
      });
    await this.syncHost(dst);
    log('destination firewall applied; preparing the destination');
    const listen = await dst.call<{ nbdPort: number; migrationPort: number }>('migration.prepare', o.spec, {
      listen: dstAddr,
      peer: o.from,
      certPem: await sign(dst, 'server'),
    });
    const poll = setInterval(
      () =>
        void src
          .call<MigrationProgress>('migration.progress', o.serverId)
          .then((p) => o.onProgress(p))
          .catch(() => undefined),
      1000,
    );
    log(`destination listening (nbd ${listen.nbdPort}, migration ${listen.migrationPort}); sending`);
    try {
      await src.call('migration.send', o.serverId, {
        host: dstAddr,
        ...listen,
        peer: o.to,
        certPem: await sign(src, 'client'),
      });
    } catch (err) {
      await dst.undefine(o.serverId).catch(() => undefined);
      throw err;
    } finally {
      clearInterval(poll);
    }
    await o
      .onProgress(await src.call<MigrationProgress>('migration.progress', o.serverId))
      .catch(() => undefined);
    try {
      await dst.call('migration.finish', o.serverId);
    } catch (err) {
      // Everything reached the destination but it would not run: the source (paused) takes over again.
      await dst.undefine(o.serverId).catch(() => undefined);
      await src.unpause(o.serverId).catch(() => undefined);
      throw err;
    }
    // The guest runs on the destination now: a source that cannot clean up does not undo the move
    // (its reconcile removes a guest no longer placed there when it next connects).
    await src
      .call('migration.cleanup', o.serverId)
      .catch((err: Error) => log(`the source's copy was not cleaned up: ${err.message}`));
  }

  /** A connected agent host ready for a move, or a clear error. */
  private need(host: string): RemoteDriver {
    const r = this.get(host);
    if (!r) throw new BulwarkError('Unavailable', `host ${host} is not a connected agent`);
    return r;
  }

  /**
   * Cold migration (host/guest-transfer.ts): the destination defines the
   * guest (its dirs, user, a fresh overlay under the same key, fetched over
   * its own channel), then receives the stopped guest's files as they lie at
   * rest on the source, ciphertext through both agents' mutual-TLS channels,
   * and places them only once each matches the source's size and SHA-256.
   */
  async copy(o: Parameters<ColdMover['copy']>[0]): Promise<void> {
    const src = this.need(o.from);
    const dst = this.need(o.to);
    const log = (what: string) => this.opts.log?.(`migration of ${o.serverId} ${o.from} -> ${o.to}: ${what}`);
    const files = await src.call<GuestFile[]>('coldmig.list', o.serverId);
    const total = files.reduce((n, f) => n + f.size, 0);
    log(`copying ${files.length} files, ${total} bytes`);
    await dst.define(o.spec);
    let done = 0;
    for (const f of files) {
      for (let off = 0; off < f.size; ) {
        const part = await src.call<Buffer>('coldmig.read', o.serverId, f.name, off, CHUNK_MAX);
        if (part.length === 0) throw new BulwarkError('Unavailable', `${f.name} ended early on ${o.from}`);
        await dst.call('coldmig.write', o.serverId, f.name, off, part);
        off += part.length;
        done += part.length;
        await o.onProgress(done, total).catch(() => undefined);
      }
    }
    await dst.call('coldmig.commit', o.serverId, files);
    log('copied and checked');
  }

  /** Which machine each agent runs on (/etc/machine-id): agents sharing one share its users too. */
  private readonly machines = new Map<string, string>();

  private async machineOf(host: string): Promise<string | null> {
    const known = this.machines.get(host);
    if (known) return known;
    const r = this.get(host);
    const id = r ? await r.call<string>('coldmig.machine').catch(() => null) : null;
    if (id) this.machines.set(host, id);
    return id;
  }

  async release(host: string, serverId: string, other: string): Promise<void> {
    const a = await this.machineOf(host);
    const keepUser = a === null || a === (await this.machineOf(other));
    await this.need(host).call('coldmig.release', serverId, { keepUser });
  }

  /** The source's ruleset without the moved guest's port (its record names the destination now). */
  async moved(from: string): Promise<void> {
    const src = this.get(from);
    if (src) await this.syncHost(src);
  }

  close(): void {
    for (const r of this.remotes.values()) void r.close();
  }
}
