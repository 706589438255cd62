import { BulwarkError } from '../../errors.js';
import {
  type CompileInput,
  compileGroupMembers,
  compileQuarantine,
  compileRuleset,
} from '../../network/compile.js';
import { compileLockdown, lockdownTable } from '../../network/compile-lockdown.js';
import type { DataplaneSync } from '../../network/networks.js';
import {
  applyCommands,
  applyRuleset,
  type CounterReading,
  deleteTables,
  type NftOptions,
  readCounters,
} from './nft.js';

export interface NftDataplaneOptions extends NftOptions {
  /** Table name for the inet and arp tables. */
  table?: string;
  /** Reads the desired state (e.g. `network/dataplane-state.ts#loadDataplaneState`). */
  load: () => Promise<Omit<CompileInput, 'table'>>;
  /** Host-side work that must precede the ruleset, e.g. gateway addresses (`prepareRouter`). */
  prepare?: () => Promise<void>;
  /** Told when the host enters or leaves lockdown (for the audit log). */
  onLockdown?: (on: boolean, cause?: Error) => void;
  /** How often a locked-down dataplane retries the full apply. */
  retryMs?: number;
}

/**
 * The nftables dataplane: on every change, reads the whole desired state,
 * compiles it and replaces the ruleset in one transaction. Full recompiles
 * keep it simple and self-healing (a hand-edited or missing table is fixed by
 * the next sync).
 *
 * Fail closed: when a full apply fails, the VM devices are cut off by a
 * separate lockdown table until an apply succeeds (retried in the
 * background), because the change that failed may have been a revocation.
 */
export class NftDataplane implements DataplaneSync {
  readonly table: string;
  private locked = false;
  private retry: NodeJS.Timeout | undefined;
  private tail: Promise<unknown> = Promise.resolve();
  private queued = 0;

  constructor(private readonly opts: NftDataplaneOptions) {
    this.table = opts.table ?? 'bulwark';
  }

  private get nftOpts(): NftOptions {
    return {
      ...(this.opts.netns === undefined ? {} : { netns: this.opts.netns }),
      ...(this.opts.nft ? { nft: this.opts.nft } : {}),
    };
  }

  get lockedDown(): boolean {
    return this.locked;
  }

  /**
   * One sync at a time: a background retry and an API change must not both
   * decide to lock down or lift the lockdown (and audit it twice).
   */
  sync(reason: string): Promise<void> {
    this.queued++;
    const run = this.tail.then(() => this.syncNow(reason)).finally(() => this.queued--);
    this.tail = run.catch(() => undefined);
    return run;
  }

  private async syncNow(reason: string): Promise<void> {
    try {
      await this.opts.prepare?.();
      const state = await this.opts.load();
      await applyRuleset(compileRuleset({ table: this.table, ...state }), this.nftOpts);
    } catch (err) {
      const cause = err instanceof Error ? err : new Error(String(err));
      const why = `The change (${reason}) is saved, but the host could not enforce it: ${cause.message.split('\n')[0]}.`;
      // Retry whatever happens next: the stored state must reach the kernel as soon as nft lets it.
      if (!this.retry) {
        this.retry = setInterval(
          // A tick while a sync is queued or running would only repeat it.
          () => void (this.queued ? undefined : this.sync('retry after a failed apply').catch(() => {})),
          this.opts.retryMs ?? 10_000,
        );
        this.retry.unref();
      }
      try {
        await this.lockDown(cause);
      } catch (lockErr) {
        throw new BulwarkError(
          'Unavailable',
          `${why} Locking the VM ports down failed too (${String(lockErr)}); the previous rules stay in force. Check nftables on the host.`,
          { cause },
        );
      }
      throw new BulwarkError(
        'Unavailable',
        `${why} Every VM port on this host is cut off until the rules apply; Bulwark retries on its own.`,
        { cause },
      );
    }
    this.close();
    if (this.locked) await this.release();
  }

  private async lockDown(cause: Error): Promise<void> {
    // The lockdown batch is tiny and independent of the main tables; if even it fails, the old rules stay.
    await applyRuleset(compileLockdown(this.table, ['tap']), { ...this.nftOpts, keepCounters: false });
    if (!this.locked) this.opts.onLockdown?.(true, cause);
    this.locked = true;
  }

  private async release(): Promise<void> {
    await deleteTables(lockdownTable(this.table), this.nftOpts);
    this.locked = false;
    this.opts.onLockdown?.(false);
  }

  /** Stops retrying (daemon shutdown); the kernel keeps whatever tables are in force. */
  close(): void {
    clearInterval(this.retry);
    this.retry = undefined;
  }

  /** Cuts (or restores) every packet of these devices at once; persist the flag and sync too. */
  quarantine(devices: readonly string[], on: boolean): Promise<void> {
    return applyCommands(compileQuarantine(this.table, devices, on), this.nftOpts);
  }

  /** Replaces a remote group's member addresses without rebuilding the table. */
  setGroupMembers(groupId: string, members: readonly string[]): Promise<void> {
    return applyCommands(compileGroupMembers(this.table, groupId, members), this.nftOpts);
  }

  counters(): Promise<CounterReading[]> {
    return readCounters(this.table, this.nftOpts);
  }
}
