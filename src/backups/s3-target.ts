import { readFileSync, statSync } from 'node:fs';
import {
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  S3ServiceException,
} from '@aws-sdk/client-s3';
import { BulwarkError, badRequest } from '../errors.js';
import { type BackupTarget, checkObjectName } from './target.js';

export interface S3Location {
  /** e.g. https://s3.example.net or http://127.0.0.1:9000 (path-style addressing is used). */
  endpoint: string;
  bucket: string;
  /** Key prefix inside the bucket ('' or ending in '/'). */
  prefix: string;
  region: string;
}

export interface S3Credentials {
  accessKeyId: string;
  secretAccessKey: string;
}

/** `s3:<endpoint>|<bucket>|<prefix>|<region>`: what the database keeps (never credentials). */
export function s3TargetString(l: S3Location): string {
  return `s3:${[l.endpoint, l.bucket, l.prefix, l.region].join('|')}`;
}

export function parseS3Target(target: string): S3Location {
  const [endpoint = '', bucket = '', prefix = '', region = ''] = target.replace(/^s3:/, '').split('|');
  return checkS3Location({ endpoint, bucket, prefix, region });
}

export function checkS3Location(l: S3Location): S3Location {
  let url: URL;
  try {
    url = new URL(l.endpoint);
  } catch {
    throw badRequest(`The S3 endpoint ${JSON.stringify(l.endpoint)} is not a URL.`);
  }
  if (!['http:', 'https:'].includes(url.protocol) || url.username || url.password || url.search)
    throw badRequest('The S3 endpoint must be an http(s) URL without credentials or query.');
  if (!/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(l.bucket))
    throw badRequest(`${JSON.stringify(l.bucket)} is not an S3 bucket name.`);
  if (l.prefix && !/^[A-Za-z0-9._/-]{1,200}\/$/.test(l.prefix))
    throw badRequest('The S3 prefix must be letters, digits, . _ - / and end in /.');
  if (!/^[a-z0-9-]{1,40}$/.test(l.region))
    throw badRequest(`${JSON.stringify(l.region)} is not a region name.`);
  return l;
}

/**
 * An S3-compatible bucket as a backup target (docs/backups.md). Everything
 * put there is sealed or reveals nothing, as with the local directory; the
 * store's credentials come from the daemon's environment or a file (never
 * the database, never a log line). Errors name the S3 error code, not the
 * request (which carries the signature).
 */
export class S3Target implements BackupTarget {
  private readonly client: S3Client;

  constructor(
    private readonly loc: S3Location,
    credentials: S3Credentials,
  ) {
    this.client = new S3Client({
      endpoint: loc.endpoint,
      region: loc.region,
      forcePathStyle: true,
      credentials,
      maxAttempts: 3,
    });
  }

  get description(): string {
    return `s3:${this.loc.endpoint}/${this.loc.bucket}/${this.loc.prefix}`;
  }

  private key(name: string): string {
    return this.loc.prefix + checkObjectName(name);
  }

  private async call<T>(what: string, run: () => Promise<T>): Promise<T> {
    try {
      return await run();
    } catch (err) {
      throw s3Error(err, `${what} on ${this.description}`);
    }
  }

  async put(name: string, data: Buffer): Promise<void> {
    await this.call('put', () =>
      this.client.send(new PutObjectCommand({ Bucket: this.loc.bucket, Key: this.key(name), Body: data })),
    );
  }

  async get(name: string): Promise<Buffer> {
    try {
      const r = await this.client.send(
        new GetObjectCommand({ Bucket: this.loc.bucket, Key: this.key(name) }),
      );
      return Buffer.from(
        await (r.Body as { transformToByteArray(): Promise<Uint8Array> }).transformToByteArray(),
      );
    } catch (err) {
      if (err instanceof S3ServiceException && err.name === 'NoSuchKey')
        throw new BulwarkError(
          'Conflict',
          `Backup integrity check failed: ${name} is missing from the repository.`,
        );
      throw s3Error(err, `get on ${this.description}`);
    }
  }

