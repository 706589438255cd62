import { createHash } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Duplex, PassThrough } from 'node:stream';
import { BulwarkError } from '../errors.js';
import type { ForensicFile } from './forensics.js';
import type {
  DiskKeySource,
  GuestSpec,
  GuestState,
  HypervisorDriver,
  TpmKeySource,
  VolumeKeySource,
} from './hypervisor.js';

/** Fake disks are 1 MiB blocks in memory; a block of zeros is never stored. */
const ZERO_BLOCK = Buffer.alloc(1024 * 1024);

/**
 * An in-memory hypervisor for API tests of the compute domain. The real
 * driver (qemu-driver.ts) is tested against real QEMU guests in test/host.
 */
export class FakeHypervisor implements HypervisorDriver {
  readonly accel = 'tcg' as const;
  readonly guests = new Map<string, { spec: GuestSpec; state: GuestState; log: string[] }>();
  private readonly listeners = new Set<(id: string, event: string, data: unknown) => void>();
  /** Makes the next start() fail with this message, as a bad image would. */
  failNextStart: string | undefined;

  private guest(id: string) {
    const g = this.guests.get(id);
    if (!g) throw new BulwarkError('NotFound', `guest ${id} is not defined`);
    return g;
  }

  async define(spec: GuestSpec) {
    const g = this.guests.get(spec.id);
    if (g) g.spec = spec;
    else this.guests.set(spec.id, { spec, state: 'shutoff', log: [] });
  }
  async start(id: string) {
    const g = this.guest(id);
    await this.tpmKeyFor(id, g.spec);
    if (this.failNextStart) {
      const msg = this.failNextStart;
      this.failNextStart = undefined;
      throw new BulwarkError('BadRequest', msg);
    }
    g.state = 'running';
    g.log.push('BULWARK-GUEST-READY');
  }
  async shutdown(id: string) {
    this.guest(id).state = 'shutoff';
  }
  async reboot(id: string) {
    this.guest(id).log.push('BULWARK-GUEST-READY');
  }
  async pause(id: string) {
    this.guest(id).state = 'paused';
  }
  async unpause(id: string) {
    this.guest(id).state = 'running';
  }
  async suspend(id: string) {
    this.guest(id).state = 'suspended';
  }
  async resume(id: string) {
    await this.tpmKeyFor(id, this.guest(id).spec);
    this.guest(id).state = 'running';
  }
  async state(id: string): Promise<GuestState> {
    return this.guests.get(id)?.state ?? 'missing';
  }
  async consoleLog(id: string, maxLines?: number) {
    const log = this.guest(id).log;
    return (maxLines === undefined ? log : log.slice(-maxLines)).join('\n');
  }
  /** What the fake guests' agents answer; the real channel is host/guest-agent-channel.ts. */
  agentReplies: Record<string, unknown> = { 'guest-ping': {}, 'guest-info': { version: 'fake' } };
  /** Every request that reached a fake guest's agent, as sent. */
  readonly agentRequests: string[] = [];
  async guestAgent(id: string, request: string): Promise<unknown> {
    const g = this.guest(id);
    if (!g.spec.guestAgent) throw new BulwarkError('Conflict', `Server ${id} has no guest agent channel.`);
    if (g.state !== 'running') throw new BulwarkError('Unavailable', 'The guest agent did not answer.');
    this.agentRequests.push(request);
    const { execute } = JSON.parse(request) as { execute: string };
    return execute in this.agentReplies
      ? { return: this.agentReplies[execute] }
      : { error: { class: 'CommandNotFound', desc: `The command ${execute} has not been found` } };
  }

