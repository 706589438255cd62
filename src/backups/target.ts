import { randomBytes } from 'node:crypto';
import { mkdir, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { BulwarkError, badRequest } from '../errors.js';

/**
 * Where a backup repository keeps its objects. Everything stored is either
 * sealed (AES-256-GCM) or names and hashes that reveal nothing (docs/backups.md),
 * so a target needs no trust beyond keeping what it is given.
 */
export interface BackupTarget {
  /** What the repository is, for people: `local:/path`. */
  readonly description: string;
  put(name: string, data: Buffer): Promise<void>;
  /** The object; a BulwarkError (Conflict) if it is missing. */
  get(name: string): Promise<Buffer>;
  has(name: string): Promise<boolean>;
  delete(name: string): Promise<void>;
  /** Total bytes stored (for reports and the benchmark). */
  size(): Promise<number>;
}

const NAME = /^[a-z]+(\/[0-9a-f]{2})?\/[0-9a-zA-Z.-]+$/;

/** An object name the repository makes (refuses anything else, e.g. `..`). */
export function checkObjectName(name: string): string {
  if (!NAME.test(name) && name !== 'config') throw badRequest(`Bad backup object name ${name}.`);
  return name;
}

/** A local directory (root 0700, objects 0600), each object written whole and renamed into place. */
export class LocalTarget implements BackupTarget {
  constructor(private readonly dir: string) {}

  get description(): string {
    return `local:${this.dir}`;
  }

  private path(name: string): string {
    return join(this.dir, checkObjectName(name));
  }

  async put(name: string, data: Buffer): Promise<void> {
    const p = this.path(name);
    await mkdir(dirname(p), { recursive: true, mode: 0o700 });
    const tmp = `${p}.${randomBytes(6).toString('hex')}.tmp`;
    await writeFile(tmp, data, { mode: 0o600, flag: 'wx' });
    await rename(tmp, p);
  }

  async get(name: string): Promise<Buffer> {
    try {
      return await readFile(this.path(name));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT')
        throw new BulwarkError(
          'Conflict',
          `Backup integrity check failed: ${name} is missing from the repository.`,
        );
      throw err;
    }
  }

  async has(name: string): Promise<boolean> {
    return (await stat(this.path(name)).catch(() => null)) !== null;
  }

  async delete(name: string): Promise<void> {
    await rm(this.path(name), { force: true });
  }

  async size(): Promise<number> {
    let total = 0;
    const walk = async (d: string): Promise<void> => {
      for (const e of await readdir(d, { withFileTypes: true }).catch(() => [])) {
        const p = join(d, e.name);
        if (e.isDirectory()) await walk(p);
        else if (e.isFile()) total += (await stat(p)).size;
      }
    };
    await walk(this.dir);
    return total;
  }
}
