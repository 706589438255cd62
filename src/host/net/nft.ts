import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { NftCommand, NftCounter, NftFamily, NftRuleset, NftTable } from '../../network/nft-json.js';
import { type NetnsOption, runNet } from './exec.js';

/**
 * Applies compiled rulesets with nft(8) in JSON mode. Every change is one
 * `nft -j -f` batch, which the kernel commits as one transaction: a reader
 * (or a packet) sees the old ruleset or the new one, never a table that is
 * half-built or missing.
 */

export interface NftOptions extends NetnsOption {
  /** nft binary; `nft` from PATH by default. */
  nft?: string;
}

export interface CounterReading {
  family: NftFamily;
  table: string;
  name: string;
  packets: number;
  bytes: number;
}

const FAMILIES: ReadonlySet<string> = new Set(['inet', 'arp', 'ip', 'ip6', 'bridge', 'netdev']);

// ---- validation of nft's output (never trusted blindly) ----------------------------

const isObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);
const isFamily = (v: unknown): v is NftFamily => typeof v === 'string' && FAMILIES.has(v);
const isCount = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;

/** Parses `nft -j list ...` output into its object list; throws on anything not shaped like it. */
export function parseNftList(text: string): Record<string, unknown>[] {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch {
    throw new Error('nft returned output that is not JSON.');
  }
  if (!isObject(doc) || !Array.isArray(doc.nftables))
    throw new Error('nft JSON output has no "nftables" array.');
  const items: Record<string, unknown>[] = [];
  for (const item of doc.nftables) {
    if (!isObject(item) || Object.keys(item).length !== 1)
      throw new Error('nft JSON output has a malformed item.');
    items.push(item);
  }
  return items;
}

/** The counters in a parsed listing; a counter item of the wrong shape is an error, not skipped. */
export function countersOf(items: readonly Record<string, unknown>[]): CounterReading[] {
  const out: CounterReading[] = [];
  for (const item of items) {
    if (!('counter' in item)) continue;
    const c = item.counter;
    if (
      !isObject(c) ||
      !isFamily(c.family) ||
      typeof c.table !== 'string' ||
      typeof c.name !== 'string' ||
      !isCount(c.packets) ||
      !isCount(c.bytes)
    )
      throw new Error(`nft JSON output has a malformed counter: ${JSON.stringify(c)}`);
    out.push({ family: c.family, table: c.table, name: c.name, packets: c.packets, bytes: c.bytes });
  }
  return out;
}

/** The tables in a parsed listing. */
export function tablesOf(items: readonly Record<string, unknown>[]): NftTable[] {
  const out: NftTable[] = [];
  for (const item of items) {
    if (!('table' in item)) continue;
    const t = item.table;
    if (!isObject(t) || !isFamily(t.family) || typeof t.name !== 'string')
      throw new Error(`nft JSON output has a malformed table: ${JSON.stringify(t)}`);
    out.push({ family: t.family, name: t.name });
  }
  return out;
}

/** Set elements in a parsed `list set` output, as text (`10.0.0.1`, `10.0.0.0/24`, ifnames). */
export function setElementsOf(items: readonly Record<string, unknown>[]): string[] {
  const out: string[] = [];
  for (const item of items) {
    const s = item.set ?? item.map;
    if (s === undefined) continue;
    if (!isObject(s)) throw new Error('nft JSON output has a malformed set.');
    if (s.elem === undefined) continue;
    if (!Array.isArray(s.elem)) throw new Error('nft JSON output has a malformed set element list.');
    for (const e of s.elem) {
      if (typeof e === 'string' || typeof e === 'number') out.push(String(e));
      else if (
        isObject(e) &&
        isObject(e.prefix) &&
        typeof e.prefix.addr === 'string' &&
        isCount(e.prefix.len)
      )
        out.push(`${e.prefix.addr}/${e.prefix.len}`);
      else if (isObject(e) && isObject(e.elem) && typeof e.elem.val === 'string') out.push(e.elem.val);
      else if (Array.isArray(e) && typeof e[0] === 'string') out.push(e[0]);
      else throw new Error(`nft JSON output has an element of unknown shape: ${JSON.stringify(e)}`);
    }
  }
  return out;
}

// ---- running nft --------------------------------------------------------------------

/** One in-flight change per namespace, so two applies never interleave their read-modify-write. */
const queues = new Map<string, Promise<unknown>>();
export function serialised<T>(opts: NftOptions, work: () => Promise<T>): Promise<T> {
  const key = opts.netns ?? '';
  const prev = queues.get(key) ?? Promise.resolve();
  const next = prev.then(work, work);
  queues.set(
    key,
    next.catch(() => {}),
  );
  return next;
}

const nft = (args: string[], opts: NftOptions) => runNet(opts.nft ?? 'nft', args, { netns: opts.netns });

/**
 * Runs `nft -j -f FILE` on a private temp file. (Not stdin: Node's stdio
 * pipes are sockets, which nft cannot open as /dev/stdin.)
 */
