import type { Duplex } from 'node:stream';
import { BulwarkError } from '../../errors.js';
import type { DiskHandle } from '../disk-export.js';
import type { ForensicFile } from '../forensics.js';
import type {
  DiskKeySource,
  GuestSpec,
  GuestState,
  HypervisorDriver,
  TpmKeySource,
  VolumeKeySource,
} from '../hypervisor.js';
import { type Handler, RpcPeer } from './rpc.js';

/** A disk the agent holds open, named by its handle on the channel. */
type RemoteDisk = { handle: number; size: number };

/** Which keys an agent may be given: only those of guests (and their volumes) placed on its own host. */
export interface KeyScope {
  server(hostName: string, serverId: string): Promise<boolean>;
  volume(hostName: string, volumeId: string): Promise<boolean>;
}

/**
 * The control plane's side of a host agent (docs/multi-host.md): the
 * HypervisorDriver interface, each call sent over the agent's mutual-TLS
 * channel to the QemuDriver the agent runs. ServerService does not know the
 * difference. Keys cross only this channel, on the agent's request, and only
 * for guests placed on the agent's host.
 */
export class RemoteDriver implements HypervisorDriver {
  private peer: RpcPeer | null = null;
  private readonly listeners = new Set<(id: string, event: string, data: unknown) => void>();
  private tpmKeys: TpmKeySource | null = null;
  private diskKeys: DiskKeySource | null = null;
  private volumeKeys: VolumeKeySource | null = null;
  accel: 'kvm' | 'tcg' = 'tcg';

  constructor(
    readonly hostName: string,
    private readonly scope: KeyScope,
    /** Runs before a guest starts or resumes there: the host's firewall for its ports (agent-firewall.ts). */
    private readonly beforeRun: () => Promise<void> = async () => undefined,
  ) {}

  get connected(): boolean {
    return this.peer?.isOpen === true;
  }

  /** Takes a freshly authenticated channel (the agent reconnected): the old one is closed. */
  async connect(io: Duplex): Promise<RpcPeer> {
    this.peer?.close();
    const key = (what: string, allowed: (id: string) => Promise<boolean>, get: () => Handler | null) =>
      (async (id: unknown) => {
        if (typeof id !== 'string' || !(await allowed(id)))
          throw new BulwarkError(
            'Forbidden',
            `host ${this.hostName} may not have the ${what} key of ${String(id)}`,
          );
        const source = get();
        if (!source) throw new BulwarkError('Unavailable', `no ${what} key source on the control plane`);
        return source(id);
      }) as Handler;
    const peer = new RpcPeer(
      io,
      {
        'key.tpm': key(
          'vTPM',
          (id) => this.scope.server(this.hostName, id),
          () => this.tpmKeys,
        ),
        'key.disk': key(
          'disk',
          (id) => this.scope.server(this.hostName, id),
          () => this.diskKeys,
        ),
        'key.volume': key(
          'volume',
          (id) => this.scope.volume(this.hostName, id),
          () => this.volumeKeys,
        ),
      },
      {
        event: (id: string, event: string, data: unknown) => {
          for (const l of this.listeners) l(id, event, data);
        },
      },
    );
    this.peer = peer;
    this.accel = (await peer.call<'kvm' | 'tcg'>('accel')) === 'kvm' ? 'kvm' : 'tcg';
    return peer;
  }

  /** The live channel, or a clear error naming the host. */
  private get rpc(): RpcPeer {
    if (!this.peer?.isOpen)
      throw new BulwarkError('Unavailable', `the agent of host ${this.hostName} is not connected`);
    return this.peer;
  }

  /** Any driver call by name (also the agent's own extensions: firewall, migration). */
  call<T = unknown>(method: string, ...args: unknown[]): Promise<T> {
    try {
      return this.rpc.call<T>(method, ...args);
    } catch (err) {
      return Promise.reject(err);
    }
  }

