import { createHash } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { BulwarkError } from '../errors.js';
import type { ForensicFile } from './forensics.js';
import type { GuestSpec, GuestState, HypervisorDriver } from './hypervisor.js';

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
    this.guest(id).state = 'running';
  }
  async state(id: string): Promise<GuestState> {
    return this.guests.get(id)?.state ?? 'missing';
  }
  async consoleLog(id: string, maxLines?: number) {
    const log = this.guest(id).log;
    return (maxLines === undefined ? log : log.slice(-maxLines)).join('\n');
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
  async reconcile(knownIds: string[]) {
    const known = new Set(knownIds);
    const orphansKilled = [...this.guests.keys()].filter((id) => !known.has(id));
    for (const id of orphansKilled) this.guests.delete(id);
    return {
      adopted: knownIds.filter((id) => this.guests.get(id)?.state === 'running'),
      vanished: knownIds.filter((id) => !this.guests.has(id)),
      orphansKilled,
    };
  }
  onEvent(listener: (id: string, event: string, data: unknown) => void) {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
  /** Lets a test play the guest: e.g. emit(id, 'SHUTDOWN') as if it powered off. */
  emit(id: string, event: string) {
    const g = this.guests.get(id);
    if (g && event === 'SHUTDOWN') g.state = 'shutoff';
    for (const l of this.listeners) l(id, event, {});
  }
  async close() {}
}
