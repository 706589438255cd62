import { type AuditWriter, systemEvent } from '../audit/writer.js';
import { BulwarkError } from '../errors.js';
import type { FsUsage } from '../host/storage-pools.js';
import type { AuthContext } from '../policy/context.js';

/**
 * Storage thresholds (docs/storage-thresholds.md): each storage pool (the
 * filesystem holding server disks, volumes or images) warns at `warnPercent`
 * used and refuses new allocations at `refusePercent`, naming the pool, its
 * usage and the threshold. Usage is measured at each allocation, never cached,
 * so space freed on the host counts at once.
 */
export const POOLS = ['instances', 'volumes', 'images'] as const;
export type PoolName = (typeof POOLS)[number];

export interface Thresholds {
  warnPercent: number;
  refusePercent: number;
}
export const DEFAULT_THRESHOLDS: Readonly<Thresholds> = { warnPercent: 80, refusePercent: 95 };

export type PoolState = 'ok' | 'warning' | 'full';

export interface PoolStatus {
  name: PoolName;
  path: string;
  total_bytes: number;
  used_bytes: number;
  available_bytes: number;
  /** Used share of what the daemon can use (used + available), as df's Use%. */
  used_percent: number;
  state: PoolState;
  warn_percent: number;
  refuse_percent: number;
}

/** Refuses thresholds that cannot work (e.g. a warning above the refusal). */
export function checkThresholds(t: Thresholds): Thresholds {
  const ok = (n: number) => Number.isFinite(n) && n > 0 && n <= 100;
  if (!ok(t.warnPercent) || !ok(t.refusePercent) || t.warnPercent >= t.refusePercent)
    throw new Error(
      `storage thresholds warn ${t.warnPercent}% / refuse ${t.refusePercent}% do not hold 0 < warn < refuse <= 100; ` +
        'try --storage-warn-percent 80 --storage-refuse-percent 95',
    );
  return t;
}

export const usedPercent = (u: FsUsage): number => {
  const usable = u.usedBytes + u.availableBytes;
  return usable === 0 ? 100 : Math.round((u.usedBytes / usable) * 1000) / 10;
};

export function stateOf(percent: number, t: Thresholds): PoolState {
  return percent >= t.refusePercent ? 'full' : percent >= t.warnPercent ? 'warning' : 'ok';
}

const mib = (b: number) => `${(b / 2 ** 20).toFixed(1)} MiB`;

/** What other rooms call before they allocate: throws when the pool is at or above the refusal threshold. */
export interface StorageGate {
  check(pool: PoolName, what: string, auth?: AuthContext): Promise<void>;
}

export class StoragePools implements StorageGate {
  /** The last state audited per pool, so a warning is recorded when it starts, not on every request. */
  private readonly seen = new Map<PoolName, PoolState>();

  constructor(
    private readonly paths: Readonly<Record<PoolName, string>>,
    private readonly thresholds: Thresholds,
    private readonly measure: (path: string) => Promise<FsUsage>,
    private readonly audit: AuditWriter,
    private readonly log: (msg: string) => void = (m) => console.warn(m),
  ) {
    checkThresholds(thresholds);
  }

  async status(name: PoolName): Promise<PoolStatus> {
    const path = this.paths[name];
    const u = await this.measure(path);
    const pct = usedPercent(u);
    return {
      name,
      path,
      total_bytes: u.totalBytes,
      used_bytes: u.usedBytes,
      available_bytes: u.availableBytes,
      used_percent: pct,
      state: stateOf(pct, this.thresholds),
      warn_percent: this.thresholds.warnPercent,
      refuse_percent: this.thresholds.refusePercent,
    };
  }

  /** Every pool's status; a pool that crossed a threshold since last seen is logged and audited. */
  async list(): Promise<PoolStatus[]> {
    const all = await Promise.all(POOLS.map((p) => this.status(p)));
    for (const s of all) await this.notice(s);
    return all;
  }

  async check(pool: PoolName, what: string, auth?: AuthContext): Promise<void> {
    const s = await this.status(pool);
    await this.notice(s, auth);
    if (s.state === 'full')
      throw new BulwarkError(
        'InsufficientStorage',
        `Storage pool ${pool} (${s.path}) is ${s.used_percent}% used (${mib(s.used_bytes)} of ${mib(s.used_bytes + s.available_bytes)}), ` +
          `at or above its ${s.refuse_percent}% limit for new allocations; the ${what} was not created. ` +
          'Free space in the pool, or an operator raises --storage-refuse-percent.',
      );
  }

  private async notice(s: PoolStatus, auth?: AuthContext): Promise<void> {
    const before = this.seen.get(s.name) ?? 'ok';
    this.seen.set(s.name, s.state);
    if (s.state === before || s.state === 'ok') return;
    const msg = `storage pool ${s.name} (${s.path}) is ${s.used_percent}% used: ${
      s.state === 'full'
        ? `at or above ${s.refuse_percent}%, new allocations refused`
        : `above ${s.warn_percent}%`
    }`;
    this.log(`bulwark: ${msg}`);
    await this.audit.append(
      systemEvent({
        action: s.state === 'full' ? 'storage:pool_full' : 'storage:pool_warning',
        reason: msg,
        target: { type: 'storage-pool', id: s.name },
        outcome: s.state === 'full' ? 'failure' : 'success',
        ...(auth ? { actor: auth } : {}),
      }),
    );
  }
}