async function withBatchFile<T>(batch: NftRuleset, work: (file: string) => Promise<T>): Promise<T> {
  const dir = await mkdtemp(join(tmpdir(), 'bulwark-nft-'));
  try {
    const file = join(dir, 'batch.json');
    await writeFile(file, JSON.stringify(batch), { mode: 0o600 });
    return await work(file);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

async function runBatch(batch: NftRuleset, opts: NftOptions): Promise<void> {
  // No `nft -c` dry run first: the kernel commits the batch as one transaction or aborts all of it
  // (test/net/host-net.test.ts), so a check would only parse and validate the whole ruleset twice.
  await withBatchFile(batch, (file) => nft(['-j', '-f', file], opts));
}

/** Tables present now (all families). */
export async function listTables(opts: NftOptions = {}): Promise<NftTable[]> {
  return tablesOf(parseNftList(await nft(['-j', 'list', 'tables'], opts)));
}

/** Named counters of `table` in every family where that table exists. */
export async function readCounters(table: string, opts: NftOptions = {}): Promise<CounterReading[]> {
  const out: CounterReading[] = [];
  for (const t of await listTables(opts)) {
    if (t.name !== table) continue;
    out.push(
      ...countersOf(parseNftList(await nft(['-j', 'list', 'counters', 'table', t.family, t.name], opts))),
    );
  }
  return out;
}

/** Elements of one set (e.g. a remote group's members). */
export async function readSet(
  family: NftFamily,
  table: string,
  name: string,
  opts: NftOptions = {},
): Promise<string[]> {
  return setElementsOf(parseNftList(await nft(['-j', 'list', 'set', family, table, name], opts)));
}

/** Carries counter values from the running tables into the new ones, so a re-apply does not reset them. */
export function carryCounters(ruleset: NftRuleset, readings: readonly CounterReading[]): NftRuleset {
  const byKey = new Map(readings.map((r) => [`${r.family}|${r.table}|${r.name}`, r]));
  return {
    nftables: ruleset.nftables.map((cmd): NftCommand => {
      if (!('add' in cmd) || !('counter' in cmd.add)) return cmd;
      const c: NftCounter = cmd.add.counter;
      const old = byKey.get(`${c.family}|${c.table}|${c.name}`);
      return old ? { add: { counter: { ...c, packets: old.packets, bytes: old.bytes } } } : cmd;
    }),
  };
}

/** The tables a ruleset creates (its `add table` commands). */
export function tablesIn(ruleset: NftRuleset): NftTable[] {
  const out: NftTable[] = [];
  for (const cmd of ruleset.nftables) if ('add' in cmd && 'table' in cmd.add) out.push(cmd.add.table);
  return out;
}

/**
 * The batch that replaces each table of `ruleset` atomically: `add table`
 * (so the delete cannot fail on a first apply), `delete table`, then the new
 * table and all its objects. nft sends it as one netlink batch, which the
 * kernel commits as one transaction.
 */
export function replacementBatch(ruleset: NftRuleset): NftRuleset {
  const tables = tablesIn(ruleset);
  if (tables.length === 0) throw new Error('The ruleset creates no table.');
  const prologue: NftCommand[] = tables.flatMap((table): NftCommand[] => [
    { add: { table } },
    { delete: { table } },
  ]);
  return { nftables: [...prologue, ...ruleset.nftables] };
}

/**
 * Replaces the ruleset's tables with it in one transaction (all or nothing:
 * a batch the kernel refuses changes nothing). Counter values carry over unless `keepCounters` is false
 * (increments between the read and the commit are lost: a few packets at most).
 */
export function applyRuleset(
  ruleset: NftRuleset,
  opts: NftOptions & { keepCounters?: boolean } = {},
): Promise<void> {
  return serialised(opts, async () => {
    let rs = ruleset;
    if (opts.keepCounters !== false) {
      const names = new Set(tablesIn(ruleset).map((t) => t.name));
      const readings: CounterReading[] = [];
      for (const name of names) readings.push(...(await readCounters(name, opts)));
      rs = carryCounters(ruleset, readings);
    }
    await runBatch(replacementBatch(rs), opts);
  });
}

/** Applies a small batch (set updates, quarantine) in one transaction. */
export function applyCommands(commands: readonly NftCommand[], opts: NftOptions = {}): Promise<void> {
  if (commands.length === 0) return Promise.resolve();
  return serialised(opts, () => runBatch({ nftables: [...commands] }, opts));
}

/** Deletes `table` in every family it exists in (inet and arp for Bulwark's); absent tables are fine. */
export function deleteTables(
  table: string,
  opts: NftOptions = {},
  families: NftFamily[] = ['inet', 'arp'],
): Promise<void> {
  const batch: NftRuleset = {
    nftables: families.flatMap((family): NftCommand[] => [
      { add: { table: { family, name: table } } },
      { delete: { table: { family, name: table } } },
    ]),
  };
  return serialised(opts, () =>
    withBatchFile(batch, (file) => nft(['-j', '-f', file], opts).then(() => undefined)),
  );
}
