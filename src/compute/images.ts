import type { Readable } from 'node:stream';
import type { Selectable } from 'kysely';
import { BulwarkError, badRequest, conflict, forbidden, notFound } from '../errors.js';
import type { StorageGate } from '../governance/storage-thresholds.js';
import type { ImageStore } from '../host/image-store.js';
import type { AuthContext } from '../policy/context.js';
import type { Store } from '../store/database.js';
import type { ImagesTable } from '../store/schema.js';
import { nowIso, uuid } from '../util/ids.js';
import { validateImageProperties } from './properties.js';

export type Image = Selectable<ImagesTable>;
export type Visibility = 'private' | 'shared' | 'community' | 'public';

/** Glance's fixed image attributes; everything else is a free-form property. */
export const CORE_KEYS = new Set([
  'id',
  'name',
  'status',
  'visibility',
  'protected',
  'checksum',
  'owner',
  'size',
  'virtual_size',
  'min_ram',
  'min_disk',
  'disk_format',
  'container_format',
  'created_at',
  'updated_at',
  'tags',
  'self',
  'file',
  'schema',
  'os_hash_algo',
  'os_hash_value',
  'os_hidden',
  'direct_url',
  'locations',
  'stores',
]);
/** Properties the server sets; owners may not forge them. */
const READ_ONLY = new Set([
  'id',
  'status',
  'checksum',
  'owner',
  'size',
  'virtual_size',
  'created_at',
  'updated_at',
  'self',
  'file',
  'schema',
  'os_hash_algo',
  'os_hash_value',
  'direct_url',
  'locations',
]);

const DISK_FORMATS = ['raw', 'qcow2'];
const CONTAINER_FORMATS = ['bare'];
const MAX_PROPERTIES = 128;

export interface ImagePatch {
  name?: string;
  visibility?: Visibility;
  protected?: boolean;
  min_disk?: number;
  min_ram?: number;
  disk_format?: string;
  container_format?: string;
  tags?: string[];
  properties: Record<string, string | null>;
}

export const propertiesOf = (i: Image): Record<string, string> =>
  JSON.parse(i.properties) as Record<string, string>;

export class ImageService {
  constructor(
    private readonly store: Store,
    private readonly files: ImageStore,
    private readonly maxImageBytes: number,
  ) {}

  /** Storage thresholds for image data (governance/storage-thresholds.ts); null: none. Set by platform.ts. */
  storage: StorageGate | null = null;
  /** Refuses changes to an image that must not change (templates, docs/templates.md); null: none. Set by platform.ts. */
  immutable: ((imageId: string) => Promise<void>) | null = null;

  /** Images the caller can see: its project's, public and community ones, and shared ones it accepted. */
  async list(auth: AuthContext, filter: { name?: string | undefined; visibility?: string | undefined }) {
    let q = this.store.db.selectFrom('images').selectAll().orderBy('created_at', 'desc');
    if (!auth.isAdmin) {
      const project = auth.projectId ?? '';
      q = q.where((eb) =>
        eb.or([
          eb('owner', '=', project),
          eb('visibility', '=', 'public'),
          eb.and([
            eb('visibility', '=', 'shared'),
            eb(
              'id',
              'in',
              eb
                .selectFrom('image_members')
                .select('image_id')
                .where('member_id', '=', project)
                .where('status', '=', 'accepted'),
            ),
          ]),
        ]),
      );
    }
    if (filter.name !== undefined) q = q.where('name', '=', filter.name);
    if (filter.visibility !== undefined && filter.visibility !== 'all')
      q = q.where('visibility', '=', filter.visibility);
    return q.execute();
  }

  /** Fetches an image the caller may see; others' private images are 404, not 403, so ids do not leak. */
  async get(auth: AuthContext, id: string): Promise<Image> {
    const img = await this.store.db.selectFrom('images').selectAll().where('id', '=', id).executeTakeFirst();
    if (!img || !(await this.visible(auth, img))) throw notFound('image', id);
    return img;
  }

  private async visible(auth: AuthContext, img: Image): Promise<boolean> {
    if (
      auth.isAdmin ||
      img.owner === auth.projectId ||
      img.visibility === 'public' ||
      img.visibility === 'community'
    )
      return true;
    if (img.visibility !== 'shared') return false;
    const m = await this.store.db
      .selectFrom('image_members')
      .select('status')
      .where('image_id', '=', img.id)
      .where('member_id', '=', auth.projectId ?? '')
      .executeTakeFirst();
    return m?.status === 'accepted';
  }

