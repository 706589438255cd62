import type { Selectable } from 'kysely';
import { badRequest, conflict, notFound } from '../errors.js';
import type { Store } from '../store/database.js';
import type { VolumeEncryptionTypesTable, VolumeTypesTable } from '../store/schema.js';
import { nowIso, uuid } from '../util/ids.js';

export type VolumeType = Selectable<VolumeTypesTable>;
export type EncryptionType = Selectable<VolumeEncryptionTypesTable>;

/** Cinder's encryption spec fields as the API takes them. */
export interface EncryptionSpec {
  provider?: string | null | undefined;
  cipher?: string | null | undefined;
  key_size?: number | null | undefined;
  control_location?: string | null | undefined;
}

/**
 * The one encryption this platform offers: LUKS opened by QEMU itself
 * (front-end), aes-xts-plain64, a 256- or 512-bit key from the key manager.
 * Cinder's provider names for LUKSv1 are accepted (`luks` and the legacy
 * class name); LUKS2, plain dm-crypt, back-end encryption and other ciphers
 * are refused with 400, so a type never promises what the host does not do.
 */
export const LUKS_PROVIDERS = new Set(['luks', 'nova.volume.encryptors.luks.LuksEncryptor']);

export function checkEncryptionSpec(
  spec: EncryptionSpec,
  current?: EncryptionType,
): Omit<EncryptionType, 'volume_type_id' | 'encryption_id' | 'created_at'> {
  const provider = spec.provider ?? current?.provider;
  const cipher = spec.cipher ?? current?.cipher ?? 'aes-xts-plain64';
  const keySize = spec.key_size ?? current?.key_size ?? 256;
  const location = spec.control_location ?? current?.control_location ?? 'front-end';
  if (!provider || !LUKS_PROVIDERS.has(provider))
    throw badRequest(
      `Encryption provider ${JSON.stringify(provider ?? null)} is not supported: use luks (nova.volume.encryptors.luks.LuksEncryptor).`,
    );
  if (cipher !== 'aes-xts-plain64')
    throw badRequest(`Cipher ${JSON.stringify(cipher)} is not supported: use aes-xts-plain64.`);
  if (keySize !== 256 && keySize !== 512)
    throw badRequest(`Key size ${keySize} is not supported: use 256 or 512.`);
  if (location !== 'front-end')
    throw badRequest(
      `Control location ${JSON.stringify(location)} is not supported: use front-end (the hypervisor decrypts; the host never sees plaintext on disk).`,
    );
  return { provider: 'luks', cipher, key_size: keySize, control_location: location };
}

// biome-ignore lint/suspicious/noControlCharactersInRegex: refusing control characters is the point
const NAME = /^[^\x00-\x1f]{1,255}$/;

/** Volume types and their encryption specs (Cinder): admins write, everyone reads public types. */
export class VolumeTypeService {
  constructor(private readonly store: Store) {}

  private get db() {
    return this.store.db;
  }

  list(): Promise<VolumeType[]> {
    return this.db.selectFrom('volume_types').selectAll().orderBy('name').execute();
  }

  /** By id, or by name (the CLI looks types up by either). */
  async get(idOrName: string): Promise<VolumeType> {
    const t =
      (await this.db.selectFrom('volume_types').selectAll().where('id', '=', idOrName).executeTakeFirst()) ??
      (await this.db.selectFrom('volume_types').selectAll().where('name', '=', idOrName).executeTakeFirst());
    if (!t) throw notFound('volume type', idOrName);
    return t;
  }

  async create(input: { name: string; description?: string | null | undefined; isPublic?: boolean }) {
    const name = input.name.trim();
    if (!NAME.test(name) || name !== input.name)
      throw badRequest('Volume type names are 1-255 printable characters.');
    if (input.isPublic === false) throw badRequest('Private volume types are not supported.');
    const exists = await this.db
      .selectFrom('volume_types')
      .select('id')
      .where('name', '=', name)
      .executeTakeFirst();
    if (exists) throw conflict(`Volume Type ${name} already exists.`);
    const row: VolumeType = {
      id: uuid(),
      name,
      description: input.description ?? null,
      is_public: 1,
      created_at: nowIso(),
    };
    await this.db.insertInto('volume_types').values(row).execute();
    return row;
  }