  /**
   * A shell-like console: echoes what is typed and answers each line with
   * `fake: LINE` and a prompt, as a terminal would, so sessions can be recorded.
   */
  async openConsole(id: string): Promise<Duplex> {
    if (this.guest(id).state !== 'running')
      throw new BulwarkError('Conflict', `Server ${id} is not running.`);
    const toGuest = new PassThrough();
    const fromGuest = new PassThrough();
    let line = '';
    toGuest.on('data', (b: Buffer) => {
      for (const ch of b.toString('utf8')) {
        if (ch === '\r' || ch === '\n') {
          fromGuest.write(`\r\nfake: ${line}\r\n# `);
          line = '';
        } else {
          line += ch;
          fromGuest.write(ch);
        }
      }
    });
    fromGuest.write('# ');
    return new DuplexPair(toGuest, fromGuest);
  }
  async processInfo(id: string) {
    return this.guests.get(id)?.state === 'running' ? { pid: 1, uid: 1, user: 'fake' } : null;
  }
  /** Writes what the guest "holds" (its state and spec) so the domain's hashing and manifest are exercised. */
  async forensicSnapshot(id: string, destDir: string): Promise<ForensicFile[]> {
    const g = this.guest(id);
    const files: [string, string][] = [['disk-overlay.qcow2', JSON.stringify(g.spec)]];
    if (g.state === 'running' || g.state === 'paused') files.unshift(['memory.elf', g.log.join('\n')]);
    return files.map(([name, text]) => {
      writeFileSync(join(destDir, name), text, { mode: 0o600, flag: 'wx' });
      return {
        name,
        bytes: Buffer.byteLength(text),
        sha256: createHash('sha256').update(text).digest('hex'),
      };
    });
  }
  async undefine(id: string) {
    this.guests.delete(id);
  }
  /** Which disk each clone's was copied from. */
  readonly copiedDisks = new Map<string, string>();
  async copyRootDisk(fromId: string, toId: string) {
    if (this.guest(fromId).state !== 'shutoff')
      throw new BulwarkError('Conflict', `Server ${fromId} is running; stop it before cloning it.`);
    this.guest(toId);
    this.copiedDisks.set(toId, fromId);
  }
  /** Guests whose swtpm the next reconcile finds dead: stopped then and reported, as the real driver does. */
  readonly tpmGoneAtReconcile = new Set<string>();
  async reconcile(knownIds: string[]) {
    const known = new Set(knownIds);
    const orphansKilled = [...this.guests.keys()].filter((id) => !known.has(id));
    for (const id of orphansKilled) this.guests.delete(id);
    const tpmLost = knownIds.filter(
      (id) => this.tpmGoneAtReconcile.delete(id) && this.guests.get(id)?.state === 'running',
    );
    for (const id of tpmLost) this.guest(id).state = 'shutoff';
    return {
      adopted: knownIds.filter((id) => this.guests.get(id)?.state === 'running'),
      vanished: knownIds.filter((id) => !this.guests.has(id)),
      orphansKilled,
      tpmLost,
    };
  }
  onEvent(listener: (id: string, event: string, data: unknown) => void) {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
  /**
   * Lets a test play the guest or the host: emit(id, 'SHUTDOWN') as if it
   * powered off, emit(id, 'TPM_LOST', { reason }) as if its swtpm died (the
   * real driver has stopped the guest then).
   */
  emit(id: string, event: string, data: unknown = {}) {
    const g = this.guests.get(id);
    if (g && (event === 'SHUTDOWN' || event === 'TPM_LOST')) g.state = 'shutoff';
    for (const l of this.listeners) l(id, event, data);
  }
  async close() {}

  // ---- vTPM: as the real driver, a vTPM guest starts only with its key (never unencrypted) ----
  private tpmKeySource: TpmKeySource | undefined;
  /** The length of the key each vTPM start got, by server id (the bytes are not kept). */
  readonly tpmKeysSeen = new Map<string, number>();
  setTpmKeySource(source: TpmKeySource): void {
    this.tpmKeySource = source;
  }
  private async tpmKeyFor(id: string, spec: GuestSpec): Promise<void> {
    if (!spec.tpm) return;
    if (!this.tpmKeySource) throw new BulwarkError('Unavailable', 'No vTPM key source; refusing to start.');
    const key = await this.tpmKeySource(id).catch((err: Error) => {
      throw new BulwarkError('Unavailable', `The vTPM key could not be read: ${err.message}`);
    });
    if (key.length !== 32) throw new BulwarkError('Unavailable', 'The vTPM key must be 256 bits.');
    this.tpmKeysSeen.set(id, key.length);
  }

  // ---- volumes: files in memory; as the real driver, an attached volume is plugged with its key ----
  private volumeKeySource: VolumeKeySource | undefined;
  /** Each volume's size and whether it was created encrypted (the key itself is not kept). */
  readonly volumes = new Map<string, { bytes: number; encrypted: boolean; attachedTo: string | null }>();
  /** Makes the next createVolume() fail with this message, as a full disk would. */
  failNextVolume: string | undefined;
  async createVolume(id: string, bytes: number, key: Buffer | null) {
    if (this.failNextVolume) {
      const msg = this.failNextVolume;
      this.failNextVolume = undefined;
      throw new BulwarkError('Unavailable', msg);
    }
    if (key && key.length !== 32 && key.length !== 64)
      throw new BulwarkError('Unavailable', 'bad volume key length');
    this.volumes.set(id, { bytes, encrypted: key !== null, attachedTo: null });
  }
  async resizeVolume(id: string, bytes: number) {
    const v = this.volumes.get(id);
    if (!v) throw new BulwarkError('NotFound', `volume ${id} is not on this host`);
    v.bytes = Math.max(v.bytes, bytes);
  }
  async deleteVolume(id: string) {
    if (this.volumes.get(id)?.attachedTo) throw new BulwarkError('Conflict', `volume ${id} is attached`);
    this.volumes.delete(id);
    this.volumeData.delete(id);
  }
  /** Volume contents, sparse: 1 MiB blocks that were written. */
  readonly volumeData = new Map<string, Map<number, Buffer>>();
  /** Guests paused while a backup reads their volume (the real driver pauses with QMP `stop`). */
  readonly pausedForBackup = new Set<string>();
  async openVolumeData(id: string, key: Buffer | null, mode: 'read' | 'write', serverId?: string | null) {
    const v = this.volumes.get(id);
    if (!v) throw new BulwarkError('NotFound', `volume ${id} is not on this host`);
    if (v.encrypted !== (key !== null)) throw new BulwarkError('Conflict', 'volume key does not fit');
    if (mode === 'write' && v.attachedTo && (!serverId || this.guests.get(serverId)?.state === 'running'))
      throw new BulwarkError('Conflict', `volume ${id} is attached`);
    const g = serverId ? this.guests.get(serverId) : undefined;
    const pause = mode === 'read' && g?.state === 'running';
    if (pause && serverId) this.pausedForBackup.add(serverId);
    return this.blockDisk(id, v.bytes, () => {
      if (serverId) this.pausedForBackup.delete(serverId);
    });
  }
  /** A server's root disk, in memory like volumes (under `root:<id>`), sized by its flavor. */
  async openRootDisk(id: string, mode: 'read' | 'write') {
    const g = this.guest(id);
    if (mode === 'write' && g.state === 'running')
      throw new BulwarkError('Conflict', `Server ${id} is running; stop it first.`);
    const pause = mode === 'read' && g.state === 'running';
    if (pause) this.pausedForBackup.add(id);
    return this.blockDisk(`root:${id}`, Math.max(1, g.spec.bootDisk.sizeGiB) * 2 ** 30, () => {
      this.pausedForBackup.delete(id);
    });
  }
  private blockDisk(key: string, size: number, onClose: () => void) {
    const blocks = this.volumeData.get(key) ?? new Map<number, Buffer>();
    this.volumeData.set(key, blocks);
    const B = 1024 * 1024;
    return {
      size,
      read: async (off: number, len: number) => {
        const out = Buffer.alloc(len);
        for (let b = Math.floor(off / B); b * B < off + len; b++) {
          const blk = blocks.get(b);
          if (blk) blk.copy(out, Math.max(0, b * B - off), Math.max(0, off - b * B));
        }
        return out;
      },
      write: async (off: number, data: Buffer) => {
        for (let i = 0; i < data.length; ) {
          const b = Math.floor((off + i) / B);
          const at = (off + i) % B;
          const n = Math.min(B - at, data.length - i);
          // Zeros into a block never written read back as zeros already: keep the disk sparse in memory.
          if (!blocks.has(b) && data.subarray(i, i + n).equals(ZERO_BLOCK.subarray(0, n))) {
            i += n;
            continue;
          }
          const blk = blocks.get(b) ?? Buffer.alloc(B);
          data.copy(blk, at, i, i + n);
          blocks.set(b, blk);
          i += n;
        }
      },
      close: async () => onClose(),
    };
  }
  setVolumeKeySource(source: VolumeKeySource): void {
    this.volumeKeySource = source;
  }
  async attachVolume(serverId: string, volumeId: string) {
    this.guest(serverId);
    const v = this.volumes.get(volumeId);
    if (!v) throw new BulwarkError('NotFound', `volume ${volumeId} is not on this host`);
    if (!this.volumeKeySource) throw new BulwarkError('Unavailable', 'No volume key source.');
    const key = await this.volumeKeySource(volumeId);
    if (v.encrypted !== (key !== null)) throw new BulwarkError('Conflict', 'volume key does not fit');
    v.attachedTo = serverId;
    const n = [...this.volumes.values()].filter((x) => x.attachedTo === serverId).length;
    return { device: `/dev/vd${String.fromCharCode(97 + n)}` };
  }
  async detachVolume(_serverId: string, volumeId: string) {
    const v = this.volumes.get(volumeId);
    if (v) v.attachedTo = null;
  }

  // ---- encrypted root disks: as the real driver, an encrypted disk needs its key at define and start ----
  private diskKeySource: DiskKeySource | undefined;
  setDiskKeySource(source: DiskKeySource): void {
    this.diskKeySource = source;
  }
  /** Called by a test (or define/start) to check the key source as the real driver would. */
  async diskKeyFor(id: string): Promise<number> {
    if (!this.diskKeySource) throw new BulwarkError('Unavailable', 'No disk key source.');
    const key = await this.diskKeySource(id);
    return key.length;
  }

  // ---- snapshots: tags per volume or server; keys checked as the real driver needs them ----
  /** Snapshot tags by `volume:<id>` / `server:<id>`. */
  readonly snapshots = new Map<string, Set<string>>();
  private tags(key: string) {
    const set = this.snapshots.get(key) ?? new Set<string>();
    this.snapshots.set(key, set);
    return set;
  }
  /** Makes the next snapshot fail with this message, as a full disk would. */
  failNextSnapshot: string | undefined;
  private failIfAsked() {
    const msg = this.failNextSnapshot;
    this.failNextSnapshot = undefined;
    if (msg) throw new BulwarkError('Unavailable', msg);
  }
  async snapshotVolume(volumeId: string, tag: string) {
    this.failIfAsked();
    const v = this.volumes.get(volumeId);
    if (!v) throw new BulwarkError('NotFound', `volume ${volumeId} is not on this host`);
    if (!this.volumeKeySource) throw new BulwarkError('Unavailable', 'No volume key source.');
    if ((await this.volumeKeySource(volumeId)) === null && v.encrypted)
      throw new BulwarkError('Conflict', 'volume key does not fit');
    this.tags(`volume:${volumeId}`).add(tag);
  }
  async deleteVolumeSnapshot(volumeId: string, tag: string) {
    this.snapshots.get(`volume:${volumeId}`)?.delete(tag);
  }
  async snapshotServer(serverId: string, tag: string, opts: { memory: boolean }) {
    this.failIfAsked();
    const g = this.guest(serverId);
    if (opts.memory && g.state !== 'running')
      throw new BulwarkError(
        'Conflict',
        `Server ${serverId} is not running; a memory snapshot needs it running.`,
      );
    if (g.spec.bootDisk.encrypted) await this.diskKeyFor(serverId);
    this.tags(`server:${serverId}`).add(tag);
  }
  async deleteServerSnapshot(serverId: string, tag: string) {
    this.snapshots.get(`server:${serverId}`)?.delete(tag);
  }
}

/** Writes go to `sink`, reads come from `source`: the two ends of a fake serial line. */
class DuplexPair extends Duplex {
  constructor(
    private readonly sink: PassThrough,
    private readonly source: PassThrough,
  ) {
    super();
    source.on('data', (b: Buffer) => {
      if (!this.push(b)) source.pause();
    });
    source.on('end', () => this.push(null));
  }
  override _read(): void {
    this.source.resume();
  }
  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    this.sink.write(chunk, cb);
  }
  override _final(cb: () => void): void {
    this.source.end();
    cb();
  }
}
