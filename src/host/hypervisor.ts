/** The boundary between the compute domain and whatever runs guests. */
export type GuestState = 'running' | 'paused' | 'shutoff' | 'suspended' | 'crashed' | 'missing';

export interface GuestSpec {
  /** The server's UUID. */
  id: string;
  name: string;
  vcpus: number;
  memoryMiB: number;
  machine: 'pc' | 'q35';
  firmware: { type: 'bios' } | { type: 'uefi'; secureBoot: boolean };
  /** The driver makes a per-VM qcow2 overlay backed by the image, sized to sizeGiB (0 = image size). */
  bootDisk: { imagePath: string; imageFormat: 'raw' | 'qcow2'; sizeGiB: number };
  cpu?: { pinning?: number[]; quotaPercent?: number };
  io?: {
    readBytesSec?: number;
    writeBytesSec?: number;
    totalBytesSec?: number;
    readIopsSec?: number;
    writeIopsSec?: number;
    totalIopsSec?: number;
  };
  fwCfg?: Record<string, string>;
  tpm?: { version: '1.2' | '2.0'; model: 'tpm-tis' | 'tpm-crb'; socketPath: string };
  nics?: { tap: string; mac: string }[];
}

export interface HypervisorDriver {
  readonly accel: 'kvm' | 'tcg';
  define(spec: GuestSpec): Promise<void>;
  start(id: string): Promise<void>;
  shutdown(id: string, opts?: { timeoutMs?: number }): Promise<void>;
  reboot(id: string): Promise<void>;
  pause(id: string): Promise<void>;
  unpause(id: string): Promise<void>;
  suspend(id: string): Promise<void>;
  resume(id: string): Promise<void>;
  state(id: string): Promise<GuestState>;
  consoleLog(id: string, maxLines?: number): Promise<string>;
  processInfo(id: string): Promise<{ pid: number; uid: number; user: string } | null>;
  undefine(id: string): Promise<void>;
  reconcile(knownIds: string[]): Promise<{ adopted: string[]; vanished: string[]; orphansKilled: string[] }>;
  onEvent(listener: (id: string, event: string, data: unknown) => void): () => void;
  close(): Promise<void>;
}
