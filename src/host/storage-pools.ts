import { statfs } from 'node:fs/promises';
import { dirname } from 'node:path';

/** How full the filesystem holding a path is, as `df` counts it (reserved blocks are not free to us). */
export interface FsUsage {
  /** The path measured: the pool's own dir, or its nearest existing parent before it is made. */
  measured: string;
  totalBytes: number;
  usedBytes: number;
  availableBytes: number;
}

/** statfs(2) of the filesystem that holds (or will hold) `path`. Read-only. */
export async function measureFs(path: string): Promise<FsUsage> {
  let p = path;
  for (;;) {
    try {
      const s = await statfs(p, { bigint: false });
      const used = (s.blocks - s.bfree) * s.bsize;
      const available = s.bavail * s.bsize;
      return { measured: p, totalBytes: s.blocks * s.bsize, usedBytes: used, availableBytes: available };
    } catch (e) {
      const parent = dirname(p);
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT' || parent === p) throw e;
      p = parent;
    }
  }
}
