import { randomBytes } from 'node:crypto';
import { type AuditWriter, systemEvent } from '../audit/writer.js';
import { type BulwarkError, badRequest, conflict, notFound } from '../errors.js';
import type { AuthContext } from '../policy/context.js';
import type { Store } from '../store/database.js';
import type { SecretsTable } from '../store/schema.js';
import { nowIso, uuid } from '../util/ids.js';
import type { KeyService } from './contract.js';
import { dekAad, KEY_BYTES, open, payloadAad, type Sealed, seal } from './envelope.js';
import { type KekProvider, kekUnavailable } from './kek.js';

export const SECRET_TYPES = [
  'symmetric',
  'public',
  'private',
  'passphrase',
  'certificate',
  'opaque',
] as const;
export type SecretType = (typeof SECRET_TYPES)[number];
export const CONTENT_TYPES = ['text/plain', 'application/octet-stream'] as const;
export type ContentType = (typeof CONTENT_TYPES)[number];

/** Largest payload accepted (Barbican's default max_allowed_secret_in_bytes). */
export const MAX_PAYLOAD_BYTES = 10_000;

export interface NewSecret {
  name: string | null;
  secretType: SecretType;
  algorithm: string | null;
  bitLength: number | null;
  mode: string | null;
  contentType: ContentType;
  expiration: string | null;
  payload: Buffer;
}

export type SecretMeta = Omit<
  SecretsTable,
  'payload_iv' | 'payload_ct' | 'payload_tag' | 'dek_iv' | 'dek_wrapped' | 'dek_tag'
>;

const META = [
  'id',
  'project_id',
  'creator_id',
  'name',
  'secret_type',
  'algorithm',
  'bit_length',
  'mode',
  'content_type',
  'expiration',
  'kek_id',
  'kek_version',
  'created_at',
  'updated_at',
] as const;

const b64 = (b: Buffer) => b.toString('base64');
const unb64 = (s: string) => Buffer.from(s, 'base64');

export interface RotationReport {
  kekId: string;
  from: number[];
  to: number;
  rewrapped: number;
}

/**
 * Barbican-style secrets under envelope encryption. Every secret gets its own
 * random 256-bit data key; the payload is sealed with it (AAD: secret id +
 * project id) and the data key is wrapped by the KEK provider (AAD: secret id
 * + KEK id + version). Only ciphertext is stored. Every query is scoped by the
 * owning project: another project's secret does not exist (404).
 *
 * Fail closed: when the KEK cannot be used the caller gets 503, never a
 * weaker path. Plaintext lives only in the Buffers handed back to the caller.
 */
export class KeyManager implements KeyService {
  /** Wraps in flight per KEK version: a rotation waits for them before it re-wraps and retires. */
  private readonly inflight = new Map<number, number>();
  private rotating: Promise<RotationReport> | null = null;

  constructor(
    private readonly store: Store,
    private readonly kek: KekProvider,
    private readonly audit: AuditWriter,
    private readonly opts: { batchSize?: number } = {},
  ) {}

  get kekId(): string {
    return this.kek.id;
  }

  kekVersions(): number[] {
    return this.kek.versions();
  }

  /** Refuses to start when stored secrets name a KEK (or a version) this provider does not hold. */
  async checkKek(): Promise<void> {
    const used = await this.store.db
      .selectFrom('secrets')
      .select(['kek_id', 'kek_version'])
      .distinct()
      .execute();
    const have = new Set(this.kek.versions());
    const missing = used.filter((u) => u.kek_id !== this.kek.id || !have.has(u.kek_version));
    if (missing.length > 0)
      throw new Error(
        `stored secrets are wrapped by KEK ${missing.map((m) => `${m.kek_id} v${m.kek_version}`).join(', ')}, which the configured KEK provider (${this.kek.id}, versions ${[...have].join(',')}) does not hold; refusing to start`,
      );
  }

  async create(projectId: string, creatorId: string | null, input: NewSecret): Promise<SecretMeta> {
    if (input.payload.length === 0) throw badRequest('Invalid payload: it cannot be empty.');
    if (input.payload.length > MAX_PAYLOAD_BYTES)
      throw badRequest(`Invalid payload: larger than ${MAX_PAYLOAD_BYTES} bytes.`);
    if (input.expiration !== null) {
      const t = Date.parse(input.expiration);
      if (Number.isNaN(t))
        throw badRequest(`Invalid expiration: ${input.expiration} is not an ISO 8601 time.`);
      if (t <= Date.now()) throw badRequest('Invalid expiration: it is in the past.');
    }
    const id = uuid();
    const dek = randomBytes(KEY_BYTES);
    const version = this.kek.current();
    this.inflight.set(version, (this.inflight.get(version) ?? 0) + 1);
    try {
      const sealed = seal(dek, input.payload, payloadAad(id, projectId));
      let wrapped: Sealed;
      try {
        wrapped = await this.kek.wrap(dek, dekAad(id, this.kek.id, version), version);
      } catch (e) {
        throw kekUnavailable((e as Error).message);
      }
      const now = nowIso();
      const row: SecretsTable = {
        id,
        project_id: projectId,
        creator_id: creatorId,
        name: input.name,
        secret_type: input.secretType,
        algorithm: input.algorithm,
        bit_length: input.bitLength,
        mode: input.mode,
        content_type: input.contentType,
        expiration: input.expiration === null ? null : new Date(input.expiration).toISOString(),
        payload_iv: b64(sealed.iv),
        payload_ct: b64(sealed.ct),
        payload_tag: b64(sealed.tag),
        dek_iv: b64(wrapped.iv),
        dek_wrapped: b64(wrapped.ct),
        dek_tag: b64(wrapped.tag),
        kek_id: this.kek.id,
        kek_version: version,
        created_at: now,
        updated_at: now,
      };
      await this.store.db.insertInto('secrets').values(row).execute();
      return pickMeta(row);
    } finally {
      dek.fill(0);
      this.inflight.set(version, (this.inflight.get(version) ?? 1) - 1);
    }
  }