  async has(name: string): Promise<boolean> {
    try {
      await this.client.send(new HeadObjectCommand({ Bucket: this.loc.bucket, Key: this.key(name) }));
      return true;
    } catch (err) {
      if (
        err instanceof S3ServiceException &&
        (err.name === 'NotFound' || err.$metadata.httpStatusCode === 404)
      )
        return false;
      throw s3Error(err, `head on ${this.description}`);
    }
  }

  async delete(name: string): Promise<void> {
    await this.call('delete', () =>
      this.client.send(new DeleteObjectCommand({ Bucket: this.loc.bucket, Key: this.key(name) })),
    );
  }

  async size(): Promise<number> {
    let total = 0;
    let token: string | undefined;
    do {
      const page = await this.call('list', () =>
        this.client.send(
          new ListObjectsV2Command({
            Bucket: this.loc.bucket,
            Prefix: this.loc.prefix,
            ContinuationToken: token,
          }),
        ),
      );
      for (const o of page.Contents ?? []) total += o.Size ?? 0;
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
    return total;
  }
}

/** A clear error for a failed S3 call: the service's code (e.g. InvalidAccessKeyId) and what to fix. */
function s3Error(err: unknown, what: string): BulwarkError {
  if (err instanceof S3ServiceException) {
    const status = err.$metadata.httpStatusCode;
    // HEAD answers carry no body, so no S3 error code: the HTTP status then says it.
    const code = err.name === 'Unknown' ? `HTTP ${status}` : err.name;
    const auth =
      status === 401 ||
      status === 403 ||
      ['InvalidAccessKeyId', 'SignatureDoesNotMatch', 'AccessDenied'].includes(err.name);
    return new BulwarkError(
      'Unavailable',
      `The S3 backup target refused ${what}: ${code}${auth ? ' (check the access key and secret the daemon was given: BULWARK_S3_CREDENTIALS_FILE)' : ''}.`,
    );
  }
  return new BulwarkError(
    'Unavailable',
    `The S3 backup target could not be reached for ${what}: ${(err as Error).message}`,
  );
}

/**
 * The S3 credentials the daemon was given: a JSON file named by
 * BULWARK_S3_CREDENTIALS_FILE (`{"access_key_id", "secret_access_key"}`,
 * readable by root only), or BULWARK_S3_ACCESS_KEY_ID and
 * BULWARK_S3_SECRET_ACCESS_KEY. Never stored by the platform.
 */
export function loadS3Credentials(env: NodeJS.ProcessEnv = process.env): S3Credentials {
  const file = env.BULWARK_S3_CREDENTIALS_FILE;
  if (file) {
    const st = statSync(file, { throwIfNoEntry: false });
    if (!st?.isFile()) throw badRequest(`BULWARK_S3_CREDENTIALS_FILE ${file} is not a file.`);
    if (st.mode & 0o077)
      throw badRequest(`BULWARK_S3_CREDENTIALS_FILE ${file} is readable by others; chmod 600 it.`);
    const j = JSON.parse(readFileSync(file, 'utf8')) as {
      access_key_id?: unknown;
      secret_access_key?: unknown;
    };
    if (typeof j.access_key_id !== 'string' || typeof j.secret_access_key !== 'string')
      throw badRequest(`${file} must hold {"access_key_id": ..., "secret_access_key": ...}.`);
    return { accessKeyId: j.access_key_id, secretAccessKey: j.secret_access_key };
  }
  const accessKeyId = env.BULWARK_S3_ACCESS_KEY_ID;
  const secretAccessKey = env.BULWARK_S3_SECRET_ACCESS_KEY;
  if (!accessKeyId || !secretAccessKey)
    throw badRequest(
      'The daemon has no S3 credentials: start it with BULWARK_S3_CREDENTIALS_FILE (or BULWARK_S3_ACCESS_KEY_ID and BULWARK_S3_SECRET_ACCESS_KEY).',
    );
  return { accessKeyId, secretAccessKey };
}