  async update(id: string, input: { name?: string | undefined; description?: string | null | undefined }) {
    const t = await this.get(id);
    const set: Partial<VolumeType> = {};
    if (input.name !== undefined) {
      if (!NAME.test(input.name)) throw badRequest('Volume type names are 1-255 printable characters.');
      const other = await this.db
        .selectFrom('volume_types')
        .select('id')
        .where('name', '=', input.name)
        .where('id', '!=', t.id)
        .executeTakeFirst();
      if (other) throw conflict(`Volume Type ${input.name} already exists.`);
      set.name = input.name;
    }
    if (input.description !== undefined) set.description = input.description;
    if (Object.keys(set).length)
      await this.db.updateTable('volume_types').set(set).where('id', '=', t.id).execute();
    return this.get(t.id);
  }

  private async inUse(typeId: string): Promise<boolean> {
    return (
      (await this.db
        .selectFrom('volumes')
        .select('id')
        .where('volume_type_id', '=', typeId)
        .where('deleted_at', 'is', null)
        .executeTakeFirst()) !== undefined
    );
  }

  async delete(id: string): Promise<void> {
    const t = await this.get(id);
    if (await this.inUse(t.id)) throw badRequest('Target volume type is still in use.');
    // Deleted volumes keep their rows (history) but no longer name the type.
    await this.db
      .updateTable('volumes')
      .set({ volume_type_id: null })
      .where('volume_type_id', '=', t.id)
      .where('deleted_at', 'is not', null)
      .execute();
    await this.db.deleteFrom('volume_encryption_types').where('volume_type_id', '=', t.id).execute();
    await this.db.deleteFrom('volume_types').where('id', '=', t.id).execute();
  }

  async encryption(typeId: string): Promise<EncryptionType | null> {
    const t = await this.get(typeId);
    return (
      (await this.db
        .selectFrom('volume_encryption_types')
        .selectAll()
        .where('volume_type_id', '=', t.id)
        .executeTakeFirst()) ?? null
    );
  }

  /** Cinder: an encryption spec is created once per type, and changed only while no volume uses the type. */
  async createEncryption(typeId: string, spec: EncryptionSpec): Promise<EncryptionType> {
    const t = await this.get(typeId);
    const checked = checkEncryptionSpec(spec);
    if (await this.encryption(t.id))
      throw badRequest(`Volume type encryption for type ${t.id} already exists.`);
    if (await this.inUse(t.id)) throw badRequest('Cannot create encryption specs. Volume type in use.');
    const row: EncryptionType = {
      volume_type_id: t.id,
      encryption_id: uuid(),
      created_at: nowIso(),
      ...checked,
    };
    await this.db.insertInto('volume_encryption_types').values(row).execute();
    return row;
  }

  async updateEncryption(typeId: string, spec: EncryptionSpec): Promise<EncryptionType> {
    const t = await this.get(typeId);
    const current = await this.encryption(t.id);
    if (!current) throw notFound('volume type encryption for type', t.id);
    const checked = checkEncryptionSpec(spec, current);
    if (await this.inUse(t.id)) throw badRequest('Cannot update encryption specs. Volume type in use.');
    await this.db
      .updateTable('volume_encryption_types')
      .set(checked)
      .where('volume_type_id', '=', t.id)
      .execute();
    return { ...current, ...checked };
  }

  async deleteEncryption(typeId: string): Promise<void> {
    const t = await this.get(typeId);
    if (!(await this.encryption(t.id))) throw notFound('volume type encryption for type', t.id);
    if (await this.inUse(t.id)) throw badRequest('Cannot delete encryption specs. Volume type in use.');
    await this.db.deleteFrom('volume_encryption_types').where('volume_type_id', '=', t.id).execute();
  }
}