  define(spec: GuestSpec): Promise<void> {
    return this.call('define', spec);
  }
  async start(id: string): Promise<void> {
    await this.beforeRun();
    await this.call('start', id);
  }
  shutdown(id: string, opts?: { timeoutMs?: number }): Promise<void> {
    return this.call('shutdown', id, opts ?? {});
  }
  reboot(id: string): Promise<void> {
    return this.call('reboot', id);
  }
  pause(id: string): Promise<void> {
    return this.call('pause', id);
  }
  unpause(id: string): Promise<void> {
    return this.call('unpause', id);
  }
  suspend(id: string): Promise<void> {
    return this.call('suspend', id);
  }
  async resume(id: string): Promise<void> {
    await this.beforeRun();
    await this.call('resume', id);
  }
  state(id: string): Promise<GuestState> {
    return this.call('state', id);
  }
  consoleLog(id: string, maxLines?: number): Promise<string> {
    return this.call('consoleLog', id, maxLines ?? null);
  }
  async openConsole(id: string): Promise<Duplex> {
    const { id: sid, stream } = this.rpc.openStream();
    try {
      await this.call('openConsole', id, sid);
    } catch (err) {
      stream.destroy();
      throw err;
    }
    return stream;
  }
  processInfo(id: string): Promise<{ pid: number; uid: number; user: string } | null> {
    return this.call('processInfo', id);
  }
  /** `destDir` is on the agent's host: the evidence stays where the guest ran. */
  forensicSnapshot(id: string, destDir: string): Promise<ForensicFile[]> {
    return this.call('forensicSnapshot', id, destDir);
  }
  undefine(id: string): Promise<void> {
    return this.call('undefine', id);
  }
  reconcile(
    knownIds: string[],
  ): Promise<{ adopted: string[]; vanished: string[]; orphansKilled: string[]; tpmLost?: string[] }> {
    return this.call('reconcile', knownIds);
  }
  onEvent(listener: (id: string, event: string, data: unknown) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
  guestAgent(id: string, request: string): Promise<unknown> {
    return this.call('guestAgent', id, request);
  }
  async close(): Promise<void> {
    this.peer?.close();
  }
  setTpmKeySource(source: TpmKeySource): void {
    this.tpmKeys = source;
  }
  createVolume(id: string, bytes: number, key: Buffer | null): Promise<void> {
    return this.call('createVolume', id, bytes, key);
  }
  resizeVolume(id: string, bytes: number, key: Buffer | null): Promise<void> {
    return this.call('resizeVolume', id, bytes, key);
  }
  deleteVolume(id: string): Promise<void> {
    return this.call('deleteVolume', id);
  }
  setVolumeKeySource(source: VolumeKeySource): void {
    this.volumeKeys = source;
  }
  attachVolume(serverId: string, volumeId: string): Promise<{ device: string }> {
    return this.call('attachVolume', serverId, volumeId);
  }
  detachVolume(serverId: string, volumeId: string): Promise<void> {
    return this.call('detachVolume', serverId, volumeId);
  }
  copyRootDisk(fromId: string, toId: string): Promise<void> {
    return this.call('copyRootDisk', fromId, toId);
  }
  setDiskKeySource(source: DiskKeySource): void {
    this.diskKeys = source;
  }
  async openVolumeData(
    volumeId: string,
    key: Buffer | null,
    mode: 'read' | 'write',
    serverId?: string | null,
  ): Promise<DiskHandle> {
    return this.remoteDisk(
      await this.call<RemoteDisk>('openVolumeData', volumeId, key, mode, serverId ?? null),
    );
  }
  async openRootDisk(serverId: string, mode: 'read' | 'write'): Promise<DiskHandle> {
    return this.remoteDisk(await this.call<RemoteDisk>('openRootDisk', serverId, mode));
  }
  /** A disk the agent opened, read and written through its handle over the channel. */
  private remoteDisk(h: RemoteDisk): DiskHandle {
    return {
      size: h.size,
      read: (offset, length) => this.call<Buffer>('disk.read', h.handle, offset, length),
      write: (offset, data) => this.call('disk.write', h.handle, offset, data),
      close: () => this.call('disk.close', h.handle),
    };
  }
  snapshotVolume(volumeId: string, tag: string, serverId: string | null): Promise<void> {
    return this.call('snapshotVolume', volumeId, tag, serverId);
  }
  deleteVolumeSnapshot(volumeId: string, tag: string, serverId: string | null): Promise<void> {
    return this.call('deleteVolumeSnapshot', volumeId, tag, serverId);
  }
  snapshotServer(serverId: string, tag: string, opts: { memory: boolean }): Promise<void> {
    return this.call('snapshotServer', serverId, tag, opts);
  }
  deleteServerSnapshot(serverId: string, tag: string): Promise<void> {
    return this.call('deleteServerSnapshot', serverId, tag);
  }
}