  async list(
    projectId: string,
    q: { limit: number; offset: number; name?: string | undefined },
  ): Promise<{ secrets: SecretMeta[]; total: number }> {
    let base = this.store.db.selectFrom('secrets').where('project_id', '=', projectId);
    if (q.name !== undefined) base = base.where('name', '=', q.name);
    const total = Number((await base.select((e) => e.fn.countAll().as('n')).executeTakeFirst())?.n ?? 0);
    const secrets = await base
      .select(META)
      .orderBy('created_at')
      .orderBy('id')
      .limit(q.limit)
      .offset(q.offset)
      .execute();
    return { secrets, total };
  }

  /** Metadata of a secret the project owns; anything else is 404. */
  async get(projectId: string, id: string): Promise<SecretMeta> {
    const row = await this.store.db
      .selectFrom('secrets')
      .select(META)
      .where('id', '=', id)
      .where('project_id', '=', projectId)
      .executeTakeFirst();
    if (!row) throw notFound('secret', id);
    return row;
  }

  /** The payload of a secret the project owns; 404 otherwise, 503 if the KEK is unavailable. */
  async payload(projectId: string, id: string): Promise<{ meta: SecretMeta; payload: Buffer }> {
    const row = await this.store.db
      .selectFrom('secrets')
      .selectAll()
      .where('id', '=', id)
      .where('project_id', '=', projectId)
      .executeTakeFirst();
    if (!row) throw notFound('secret', id);
    if (row.expiration !== null && Date.parse(row.expiration) <= Date.now()) throw notFound('secret', id);
    let dek: Buffer;
    try {
      dek = await this.kek.unwrap(
        { iv: unb64(row.dek_iv), ct: unb64(row.dek_wrapped), tag: unb64(row.dek_tag) },
        dekAad(row.id, row.kek_id, row.kek_version),
        row.kek_version,
      );
    } catch (e) {
      throw kekUnavailable(`secret ${row.id}: ${(e as Error).message}`);
    }
    try {
      const payload = open(
        dek,
        { iv: unb64(row.payload_iv), ct: unb64(row.payload_ct), tag: unb64(row.payload_tag) },
        payloadAad(row.id, row.project_id),
      );
      return { meta: pickMeta(row), payload };
    } catch (e) {
      throw kekUnavailable(`secret ${row.id}: ${(e as Error).message}`);
    } finally {
      dek.fill(0);
    }
  }

  async delete(projectId: string, id: string): Promise<void> {
    const r = await this.store.db
      .deleteFrom('secrets')
      .where('id', '=', id)
      .where('project_id', '=', projectId)
      .executeTakeFirst();
    if (Number(r.numDeletedRows) === 0) throw notFound('secret', id);
  }

  // ---- KeyService: platform services acting for a secret's owner ----------

  async createKey(
    projectId: string,
    opts: { name: string; bits: 256 | 512; purpose: string },
  ): Promise<string> {
    const key = randomBytes(opts.bits / 8);
    try {
      const meta = await this.create(projectId, null, {
        name: opts.name,
        secretType: 'symmetric',
        algorithm: 'aes',
        bitLength: opts.bits,
        // Barbican's `mode` is a cipher mode; the purpose (volume, vtpm) is for the caller's own records.
        mode: null,
        contentType: 'application/octet-stream',
        expiration: null,
        payload: key,
      });
      return meta.id;
    } finally {
      key.fill(0);
    }
  }

  /**
   * Audited like an API payload read, before the key is handed over: if the
   * audit log cannot be written the caller gets 503 and no key.
   */
  async readKeyFor(projectId: string, secretId: string): Promise<Buffer> {
    const event = (outcome: 'success' | 'failure', why: string) =>
      systemEvent({
        action: 'secret:read_for_owner',
        reason: `platform read for project ${projectId}${why}`,
        target: { type: 'secret', id: secretId },
        outcome,
      });
    let key: Buffer;
    try {
      key = (await this.payload(projectId, secretId)).payload;
    } catch (e) {
      await this.audit.append(
        event('failure', `: ${(e as BulwarkError).auditReason ?? (e as Error).message}`),
      );
      throw e;
    }
    try {
      await this.audit.append(event('success', ''));
    } catch (e) {
      key.fill(0);
      throw e;
    }
    return key;
  }

