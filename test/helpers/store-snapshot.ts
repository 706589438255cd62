import { sql } from 'kysely';
import type { Store } from '../../src/store/database.js';

/** Every table's rows, each row as canonical JSON, sorted: what "nothing changed" is checked against. */
export type StoreSnapshot = Map<string, string[]>;

/** The store's table names, read from the database itself so new tables are included without a list here. */
export async function tableNames(store: Store): Promise<string[]> {
  const rows =
    store.dialect === 'sqlite'
      ? await sql<{
          name: string;
        }>`SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' AND name NOT LIKE 'kysely_%'`.execute(
          store.db,
        )
      : await sql<{
          name: string;
        }>`SELECT table_name AS name FROM information_schema.tables WHERE table_schema = current_schema() AND table_type = 'BASE TABLE' AND table_name NOT LIKE 'kysely_%'`.execute(
          store.db,
        );
  return rows.rows.map((r) => r.name).sort();
}

const canonical = (row: Record<string, unknown>) =>
  JSON.stringify(
    Object.keys(row)
      .sort()
      .map((k) => {
        const v = row[k];
        return [k, v instanceof Date ? v.toISOString() : Buffer.isBuffer(v) ? v.toString('base64') : v];
      }),
  );

/** Snapshots every table except `ignore` (e.g. the audit log, which refusals append to by design). */
export async function snapshotStore(store: Store, ignore: readonly string[] = []): Promise<StoreSnapshot> {
  const out: StoreSnapshot = new Map();
  for (const t of await tableNames(store)) {
    if (ignore.includes(t)) continue;
    const rows = await sql<Record<string, unknown>>`SELECT * FROM ${sql.table(t)}`.execute(store.db);
    out.set(t, rows.rows.map(canonical).sort());
  }
  return out;
}

/** The tables whose rows differ, with how many rows were added and removed (a changed row counts as both). */
export function diffSnapshots(before: StoreSnapshot, after: StoreSnapshot): string[] {
  const changes: string[] = [];
  for (const t of new Set([...before.keys(), ...after.keys()])) {
    const a = new Set(before.get(t) ?? []);
    const b = new Set(after.get(t) ?? []);
    const added = [...b].filter((r) => !a.has(r));
    const removed = [...a].filter((r) => !b.has(r));
    if (added.length || removed.length)
      changes.push(
        `${t}: +${added.length} -${removed.length} ${(added[0] ?? removed[0] ?? '').slice(0, 300)}`,
      );
  }
  return changes;
}
