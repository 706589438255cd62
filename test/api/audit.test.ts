import { sql } from 'kysely';
import pg from 'pg';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { chainHash } from '../../src/audit/chain.js';
import { verifyAuditChain } from '../../src/audit/verify.js';
import { startTestApi, type TestApi } from '../helpers/api.js';
import { dialects } from '../helpers/store.js';

describe.each(dialects())('audit chain on %s', (dialect) => {
  let api: TestApi;
  /** Raw access as the table owner: what a tamperer with database access would have. */
  let raw: (q: string) => Promise<void>;
  let closeRaw: () => Promise<void>;

  beforeEach(async () => {
    api = await startTestApi(dialect);
    for (let i = 0; i < 6; i++) {
      await api.call('POST', '/identity/v3/projects', undefined, { project: { name: `audit-${i}` } });
    }
    await api.call('GET', '/identity/v3/projects', null); // a refusal, audited too
    if (dialect === 'postgres') {
      const c = new pg.Client({ connectionString: api.db.adminUrl });
      await c.connect();
      raw = async (q) => {
        await c.query('BEGIN');
        await c.query('ALTER TABLE audit_events DISABLE TRIGGER USER');
        await c.query(q);
        await c.query('ALTER TABLE audit_events ENABLE TRIGGER USER');
        await c.query('COMMIT');
      };
      closeRaw = () => c.end();
    } else {
      raw = async (q) => {
        await sql.raw('DROP TRIGGER IF EXISTS audit_events_no_update').execute(api.store.db);
        await sql.raw('DROP TRIGGER IF EXISTS audit_events_no_delete').execute(api.store.db);
        await sql.raw(q).execute(api.store.db);
      };
      closeRaw = async () => undefined;
    }
  });
  afterEach(async () => {
    await closeRaw?.();
    await api?.close();
  });

  it('records mutations and refusals with who, what, where and outcome', async () => {
    const rows = await api.store.db.selectFrom('audit_events').selectAll().orderBy('seq').execute();
    const create = rows.find((r) => r.action === 'identity:create_project' && r.outcome === 'success');
    expect(create).toMatchObject({
      user_name: 'admin',
      source_ip: '127.0.0.1',
      target_type: 'project',
      status: 201,
      method: 'POST',
    });
    expect(create?.target_id).toMatch(/^[0-9a-f]{32}$/);
    expect(create?.request_id).toMatch(/^req-/);
    const refused = rows.find((r) => r.action === 'identity:list_projects');
    expect(refused).toMatchObject({ outcome: 'denied', status: 401, user_id: null });
    expect((await verifyAuditChain(api.store)).ok).toBe(true);
  });

  it('cannot be changed through the store: UPDATE and DELETE are refused', async () => {
    await expect(
      api.store.db.updateTable('audit_events').set({ outcome: 'success' }).execute(),
    ).rejects.toThrow();
    await expect(api.store.db.deleteFrom('audit_events').execute()).rejects.toThrow();
    expect((await verifyAuditChain(api.store)).ok).toBe(true);
  });

  it('names an edited row', async () => {
    await raw("UPDATE audit_events SET user_name = 'mallory' WHERE seq = 3");
    const v = await verifyAuditChain(api.store);
    expect(v.ok).toBe(false);
    expect(v.failure).toMatchObject({ seq: 3 });
    expect(v.failure?.problem).toMatch(/row 3 was altered/);
  });

  it('names an edited row even when its hash was recomputed', async () => {
    const row = await api.store.db
      .selectFrom('audit_events')
      .selectAll()
      .where('seq', '=', 4)
      .executeTakeFirstOrThrow();
    const { hash: _h, ...fields } = {
      ...row,
      reason: 'nothing to see',
      seq: Number(row.seq),
      status: Number(row.status),
    };
    await raw(
      `UPDATE audit_events SET reason = 'nothing to see', hash = '${chainHash(fields)}' WHERE seq = 4`,
    );
    const v = await verifyAuditChain(api.store);
    expect(v.ok).toBe(false);
    expect(v.failure?.seq).toBe(5);
    expect(v.failure?.problem).toMatch(/row 5 does not follow row 4/);
  });

  it('names a deleted row', async () => {
    await raw('DELETE FROM audit_events WHERE seq = 2');
    const v = await verifyAuditChain(api.store);
    expect(v.ok).toBe(false);
    expect(v.failure?.seq).toBe(2);
    expect(v.failure?.problem).toMatch(/row 2 is missing/);
  });

  it('names swapped rows', async () => {
    // Swap the content of rows 3 and 4, keeping their sequence numbers.
    await raw(`UPDATE audit_events SET seq = -3 WHERE seq = 3`);
    await raw(`UPDATE audit_events SET seq = 3 WHERE seq = 4`);
    await raw(`UPDATE audit_events SET seq = 4 WHERE seq = -3`);
    const v = await verifyAuditChain(api.store);
    expect(v.ok).toBe(false);
    expect(v.failure?.seq).toBe(3);
  });

  it('notices rows cut from the end', async () => {
    const last = await api.store.db
      .selectFrom('audit_events')
      .select('seq')
      .orderBy('seq', 'desc')
      .executeTakeFirstOrThrow();
    await raw(`DELETE FROM audit_events WHERE seq = ${last.seq}`);
    const v = await verifyAuditChain(api.store);
    expect(v.ok).toBe(false);
    expect(v.failure?.problem).toMatch(/cut from the end/);
  });

  it.runIf(dialect === 'postgres')('gives the daemon role no UPDATE or DELETE on audit rows', async () => {
    const app = new pg.Client({ connectionString: api.db.url });
    await app.connect();
    try {
      await expect(app.query("UPDATE audit_events SET reason = 'x'")).rejects.toThrow(/permission denied/);
      await expect(app.query('DELETE FROM audit_events')).rejects.toThrow(/permission denied/);
      await expect(app.query('TRUNCATE audit_events')).rejects.toThrow(/permission denied/);
      await expect(app.query('ALTER TABLE audit_events DISABLE TRIGGER USER')).rejects.toThrow(
        /must be owner/,
      );
      const n = await app.query('SELECT count(*)::int AS n FROM audit_events');
      expect(n.rows[0].n).toBeGreaterThan(5);
    } finally {
      await app.end();
    }
  });

  it('refuses the request when the audit log cannot be written (fail closed)', async () => {
    await raw(dialect === 'postgres' ? 'DROP TABLE audit_head' : 'DROP TABLE audit_head');
    const res = await api.call('POST', '/identity/v3/projects', undefined, {
      project: { name: 'unaudited' },
    });
    expect(res.status).toBe(503);
  });

  it('writes concurrent appends together, each resolved with its own committed, chained row', async () => {
    const seen: number[] = [];
    const off = api.platform.audit.onAppend((row) => seen.push(row.seq));
    const event = (i: number) => ({
      requestId: `group-${i}`,
      userId: null,
      userName: null,
      projectId: null,
      roles: [],
      sourceIp: null,
      action: 'bench:group',
      method: 'POST',
      path: '/group',
      targetType: null,
      targetId: null,
      outcome: 'success' as const,
      status: 201,
      reason: null,
    });
    const rows = await Promise.all(Array.from({ length: 40 }, (_, i) => api.platform.audit.append(event(i))));
    off();
    // In arrival order, one after another, each the row its own request asked for.
    expect(rows.map((r) => r.request_id)).toEqual(Array.from({ length: 40 }, (_, i) => `group-${i}`));
    for (let i = 1; i < rows.length; i++) {
      expect(rows[i]?.seq).toBe((rows[i - 1]?.seq ?? 0) + 1);
      expect(rows[i]?.prev_hash).toBe(rows[i - 1]?.hash);
    }
    expect(seen).toEqual(rows.map((r) => r.seq));
    const stored = await api.store.db
      .selectFrom('audit_events')
      .select(['seq', 'hash'])
      .where('action', '=', 'bench:group')
      .orderBy('seq')
      .execute();
    expect(stored.map((r) => r.hash)).toEqual(rows.map((r) => r.hash));
    expect((await verifyAuditChain(api.store)).ok).toBe(true);
  });

  it("commits an append made during another open transaction on its own: that one's rollback keeps the row", async () => {
    const event = {
      requestId: 'during-tx',
      userId: null,
      userName: null,
      projectId: null,
      roles: [],
      sourceIp: null,
      action: 'test:during',
      method: 'POST',
      path: '/during',
      targetType: null,
      targetId: null,
      outcome: 'success' as const,
      status: 201,
      reason: null,
    };
    let appended: Promise<unknown> | undefined;
    let resolvedInside = false;
    await expect(
      api.store.db.transaction().execute(async (tx) => {
        await tx
          .insertInto('projects')
          .values({
            id: 'rolled-back',
            name: 'rolled-back',
            domain_id: 'default',
            description: '',
            enabled: 1,
            created_at: new Date().toISOString(),
          })
          .execute();
        appended = api.platform.audit.append(event);
        appended.then(
          () => {
            resolvedInside = true;
          },
          () => undefined,
        );
        await new Promise((r) => setTimeout(r, 100));
        // SQLite has one connection: the append waits for it, never joining this transaction.
        if (dialect === 'sqlite') expect(resolvedInside).toBe(false);
        throw new Error('rolled back');
      }),
    ).rejects.toThrow('rolled back');
    await appended;
    expect(
      await api.store.db.selectFrom('projects').select('id').where('name', '=', 'rolled-back').execute(),
    ).toEqual([]);
    const rows = await api.store.db
      .selectFrom('audit_events')
      .select('request_id')
      .where('action', '=', 'test:during')
      .execute();
    expect(rows).toEqual([{ request_id: 'during-tx' }]);
    expect((await verifyAuditChain(api.store)).ok).toBe(true);
  });

  it('fails closed for every concurrent request whose audit transaction cannot be written', async () => {
    await raw('DROP TABLE audit_head');
    const results = await Promise.allSettled(
      Array.from({ length: 5 }, () =>
        api.call('POST', '/identity/v3/projects', undefined, {
          project: { name: `unaudited-${Math.random()}` },
        }),
      ),
    );
    expect(results.map((r) => (r.status === 'fulfilled' ? r.value.status : 0))).toEqual([
      503, 503, 503, 503, 503,
    ]);
  });
});
