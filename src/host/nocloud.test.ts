import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { buildSeed, nocloudMetaData } from './nocloud.js';
import { runTool } from './run.js';

const id = '0b7c1a6e-4d2f-4a8b-9c3d-5e6f7a8b9c0d';

describe('NoCloud seed', () => {
  it('names the server by its UUID and a hostname cut to what a hostname may hold', () => {
    expect(nocloudMetaData({ id, name: 'Web 1_prod!' })).toBe(
      `instance-id: ${id}\nlocal-hostname: web-1-prod\n`,
    );
    expect(nocloudMetaData({ id, name: '***' })).toBe(`instance-id: ${id}\nlocal-hostname: server\n`);
  });

  it('builds an ISO 9660 image labelled cidata holding only meta-data (a CD-ROM: volumes keep /dev/vdb)', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'bw-seed-'));
    try {
      const img = join(dir, 'seed.iso');
      await buildSeed(img, { id, name: 'web-1' }, dir);
      const info = await runTool('isoinfo', ['-d', '-i', img]);
      expect(info.stdout).toMatch(/^Volume id: cidata$/m);
      const ls = await runTool('isoinfo', ['-R', '-f', '-i', img]);
      expect(ls.stdout.trim().split('\n')).toEqual(['/meta-data']);
      const out = await runTool('isoinfo', ['-R', '-x', '/meta-data', '-i', img]);
      expect(out.stdout).toBe(nocloudMetaData({ id, name: 'web-1' }));
      // The staging copy of meta-data is gone.
      await expect(readFile(join(dir, 'meta-data'))).rejects.toThrow();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
