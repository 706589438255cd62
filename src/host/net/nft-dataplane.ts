import {
  type CompileInput,
  compileGroupMembers,
  compileQuarantine,
  compileRuleset,
} from '../../network/compile.js';
import type { DataplaneSync } from '../../network/networks.js';
import { applyCommands, applyRuleset, type CounterReading, type NftOptions, readCounters } from './nft.js';

export interface NftDataplaneOptions extends NftOptions {
  /** Table name for the inet and arp tables. */
  table?: string;
  /** Reads the desired state (e.g. `network/dataplane-state.ts#loadDataplaneState`). */
  load: () => Promise<Omit<CompileInput, 'table'>>;
}

/**
 * The nftables dataplane: on every change, reads the whole desired state,
 * compiles it and replaces the ruleset in one transaction. Full recompiles
 * keep it simple and self-healing (a hand-edited or missing table is fixed by
 * the next sync); the incremental helpers below are for the few changes that
 * must not wait for, or cannot afford, a rebuild.
 */
export class NftDataplane implements DataplaneSync {
  readonly table: string;

  constructor(private readonly opts: NftDataplaneOptions) {
    this.table = opts.table ?? 'bulwark';
  }

  private get nftOpts(): NftOptions {
    return {
      ...(this.opts.netns === undefined ? {} : { netns: this.opts.netns }),
      ...(this.opts.nft ? { nft: this.opts.nft } : {}),
    };
  }

  async sync(_reason: string): Promise<void> {
    const state = await this.opts.load();
    await applyRuleset(compileRuleset({ table: this.table, ...state }), this.nftOpts);
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
