import { BulwarkError } from '../../errors.js';
import {
  type CompileInput,
  compileGroupMembers,
  compileQuarantine,
  compileRuleset,
  type GroupState,
  groupObjectsOf,
} from '../../network/compile.js';
import { addrSetDecl } from '../../network/compile-incremental.js';
import { compileLockdown, lockdownTable } from '../../network/compile-lockdown.js';
import { names } from '../../network/dataplane-names.js';
import type { DataplaneSync } from '../../network/networks.js';
import type { NftCommand } from '../../network/nft-json.js';
import { nativeBatch } from '../../network/nft-text.js';
import { type GroupObjects, groupDeclarations, groupRemoval, groupUpdate } from '../../network/sg-sets.js';
import {
  applyCommands,
  applyRuleset,
  type CounterReading,
  deleteTables,
  type NftOptions,
  readCounters,
} from './nft.js';
import { NftSession } from './nft-session.js';

export interface NftDataplaneOptions extends NftOptions {
  /** Table name for the inet and arp tables. */
  table?: string;
  /** Reads the desired state (e.g. `network/dataplane-state.ts#loadDataplaneState`). */
  load: () => Promise<Omit<CompileInput, 'table'>>;
  /** Reads just these groups (their rules) for an in-place update; `load` when absent. */
  loadGroups?: (ids: readonly string[]) => Promise<GroupState[]>;
  /** Host-side work that must precede the ruleset, e.g. gateway addresses (`prepareRouter`). */
  prepare?: () => Promise<void>;
  /** Told when the host enters or leaves lockdown (for the audit log). */
  onLockdown?: (on: boolean, cause?: Error) => void;
  /** How often a locked-down dataplane retries the full apply. */
  retryMs?: number;
  /** How long an in-place batch may wait for the long-lived nft's answer before it is killed (default 10 s). */
  sessionTimeoutMs?: number;
}

