import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { inject } from 'vitest';
import type { Dialect } from '../../src/store/database.js';

/** The dialects every store test runs on. */
export function dialects(): Dialect[] {
  return process.env.BULWARK_TEST_PG === '0' ? ['sqlite'] : ['sqlite', 'postgres'];
}

export interface TestDb {
  url: string;
  adminUrl?: string;
  dir: string;
  drop(): Promise<void>;
}

/**
 * A fresh database for one test: a temp SQLite file, or a new PostgreSQL
 * database owned by a migration role with a separate runtime role, the way
 * production should run.
 */
export async function testDb(dialect: Dialect): Promise<TestDb> {
  const dir = mkdtempSync(join(tmpdir(), 'bulwark-test-'));
  if (dialect === 'sqlite') {
    return {
      url: join(dir, 'bulwark.db'),
      dir,
      drop: async () => rmSync(dir, { recursive: true, force: true }),
    };
  }
  const base = inject('pgUrl');
  const name = `bw_${randomBytes(6).toString('hex')}`;
  const su = new pg.Client({ connectionString: base });
  await su.connect();
  await su.query(`CREATE ROLE ${name}_owner LOGIN`);
  await su.query(`CREATE ROLE ${name}_app LOGIN`);
  await su.query(`CREATE DATABASE ${name} OWNER ${name}_owner`);
  await su.end();
  const u = new URL(base);
  const at = (role: string) => `postgres://${role}@${u.host}/${name}`;
  return {
    url: at(`${name}_app`),
    adminUrl: at(`${name}_owner`),
    dir,
    async drop() {
      const c = new pg.Client({ connectionString: base });
      await c.connect();
      await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await c.query(`DROP ROLE IF EXISTS ${name}_app`);
      await c.query(`DROP ROLE IF EXISTS ${name}_owner`);
      await c.end();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