  /** Changes need ownership (or admin); visibility public needs admin. */
  private async owned(auth: AuthContext, id: string): Promise<Image> {
    const img = await this.get(auth, id);
    if (!auth.isAdmin && img.owner !== auth.projectId)
      throw forbidden('You are not the owner of this image.');
    return img;
  }

  private checkVisibility(auth: AuthContext, v: string | undefined): void {
    if (v === undefined) return;
    if (!['private', 'shared', 'community', 'public'].includes(v))
      throw badRequest(`Invalid visibility ${v}.`);
    if (v === 'public' && !auth.isAdmin)
      throw forbidden('Only administrators can publish images (visibility public).');
  }

  private checkFormats(p: { disk_format?: string | undefined; container_format?: string | undefined }): void {
    if (p.disk_format !== undefined && !DISK_FORMATS.includes(p.disk_format)) {
      throw badRequest(`disk_format ${p.disk_format} is not supported; use ${DISK_FORMATS.join(' or ')}.`);
    }
    if (p.container_format !== undefined && !CONTAINER_FORMATS.includes(p.container_format)) {
      throw badRequest(`container_format ${p.container_format} is not supported; use bare.`);
    }
  }

  private checkProperties(props: Record<string, string | null>, existing: Record<string, string>): void {
    for (const k of Object.keys(props)) {
      if (READ_ONLY.has(k)) throw forbidden(`Attribute '${k}' is read-only.`);
      if (!/^[A-Za-z0-9_.:-]{1,255}$/.test(k)) throw badRequest(`Bad property name '${k}'.`);
    }
    const set = Object.fromEntries(Object.entries(props).filter((e): e is [string, string] => e[1] !== null));
    validateImageProperties(set);
    if (Object.keys({ ...existing, ...set }).length > MAX_PROPERTIES)
      throw new BulwarkError('PayloadTooLarge', `At most ${MAX_PROPERTIES} properties per image.`);
  }

  async create(
    auth: AuthContext,
    input: Omit<ImagePatch, 'properties'> & { id?: string; properties: Record<string, string> },
  ): Promise<Image> {
    if (!auth.projectId) throw forbidden('A project-scoped token is needed to own an image.');
    this.checkVisibility(auth, input.visibility);
    this.checkFormats(input);
    this.checkProperties(input.properties, {});
    await this.storage?.check('images', 'image', auth);
    const id = input.id ?? uuid();
    if (await this.store.db.selectFrom('images').select('id').where('id', '=', id).executeTakeFirst()) {
      throw conflict(`Image ID ${id} already exists.`);
    }
    const now = nowIso();
    const row: Image = {
      id,
      name: input.name ?? '',
      owner: auth.projectId,
      visibility: input.visibility ?? 'shared',
      status: 'queued',
      disk_format: input.disk_format ?? null,
      container_format: input.container_format ?? null,
      size: null,
      virtual_size: null,
      checksum: null,
      os_hash_algo: null,
      os_hash_value: null,
      min_disk: input.min_disk ?? 0,
      min_ram: input.min_ram ?? 0,
      protected: input.protected ? 1 : 0,
      properties: JSON.stringify(input.properties),
      tags: JSON.stringify(input.tags ?? []),
      created_at: now,
      updated_at: now,
    };
    await this.store.db.insertInto('images').values(row).execute();
    return row;
  }

  async update(auth: AuthContext, id: string, patch: ImagePatch): Promise<Image> {
    const img = await this.owned(auth, id);
    await this.immutable?.(img.id);
    this.checkVisibility(auth, patch.visibility);
    this.checkFormats(patch);
    if (
      (patch.disk_format !== undefined || patch.container_format !== undefined) &&
      img.status !== 'queued'
    ) {
      throw forbidden('disk_format and container_format can change only before data is uploaded.');
    }
    const props = propertiesOf(img);
    this.checkProperties(patch.properties, props);
    for (const [k, v] of Object.entries(patch.properties)) {
      if (v === null) {
        if (!Object.hasOwn(props, k)) throw conflict(`Property ${k} does not exist.`);
        delete props[k];
      } else {
        props[k] = v;
      }
    }
    await this.store.db
      .updateTable('images')
      .set({
        ...(patch.name !== undefined ? { name: patch.name } : {}),
        ...(patch.visibility !== undefined ? { visibility: patch.visibility } : {}),
        ...(patch.protected !== undefined ? { protected: patch.protected ? 1 : 0 } : {}),
        ...(patch.min_disk !== undefined ? { min_disk: patch.min_disk } : {}),
        ...(patch.min_ram !== undefined ? { min_ram: patch.min_ram } : {}),
        ...(patch.disk_format !== undefined ? { disk_format: patch.disk_format } : {}),
        ...(patch.container_format !== undefined ? { container_format: patch.container_format } : {}),
        ...(patch.tags !== undefined ? { tags: JSON.stringify(patch.tags) } : {}),
        properties: JSON.stringify(props),
        updated_at: nowIso(),
      })
      .where('id', '=', id)
      .execute();
    return this.get(auth, id);
  }

