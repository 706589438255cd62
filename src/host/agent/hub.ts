import type { Duplex } from 'node:stream';
import type { ServerService } from '../../compute/servers.js';
import { loadDataplaneState } from '../../network/dataplane-state.js';
import type { DataplaneSync } from '../../network/networks.js';
import type { Store } from '../../store/database.js';
import { type KeyScope, RemoteDriver } from './remote-driver.js';

/**
 * The control plane's connected agents (docs/multi-host.md): one
 * RemoteDriver per host, attached to ServerService while its channel is
 * open. Each agent's firewall gets the desired state of the ports of the
 * servers placed on its host (the same loader and compiler as the local
 * host's), after every network change and before any guest runs there.
 */
export class AgentHub implements DataplaneSync {
  private readonly remotes = new Map<string, RemoteDriver>();
  /** Hosts whose channel is open and whose firewall and guests were taken over. */
  private readonly ready = new Set<string>();

  constructor(
    private readonly store: Store,
    private readonly servers: ServerService,
    private readonly opts: { uplink?: string | undefined; log?: (line: string) => void } = {},
  ) {}

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

  /** The hosts a server's guest may be on now: its placement (and a live migration's destination). */
  async hostsOf(serverId: string): Promise<string[]> {
    const s = await this.store.db
      .selectFrom('servers')
      .select('host')
      .where('id', '=', serverId)
      .where('deleted_at', 'is', null)
      .executeTakeFirst();
    return s?.host ? [s.host] : [];
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
    await remote.reconcile(ids.map((x) => x.id));
    this.servers.attachHost(host, remote);
    this.ready.add(host);
    this.opts.log?.(`host ${host}: agent connected`);
  }

  /** The host's ports' rules, applied on the agent (fail closed there: NftDataplane's lockdown). */
  async syncHost(remote: RemoteDriver): Promise<void> {
    const here = new Set(
      (
        await this.store.db
          .selectFrom('servers')
          .select('id')
          .where('host', '=', remote.hostName)
          .where('deleted_at', 'is', null)
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

  close(): void {
    for (const r of this.remotes.values()) void r.close();
  }
}