  async deleteKeyFor(projectId: string, secretId: string): Promise<void> {
    await this.store.db
      .deleteFrom('secrets')
      .where('id', '=', secretId)
      .where('project_id', '=', projectId)
      .execute();
  }

  // ---- KEK rotation --------------------------------------------------------

  /**
   * Creates a new KEK version and re-wraps every data key with it, one row per
   * transaction in batches; readers keep working throughout because each row
   * names the version that wrapped it and old versions stay until the end.
   * Then retires the old versions. Audited (start, finish or failure). A
   * rotation interrupted by a crash is finished by the next one (it re-wraps
   * whatever still names an old version before adding another).
   */
  rotate(actor?: AuthContext): Promise<RotationReport> {
    if (this.rotating) throw conflict('A KEK rotation is already running.');
    const run = this.doRotate(actor).finally(() => {
      this.rotating = null;
    });
    this.rotating = run;
    return run;
  }

  private async doRotate(actor?: AuthContext): Promise<RotationReport> {
    const target = { type: 'kek', id: this.kek.id };
    const pending = this.kek.versions().filter((v) => v !== this.kek.current());
    const from = pending.length > 0 ? [...pending, this.kek.current()] : [this.kek.current()];
    let to: number;
    try {
      to = await this.kek.addVersion();
    } catch (e) {
      await this.audit.append(
        systemEvent({
          action: 'key-manager:rotate_kek',
          reason: `could not create a new KEK version: ${(e as Error).message}`,
          outcome: 'failure',
          target,
          ...(actor ? { actor } : {}),
        }),
      );
      throw kekUnavailable((e as Error).message);
    }
    await this.audit.append(
      systemEvent({
        action: 'key-manager:rotate_kek_started',
        reason: `new KEK version ${to}; re-wrapping data keys wrapped by version(s) ${from.join(', ')}`,
        target,
        ...(actor ? { actor } : {}),
      }),
    );
    let rewrapped = 0;
    try {
      // Secrets being created with an old version finish first; new ones already use `to`.
      while (from.some((v) => (this.inflight.get(v) ?? 0) > 0)) await new Promise((r) => setTimeout(r, 5));
      const batch = this.opts.batchSize ?? 100;
      for (;;) {
        const rows = await this.store.db
          .selectFrom('secrets')
          .select(['id', 'kek_id', 'kek_version', 'dek_iv', 'dek_wrapped', 'dek_tag'])
          .where('kek_id', '=', this.kek.id)
          .where('kek_version', '<>', to)
          .orderBy('id')
          .limit(batch)
          .execute();
        if (rows.length === 0) break;
        for (const row of rows) {
          const dek = await this.kek.unwrap(
            { iv: unb64(row.dek_iv), ct: unb64(row.dek_wrapped), tag: unb64(row.dek_tag) },
            dekAad(row.id, row.kek_id, row.kek_version),
            row.kek_version,
          );
          try {
            const w = await this.kek.wrap(dek, dekAad(row.id, this.kek.id, to), to);
            // Each row in its own transaction, and only if nobody changed it meanwhile.
            await this.store.db.transaction().execute(async (tx) => {
              await tx
                .updateTable('secrets')
                .set({ dek_iv: b64(w.iv), dek_wrapped: b64(w.ct), dek_tag: b64(w.tag), kek_version: to })
                .where('id', '=', row.id)
                .where('kek_version', '=', row.kek_version)
                .execute();
            });
            rewrapped += 1;
          } finally {
            dek.fill(0);
          }
        }
      }
      for (const v of this.kek.versions()) if (v !== to) await this.kek.retire(v);
    } catch (e) {
      await this.audit
        .append(
          systemEvent({
            action: 'key-manager:rotate_kek',
            reason: `rotation to KEK version ${to} stopped after ${rewrapped} data keys: ${(e as Error).message}; old versions kept, run it again to finish`,
            outcome: 'failure',
            target,
            ...(actor ? { actor } : {}),
          }),
        )
        .catch(() => undefined);
      throw kekUnavailable((e as Error).message);
    }
    await this.audit.append(
      systemEvent({
        action: 'key-manager:rotate_kek',
        reason: `KEK version ${to} is current; ${rewrapped} data keys re-wrapped; retired version(s) ${from.join(', ')}`,
        target,
        ...(actor ? { actor } : {}),
      }),
    );
    return { kekId: this.kek.id, from, to, rewrapped };
  }

  async close(): Promise<void> {
    await this.rotating?.catch(() => undefined);
    await this.kek.close();
  }
}

function pickMeta(row: SecretsTable): SecretMeta {
  const out: Record<string, unknown> = {};
  for (const k of META) out[k] = row[k];
  return out as SecretMeta;
}
