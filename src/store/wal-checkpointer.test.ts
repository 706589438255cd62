import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { checkpointInBackground } from './wal-checkpointer.js';

const waitFor = async (what: string, ok: () => boolean, ms = 10_000) => {
  const end = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
};

describe('WAL checkpoints off the event loop', () => {
  let dir = '';
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'bulwark-ckpt-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  const open = (name: string) => {
    const file = join(dir, name);
    const raw = new Database(file);
    raw.pragma('journal_mode = WAL');
    raw.exec('create table t (v blob)');
    return { file, raw };
  };
  const fill = (raw: Database.Database) => {
    const ins = raw.prepare('insert into t values (randomblob(4096))');
    for (let i = 0; i < 1500; i++) ins.run(); // ~6 MiB: past the 1,000-page automatic checkpoint
  };

  it('the connection never checkpoints itself; the background worker copies the WAL into the file', async () => {
    const { file, raw } = open('a.db');
    const cp = checkpointInBackground(raw, file);
    try {
      expect(raw.pragma('wal_autocheckpoint', { simple: true })).toBe(0);
      const before = statSync(file).size;
      fill(raw);
      // Written by the worker's checkpoint, not by a commit of this connection (its automatic one is off).
      await waitFor('the checkpoint', () => statSync(file).size > before + 5_000_000);
    } finally {
      await cp.stop();
      raw.close();
    }
  });

  it('falls back to the automatic checkpoint when the worker stops (the WAL never grows unbounded)', async () => {
    const { file, raw } = open('b.db');
    const cp = checkpointInBackground(raw, file);
    await cp.worker.terminate();
    await waitFor('the fallback', () => raw.pragma('wal_autocheckpoint', { simple: true }) === 1000);
    const before = statSync(file).size;
    fill(raw);
    expect(statSync(file).size).toBeGreaterThan(before + 3_000_000); // checkpointed by the commits themselves
    raw.close();
  });

  it('a stop is not a failure: the automatic checkpoint stays off for a connection about to close', async () => {
    const { file, raw } = open('c.db');
    await checkpointInBackground(raw, file).stop();
    expect(raw.pragma('wal_autocheckpoint', { simple: true })).toBe(0);
    raw.close();
  });
});
