import type { Duplex } from 'node:stream';
import { BulwarkError } from '../../errors.js';
import type { CompileInput } from '../../network/compile.js';
import type { DiskHandle } from '../disk-export.js';
import type { HypervisorDriver } from '../hypervisor.js';
import { NftDataplane } from '../net/nft-dataplane.js';
import { type Handler, RpcPeer } from './rpc.js';

/** The driver operations the control plane may call on an agent, by name (RemoteDriver's side). */
const DRIVER_CALLS = [
  'define',
  'start',
  'shutdown',
  'reboot',
  'pause',
  'unpause',
  'suspend',
  'resume',
  'state',
  'consoleLog',
  'processInfo',
  'forensicSnapshot',
  'undefine',
  'reconcile',
  'guestAgent',
  'createVolume',
  'resizeVolume',
  'deleteVolume',
  'attachVolume',
  'detachVolume',
  'copyRootDisk',
  'snapshotVolume',
  'deleteVolumeSnapshot',
  'snapshotServer',
  'deleteServerSnapshot',
] as const satisfies readonly (keyof HypervisorDriver)[];

/**
 * What the agent serves on its channel to the control plane: its QemuDriver
 * and its host's firewall. Keys are asked for over the same channel each time
 * a guest needs one and handed to QEMU/swtpm as in-memory secrets, never
 * written to the agent's disk.
 */
export function serveHost(
  io: Duplex,
  driver: HypervisorDriver,
  firewall: Pick<AgentFirewall, 'apply'>,
  extra: Record<string, Handler> = {},
  /** Told when the control plane has taken this host on (firewall applied, guests adopted). */
  onAttached: () => void = () => undefined,
): RpcPeer {
  const disks = new Map<number, DiskHandle>();
  let nextDisk = 1;
  /** Keeps an opened disk for the handle-based disk.* calls. */
  const served = (d: DiskHandle) => {
    const handle = nextDisk++;
    disks.set(handle, d);
    return { handle, size: d.size };
  };
  const disk = (h: unknown) => {
    const d = typeof h === 'number' ? disks.get(h) : undefined;
    if (!d) throw new BulwarkError('NotFound', `no open disk handle ${String(h)}`);
    return d;
  };
  const handlers: Record<string, Handler> = {
    accel: () => driver.accel,
    openConsole: async (id: string, sid: number) => {
      const guest = await driver.openConsole(id);
      const wire = peer.streamFor(sid);
      guest.pipe(wire);
      wire.pipe(guest);
      const end = () => {
        guest.destroy();
        wire.destroy();
      };
      guest.once('close', end);
      wire.once('close', end);
    },
    openVolumeData: async (
      volumeId: string,
      key: Buffer | null,
      mode: 'read' | 'write',
      serverId: string | null,
    ) => {
      return served(await driver.openVolumeData(volumeId, key, mode, serverId));
    },
    openRootDisk: async (serverId: string, mode: 'read' | 'write') =>
      served(await driver.openRootDisk(serverId, mode)),
    'disk.read': (h: number, offset: number, length: number) => disk(h).read(offset, length),
    'disk.write': (h: number, offset: number, data: Buffer) => disk(h).write(offset, data),
    'disk.close': async (h: number) => {
      const d = disk(h);
      disks.delete(h);
      await d.close();
    },
    'firewall.apply': (state: Omit<CompileInput, 'table'>) => firewall.apply(state),
    ...extra,
  };
  for (const m of DRIVER_CALLS) {
    const fn = driver[m] as (...a: unknown[]) => unknown;
    handlers[m] = (...a: unknown[]) => fn.apply(driver, a);
  }
  const peer = new RpcPeer(io, handlers, { attached: onAttached });
  driver.setTpmKeySource((id) => peer.call<Buffer>('key.tpm', id));
  driver.setDiskKeySource((id) => peer.call<Buffer>('key.disk', id));
  driver.setVolumeKeySource((id) => peer.call<Buffer | null>('key.volume', id));
  const unsubscribe = driver.onEvent((id, event, data) => peer.notify('event', id, event, data ?? null));
  peer.onClose(() => {
    unsubscribe();
    for (const d of disks.values()) void d.close().catch(() => undefined);
    disks.clear();
  });
  return peer;
}

/**
 * The agent host's nftables: the control plane sends the desired state of the
 * ports placed here (the security groups, compiled by the same code as the
 * local host's), and the agent applies it with the same fail-closed
 * NftDataplane (lockdown when an apply fails).
 */
export class AgentFirewall {
  private state: Omit<CompileInput, 'table'> | null = null;
  readonly dataplane = new NftDataplane({
    load: async () => this.state ?? { ports: [], groups: [] },
  });

  async apply(state: Omit<CompileInput, 'table'>): Promise<void> {
    if (!state || !Array.isArray(state.ports) || !Array.isArray(state.groups))
      throw new BulwarkError('BadRequest', 'the firewall state needs ports and groups');
    this.state = state;
    await this.dataplane.sync('control plane');
  }
}