/**
 * The nftables dataplane: on a change, reads the whole desired state,
 * compiles it and replaces the ruleset in one transaction. Full recompiles
 * keep it simple and self-healing (a hand-edited or missing table is fixed by
 * the next sync).
 *
 * A change to a group's rules only (`syncGroups`) is applied in place: the
 * group's sets and chain (network/sg-sets.ts) are diffed against what the
 * last successful apply put in the kernel, and the difference goes in as one
 * small transaction, whatever the number of ports using the group, through
 * a long-lived `nft -i` (host/net/nft-session.ts) that keeps nft's cache of
 * the table between batches; a batch with no native rendering goes as a
 * one-off `nft -j -f`. Its result
 * equals a full recompile of the same state (test/net/sg-incremental.test.ts);
 * if the batch fails (the kernel's table is not what we applied), the full
 * apply runs instead, with its lockdown when that fails too.
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
  /** The full sync and the group batch waiting for their turn (not started): later changes join them. */
  private pendingFull: Pending | undefined;
  private pendingGroups: Pending | undefined;
  /** Each group's objects as last applied; undefined until a full apply succeeds, and after a failure. */
  private applied: Map<string, GroupObjects> | undefined;
  private readonly session: NftSession;

  constructor(private readonly opts: NftDataplaneOptions) {
    this.table = opts.table ?? 'bulwark';
    this.session = new NftSession({
      ...this.nftOpts,
      ...(opts.sessionTimeoutMs ? { timeoutMs: opts.sessionTimeoutMs } : {}),
    });
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
   * decide to lock down or lift the lockdown (and audit it twice). A sync
   * asked for while another is waiting for its turn joins it: that one reads
   * the state when it starts, so it carries this change too (under load, one
   * apply serves many writes instead of each waiting for its own).
   */
  sync(reason: string): Promise<void> {
    if (this.pendingFull) return this.pendingFull.join(reason);
    const batch = new Pending(reason);
    this.pendingFull = batch;
    return batch.start(
      this.queue(() => {
        if (this.pendingFull === batch) this.pendingFull = undefined;
        return this.syncNow(batch.reason());
      }),
    );
  }

  /**
   * Applies a change to these groups' rules in place (one transaction). On the
   * same queue as `sync`, and reading the state when its turn comes, so two
   * changes that arrive together are neither lost nor applied out of order;
   * changes waiting for their turn together go in as one batch (or with the
   * full sync that is waiting, which covers them).
   */
  syncGroups(groupIds: readonly string[], reason: string): Promise<void> {
    if (this.pendingFull) return this.pendingFull.join(reason);
    if (this.pendingGroups) return this.pendingGroups.join(reason, groupIds);
    const batch = new Pending(reason, groupIds);
    this.pendingGroups = batch;
    return batch.start(
      this.queue(() => {
        if (this.pendingGroups === batch) this.pendingGroups = undefined;
        return this.syncGroupsNow([...batch.ids], batch.reason());
      }),
    );
  }

  private async syncGroupsNow(ids: readonly string[], reason: string): Promise<void> {
    if (this.locked || !this.applied) return this.syncNow(reason);
    const applied = this.applied;
    let next: Map<string, GroupObjects>;
    try {
      const groups = this.opts.loadGroups
        ? await this.opts.loadGroups(ids)
        : (await this.opts.load()).groups.filter((g) => ids.includes(g.id));
      next = groupObjectsOf(groups);
      const cmds = ids.flatMap((id) => {
        const was = applied.get(id);
        const now = next.get(id);
        if (was && now) return groupUpdate(this.table, was, now);
        // A new group has no port yet (a port joining one is a full sync): empty member sets, then its own objects.
        if (now) return placeGroup(this.table, id, now);
        // A deleted group: nothing jumps to it (it had no port) and no other group's rule names it.
        if (was) return removeGroup(this.table, id, was);
        return [];
      });
      const text = cmds.length ? nativeBatch(cmds) : '';
      if (text === undefined || text.length > NftSession.maxLine) await applyCommands(cmds, this.nftOpts);
      else if (text) await this.session.run(text);
    } catch {
      // Whatever failed (a table edited by hand, a group still referenced, the session died mid-batch:
      // the kernel committed all of it or none): the full path heals it.
      return this.syncNow(reason);
    }
    for (const id of ids) {
      const g = next.get(id);
      if (g) applied.set(id, g);
      else applied.delete(id);
    }
  }

  private queue(work: () => Promise<void>): Promise<void> {
    this.queued++;
    const run = this.tail.then(work).finally(() => this.queued--);
    this.tail = run.catch(() => undefined);
    return run;
  }

  private async syncNow(reason: string): Promise<void> {
    this.applied = undefined;
    try {
      await this.opts.prepare?.();
      const state = await this.opts.load();
      await applyRuleset(compileRuleset({ table: this.table, ...state }), this.nftOpts);
      this.applied = groupObjectsOf(state.groups);
      await this.warmSession(this.applied);
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
    this.stopRetry();
    if (this.locked) await this.release();
  }

  /**
   * After a full apply (another nft process committed) the session's cache is stale; re-adding one
   * element that is in force makes it read the table now, not during the next rule change. A no-op
   * for the kernel; if it fails, the next batch re-reads (or falls back) as it would anyway.
   */
  private async warmSession(applied: Map<string, GroupObjects>): Promise<void> {
    for (const g of applied.values())
      for (const s of g.sets) {
        if (!s.elem.length) continue;
        const text = nativeBatch([
          { add: { element: { family: 'inet', table: this.table, name: s.name, elem: s.elem.slice(0, 1) } } },
        ]);
        if (text) await this.session.run(text).catch(() => undefined);
        return;
      }
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

  private stopRetry(): void {
    clearInterval(this.retry);
    this.retry = undefined;
  }

  /** Stops retrying and ends the nft session (daemon shutdown); the kernel keeps whatever tables are in force. */
  close(): void {
    this.stopRetry();
    this.session.close();
  }

  /** The in-place session's nft pid, while one runs (tests kill it). */
  get sessionPid(): number | undefined {
    return this.session.pid;
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

/** Commands that put a group the kernel does not have yet in place, as the full compile declares it. */
function placeGroup(table: string, id: string, g: GroupObjects): NftCommand[] {
  const d = groupDeclarations(table, g);
  return [
    addrSetDecl(table, names.groupSet(id, 4), 4, []),
    addrSetDecl(table, names.groupSet(id, 6), 6, []),
    ...d.sets,
    ...d.chains,
    ...d.rules,
  ];
}

/** A deleted group's objects and member sets, out of the kernel. */
function removeGroup(table: string, id: string, g: GroupObjects): NftCommand[] {
  return [
    ...groupRemoval(table, g),
    ...([4, 6] as const).map(
      (f): NftCommand => ({ delete: { set: { family: 'inet', table, name: names.groupSet(id, f) } } }),
    ),
  ];
}

/** A sync waiting for its turn, which later ones join; its reason names what it carries. */
class Pending {
  readonly ids: Set<string>;
  private readonly reasons: string[];
  private run: Promise<void> | undefined;

  constructor(reason: string, ids: readonly string[] = []) {
    this.reasons = [reason];
    this.ids = new Set(ids);
  }

  start(run: Promise<void>): Promise<void> {
    this.run = run;
    return run;
  }

  join(reason: string, ids: readonly string[] = []): Promise<void> {
    for (const id of ids) this.ids.add(id);
    this.reasons.push(reason);
    if (!this.run) throw new Error('a pending sync joined before it was queued');
    return this.run;
  }

  reason(): string {
    const [first, ...more] = this.reasons;
    return more.length ? `${first} and ${more.length} more change(s)` : (first ?? '');
  }
}
