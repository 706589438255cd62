import type { Duplex } from 'node:stream';
import type { PassthroughPlan } from '../compute/passthrough-policy.js';
import type { DiskHandle } from './disk-export.js';
import type { ForensicFile } from './forensics.js';

/** The boundary between the compute domain and whatever runs guests (docs/host.md). */
export type GuestState = 'running' | 'paused' | 'shutoff' | 'suspended' | 'crashed' | 'missing';

export interface GuestSpec {
  /** The server's UUID. */
  id: string;
  name: string;
  vcpus: number;
  memoryMiB: number;
  /** The cgroup's memory.max in MiB (a profile's `memory_max_mb`); absent: memoryLimitBytes(memoryMiB). */
  memoryMaxMiB?: number;
  machine: 'pc' | 'q35';
  firmware: { type: 'bios' } | { type: 'uefi'; secureBoot: boolean };
  /** The driver makes a per-VM qcow2 overlay backed by the image, sized to sizeGiB (0 = image size). */
  bootDisk: {
    imagePath: string;
    imageFormat: 'raw' | 'qcow2';
    sizeGiB: number;
    /**
     * The overlay is LUKS-encrypted (docs/volumes.md), its key from the disk key
     * source: the disk is then plugged in over QMP before `cont`, never named
     * on the command line with its key.
     */
    encrypted?: boolean;
  };
  /**
   * `pinning`: host CPUs (hw:cpu_policy=dedicated); `quotaPercent`: CFS quota in percent of one CPU;
   * `features`: allow-listed QEMU `-cpu` options (`+aes`), started with `enforce`.
   */
  cpu?: { pinning?: number[]; quotaPercent?: number; features?: string[] };
  /** Nova's quota:disk_* limits; 0 or absent = unlimited. */
  io?: {
    readBytesSec?: number;
    writeBytesSec?: number;
    totalBytesSec?: number;
    readIopsSec?: number;
    writeIopsSec?: number;
    totalIopsSec?: number;
  };
  /**
   * A cloud-init NoCloud seed disk (label `cidata`, read-only) with `instance-id` = `id`
   * and `local-hostname` from `name` (nocloud.ts); never secrets.
   */
  cloudInit?: boolean;
  /** fw_cfg blobs by name (opt/...), e.g. `opt/org.bulwark/run` for user data. */
  fwCfg?: Record<string, string>;
  /**
   * A vTPM (one swtpm per guest, its state encrypted with the key from
   * `setTpmKeySource`). `socketPath` is the driver's to fill in (swtpm's
   * control socket in the guest's dir); whatever the caller passes is replaced.
   */
  tpm?: { version: '1.2' | '2.0'; model: 'tpm-tis' | 'tpm-crb'; socketPath?: string };
  /** `ips`: the port's fixed IPs, routed to the tap; `gateways`: its IPv4 subnets' `GW/LEN` (for DHCP). */
  nics?: { tap: string; mac: string; ips: string[]; gateways?: string[] }[];
  /** A guest agent channel on a socket in the guest's dir that only the daemon talks to (guest-agent.ts). */
  guestAgent?: boolean;
  /** Host PCI (VFIO) and USB devices, as decided by compute/passthrough-policy.ts. */
  hostDevices?: Pick<PassthroughPlan, 'pci' | 'usb'>;
}

export interface HypervisorDriver {
  readonly accel: 'kvm' | 'tcg';
  /** Creates the guest's user, dirs, overlay disk and firmware vars; idempotent (keeps an existing disk). */
  define(spec: GuestSpec): Promise<void>;
  /** Starts the guest; resolves once it runs. Rejects with a BulwarkError quoting QEMU on failure. */
  start(id: string): Promise<void>;
  /** ACPI power-off, forced after `timeoutMs`. */
  shutdown(id: string, opts?: { timeoutMs?: number }): Promise<void>;
  reboot(id: string): Promise<void>;
  pause(id: string): Promise<void>;
  unpause(id: string): Promise<void>;
  /** Saves RAM and device state to disk and ends the process. */
  suspend(id: string): Promise<void>;
  /** Restarts from the saved state. */
  resume(id: string): Promise<void>;
  state(id: string): Promise<GuestState>;
  consoleLog(id: string, maxLines?: number): Promise<string>;
  /**
   * The interactive serial console: a byte stream to and from the guest's
   * serial port (QEMU takes one client at a time). Only the daemon reaches it.
   */
  openConsole(id: string): Promise<Duplex>;
  processInfo(id: string): Promise<{ pid: number; uid: number; user: string } | null>;
  /** Memory dump (if running) and disk overlay into `destDir`, hashed; the guest should be paused. */
  forensicSnapshot(id: string, destDir: string): Promise<ForensicFile[]>;
  /** Kills the guest and removes its disks, dirs, cgroup and user; idempotent. */
  undefine(id: string): Promise<void>;
  /** After a daemon restart: adopt running guests, report vanished ones, kill unknown ones. */
  /**
   * `tpmLost`: vTPM guests found running without their swtpm, now stopped
   * (fail closed); the control plane restarts them (docs/host.md).
   */
  reconcile(
    knownIds: string[],
  ): Promise<{ adopted: string[]; vanished: string[]; orphansKilled: string[]; tpmLost?: string[] }>;
  /**
   * QMP events (SHUTDOWN, STOP, RESUME, RESET, ...), EXITED when a guest's
   * process ends, and TPM_LOST (`{ reason }`) when its swtpm ended under a
   * running QEMU and the driver stopped the guest for it.
   */
  onEvent(listener: (id: string, event: string, data: unknown) => void): () => void;
  /**
   * Sends one already-filtered request (compute/guest-agent.ts) to the guest's
   * agent and returns its parsed reply ({return} or {error}). Unavailable when
   * the guest has no channel or its agent does not answer in time.
   */
  guestAgent(id: string, request: string): Promise<unknown>;
  /** Disconnects but leaves guests running. */
  close(): Promise<void>;

