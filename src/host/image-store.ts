import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  createReadStream,
  createWriteStream,
  mkdirSync,
  type ReadStream,
  renameSync,
  rmSync,
  statSync,
} from 'node:fs';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { promisify } from 'node:util';
import { BulwarkError, badRequest } from '../errors.js';

const run = promisify(execFile);

export interface ReceivedImage {
  size: number;
  md5: string;
  sha256: string;
}

export interface InspectedImage {
  format: 'raw' | 'qcow2';
  virtualSize: number;
}

/**
 * Image bytes on the hypervisor host: written by the daemon (root), files
 * 0600 and never executable; guests reach them only through their own
 * copy-on-write overlay opened by the host driver.
 */
export class ImageStore {
  constructor(private readonly dir: string) {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
  }

  path(id: string): string {
    if (!/^[0-9a-f-]{36}$/.test(id)) throw badRequest(`Bad image id ${id}.`);
    return join(this.dir, id);
  }

  /** Streams an upload to disk, hashing as it goes; refuses more than `maxBytes`. */
  async receive(id: string, body: Readable, maxBytes: number): Promise<ReceivedImage> {
    const final = this.path(id);
    const part = `${final}.part`;
    const md5 = createHash('md5');
    const sha256 = createHash('sha256');
    let size = 0;
    const meter = new Transform({
      transform(chunk: Buffer, _enc, cb) {
        size += chunk.length;
        if (size > maxBytes)
          return cb(
            new BulwarkError('PayloadTooLarge', `Image data is larger than the ${maxBytes}-byte limit.`),
          );
        md5.update(chunk);
        sha256.update(chunk);
        cb(null, chunk);
      },
    });
    try {
      await pipeline(body, meter, createWriteStream(part, { mode: 0o600, flags: 'wx' }));
    } catch (err) {
      rmSync(part, { force: true });
      throw err instanceof BulwarkError
        ? err
        : badRequest(`The upload did not complete: ${(err as Error).message}`);
    }
    renameSync(part, final);
    return { size, md5: md5.digest('hex'), sha256: sha256.digest('hex') };
  }

  /**
   * Checks the bytes are what the owner declared. A "raw" image that is really
   * qcow2, or a qcow2 with a backing or data file, could make the host open
   * files of its choosing (a classic image attack), so both are refused.
   */
  async inspect(id: string, declared: string): Promise<InspectedImage> {
    const file = this.path(id);
    const probe = await qemuImgInfo(file, undefined);
    const detected = probe.format;
    if (declared === 'raw' && detected !== 'raw') {
      throw badRequest(
        `The image data is ${detected}, but disk_format says raw; recreate the image with --disk-format ${detected}.`,
      );
    }
    if (declared === 'qcow2' && detected !== 'qcow2') {
      throw badRequest(
        `The image data is ${detected}, not qcow2; recreate the image with the right --disk-format.`,
      );
    }
    if (declared !== 'raw' && declared !== 'qcow2')
      throw badRequest(`disk_format ${declared} is not supported; use raw or qcow2.`);
    const info = await qemuImgInfo(file, declared);
    if (info['backing-filename'] !== undefined || info['full-backing-filename'] !== undefined) {
      throw badRequest(
        'qcow2 images with a backing file are refused: flatten it first (qemu-img convert -O qcow2).',
      );
    }
    const dataFile = (info['format-specific'] as { data?: { 'data-file'?: unknown } } | undefined)?.data?.[
      'data-file'
    ];
    if (dataFile !== undefined) throw badRequest('qcow2 images with an external data file are refused.');
    const vs = info['virtual-size'];
    if (typeof vs !== 'number' || vs <= 0) throw badRequest('The image has no usable virtual size.');
    return { format: declared, virtualSize: vs };
  }

  open(id: string): { stream: ReadStream; size: number } {
    const file = this.path(id);
    return { stream: createReadStream(file), size: statSync(file).size };
  }

  remove(id: string): void {
    const file = this.path(id);
    rmSync(file, { force: true });
    rmSync(`${file}.part`, { force: true });
  }
}

async function qemuImgInfo(
  file: string,
  format: string | undefined,
): Promise<Record<string, unknown> & { format: string }> {
  try {
    const { stdout } = await run(
      'qemu-img',
      ['info', '--output=json', ...(format ? ['-f', format] : []), file],
      {
        timeout: 30_000,
      },
    );
    const info: unknown = JSON.parse(stdout);
    if (!info || typeof info !== 'object' || typeof (info as { format?: unknown }).format !== 'string') {
      throw new Error('unexpected qemu-img output');
    }
    return info as Record<string, unknown> & { format: string };
  } catch (err) {
    throw badRequest(`The image data is not a readable disk image: ${(err as Error).message.split('\n')[0]}`);
  }
}
