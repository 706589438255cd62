/**
 * Migration 0190 (SQLite): the audit sequence becomes the table's rowid.
 * The rows a chain was written with must come through it unchanged, in
 * order, and the table must stay append-only.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { Kysely, SqliteDialect, sql } from 'kysely';
import { afterEach, describe, expect, it } from 'vitest';
import * as m0001 from '../../src/store/migrations/0001-foundation.js';
import * as m0002 from '../../src/store/migrations/0002-audit-append-only.js';
import * as m0190 from '../../src/store/migrations/0190-audit-rowid.js';
import { startTestApi, type TestApi } from '../helpers/api.js';

describe('audit table as a rowid table (migration 0190, SQLite)', () => {
  let api: TestApi | undefined;
  const dir = mkdtempSync(join(tmpdir(), 'bulwark-audit-rowid-'));
  afterEach(async () => {
    await api?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('keeps every chained row and its order, makes seq the rowid and stays append-only', async () => {
    api = await startTestApi('sqlite');
    for (let i = 0; i < 5; i++)
      await api.call('POST', '/identity/v3/projects', undefined, { project: { name: `rowid-${i}` } });
    await api.call('GET', '/identity/v3/projects', null); // a refusal
    const chained = await api.store.db.selectFrom('audit_events').selectAll().orderBy('seq').execute();
    expect(chained.length).toBeGreaterThanOrEqual(6);

    // The layout before 0190, holding those rows.
    const raw = new Database(join(dir, 'old.db'));
    const db = new Kysely<any>({ dialect: new SqliteDialect({ database: raw }) });
    await m0001.up(db);
    await m0002.up('sqlite')(db);
    await db.insertInto('audit_events').values(chained).execute();
    const indexes = () =>
      raw.prepare("select name from pragma_index_list('audit_events') order by name").pluck().all();
    expect(indexes()).toHaveLength(3); // seq, id, time

    await m0190.up('sqlite')(db);

    const after = await db.selectFrom('audit_events').selectAll().orderBy('seq').execute();
    expect(after).toEqual(chained);
    expect(raw.prepare('select count(*) from audit_events where rowid <> seq').pluck().get()).toBe(0);
    const seq = raw
      .prepare("select type, pk from pragma_table_info('audit_events') where name = 'seq'")
      .get();
    expect(seq).toEqual({ type: 'INTEGER', pk: 1 });
    expect(indexes()).toHaveLength(2); // id, time: no index beside the rowid for seq
    await expect(sql`update audit_events set outcome = 'success'`.execute(db)).rejects.toThrow(/append-only/);
    await expect(sql`delete from audit_events`.execute(db)).rejects.toThrow(/append-only/);
    expect(after).toHaveLength(chained.length);
    await db.destroy();
  });
});