  // ---- vTPM (docs/host.md, "vTPM") ----
  /** Where the driver gets a guest's vTPM state key; until set, vTPM guests do not start. */
  setTpmKeySource(source: TpmKeySource): void;

  // ---- volumes (docs/volumes.md) ----
  /**
   * Creates volume `id`, `bytes` large: a qcow2 with QEMU native LUKS
   * (aes-xts-plain64) when `key` is given, its passphrase passed over a pipe.
   */
  createVolume(id: string, bytes: number, key: Buffer | null): Promise<void>;
  /** Grows a volume (never shrinks). */
  resizeVolume(id: string, bytes: number, key: Buffer | null): Promise<void>;
  /** Removes a volume's file; idempotent. Refused while attached. */
  deleteVolume(id: string): Promise<void>;
  /**
   * Where the driver gets a volume's key when it plugs it in (attach, and every
   * start of a guest with volumes): null for an unencrypted volume; throws if
   * the key cannot be had, and the plug then fails (never unencrypted).
   */
  setVolumeKeySource(source: VolumeKeySource): void;
  /** Attaches a volume: plugged in at once if the guest runs, and on every start. Returns the guest device. */
  attachVolume(serverId: string, volumeId: string): Promise<{ device: string }>;
  /** Unplugs (the guest must let go) and forgets the volume; idempotent. */
  detachVolume(serverId: string, volumeId: string): Promise<void>;
  /**
   * Replaces `toId`'s (defined, stopped) root overlay with a copy of stopped
   * `fromId`'s, re-encrypted under `toId`'s own disk key (docs/clones.md).
   */
  copyRootDisk(fromId: string, toId: string): Promise<void>;
  /** Where the driver gets an encrypted root disk's key (define and every start); throws: no start. */
  setDiskKeySource(source: DiskKeySource): void;

  // ---- backups (docs/backups.md) ----
  /**
   * A volume's plaintext, for a backup (`read`) or a restore (`write`). Read
   * while attached to `serverId`'s running guest: the guest is paused (QMP
   * `stop` drains and flushes its disks) until the handle is closed, so the
   * image is crash-consistent. Write: only while the volume is not attached,
   * or attached to `serverId` while that guest does not run.
   */
  openVolumeData(
    volumeId: string,
    key: Buffer | null,
    mode: 'read' | 'write',
    serverId?: string | null,
  ): Promise<DiskHandle>;
  /**
   * A server's root disk as its guest sees it (overlay over image), for a
   * server backup (`read`; a running guest is paused until close) or a
   * restore (`write`; the guest must not run).
   */
  openRootDisk(serverId: string, mode: 'read' | 'write'): Promise<DiskHandle>;
  // ---- snapshots (docs/snapshots.md): internal qcow2 snapshots, encrypted like their source ----
  /**
   * Snapshot `tag` of a volume (its key from the volume key source): live over
   * QMP when `serverId`'s running guest has it plugged, else with qemu-img.
   */
  snapshotVolume(volumeId: string, tag: string, serverId: string | null): Promise<void>;
  /** Removes a volume snapshot; one already gone is fine. */
  deleteVolumeSnapshot(volumeId: string, tag: string, serverId: string | null): Promise<void>;
  /**
   * Snapshot `tag` of a server's root overlay; `memory`: RAM and device state
   * too (the guest must be running, with no volumes attached).
   */
  snapshotServer(serverId: string, tag: string, opts: { memory: boolean }): Promise<void>;
  /** Removes a server snapshot; one already gone (or a guest no longer defined) is fine. */
  deleteServerSnapshot(serverId: string, tag: string): Promise<void>;
}

/**
 * The 256-bit key that encrypts a guest's vTPM state, fetched (from the key
 * manager, for the server's project) each time its swtpm starts; kept in
 * memory only. Throws when the key cannot be had: the guest then does not start.
 */
export type TpmKeySource = (serverId: string) => Promise<Buffer>;

export type VolumeKeySource = (volumeId: string) => Promise<Buffer | null>;

export type DiskKeySource = (serverId: string) => Promise<Buffer>;