  /**
   * Stores the image data: size-limited, hashed, format-checked, and compared
   * with any checksum the client declared. On any failure the data is removed
   * and the image stays queued.
   */
  async upload(auth: AuthContext, id: string, body: Readable): Promise<Image> {
    const img = await this.owned(auth, id);
    await this.immutable?.(img.id);
    if (img.status !== 'queued')
      throw conflict(`Image ${id} already has data (status ${img.status}); create a new image.`);
    if (!img.disk_format || !img.container_format) {
      throw badRequest('Set disk_format and container_format before uploading data.');
    }
    await this.storage?.check('images', 'image data', auth);
    const claimed = await this.store.db
      .updateTable('images')
      .set({ status: 'saving' })
      .where('id', '=', id)
      .where('status', '=', 'queued')
      .executeTakeFirst();
    if (Number(claimed.numUpdatedRows) !== 1) throw conflict(`Image ${id} is already being uploaded.`);
    try {
      const got = await this.files.receive(id, body, this.maxImageBytes);
      if (got.size === 0) throw badRequest('The image data is empty.');
      const props = propertiesOf(img);
      const declared = props['owner_specified.openstack.sha256'] ?? props.os_hash_value_expected;
      // openstacksdk sends the key empty when it did not hash the file: only a value is a claim.
      if (declared && declared.toLowerCase() !== got.sha256) {
        throw badRequest(
          `Checksum mismatch: the data's sha256 is ${got.sha256}, but ${declared} was declared. Nothing was stored.`,
        );
      }
      const declaredMd5 = props['owner_specified.openstack.md5'];
      if (declaredMd5 && declaredMd5.toLowerCase() !== got.md5) {
        throw badRequest(
          `Checksum mismatch: the data's md5 is ${got.md5}, but ${declaredMd5} was declared. Nothing was stored.`,
        );
      }
      const inspected = await this.files.inspect(id, img.disk_format);
      await this.store.db
        .updateTable('images')
        .set({
          status: 'active',
          size: got.size,
          virtual_size: inspected.virtualSize,
          checksum: got.md5,
          os_hash_algo: 'sha256',
          os_hash_value: got.sha256,
          updated_at: nowIso(),
        })
        .where('id', '=', id)
        .execute();
    } catch (err) {
      this.files.remove(id);
      await this.store.db.updateTable('images').set({ status: 'queued' }).where('id', '=', id).execute();
      throw err;
    }
    return this.get(auth, id);
  }

  async download(auth: AuthContext, id: string) {
    const img = await this.get(auth, id);
    if (img.status !== 'active')
      throw new BulwarkError('NotFound', `Image ${id} has no data yet (status ${img.status}).`);
    return { image: img, ...this.files.open(id) };
  }

  async delete(auth: AuthContext, id: string, inUse: (id: string) => Promise<boolean>): Promise<void> {
    const img = await this.owned(auth, id);
    await this.immutable?.(img.id);
    if (img.protected) throw forbidden(`Image ${id} is protected; unset protected before deleting it.`);
    if (await inUse(id)) throw conflict(`Image ${id} is in use by a server; delete the server first.`);
    await this.store.db.deleteFrom('images').where('id', '=', id).execute();
    this.files.remove(id);
  }

  /** For the compute layer: an active image's file and format, visible to the caller. */
  async bootSource(auth: AuthContext, id: string) {
    const img = await this.get(auth, id);
    if (img.status !== 'active')
      throw badRequest(`Image ${id} is not active (status ${img.status}); upload its data first.`);
    return { image: img, path: this.files.path(id), format: img.disk_format as 'raw' | 'qcow2' };
  }
}
