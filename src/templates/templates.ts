import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import type { Selectable } from 'kysely';
import type { ImageService } from '../compute/images.js';
import { badRequest, conflict, forbidden, notFound } from '../errors.js';
import type { ApprovalService, ApprovalView } from '../governance/approvals.js';
import type { AuthContext } from '../policy/context.js';
import type { Store } from '../store/database.js';
import type { TemplatesTable } from '../store/schema.js';
import { nowIso, uuid } from '../util/ids.js';

export type Template = Selectable<TemplatesTable>;

const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

/** sha256 of a file, streamed. */
export async function sha256File(path: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(path)) h.update(chunk as Buffer);
  return h.digest('hex');
}

/**
 * Templates (guide 18, docs/templates.md). A cloud admin makes an active
 * image a template version (`name` v1, v2, ...): the sha256 of its data is
 * pinned, the image can no longer be changed, re-uploaded or deleted, and the
 * version waits for another admin's approval (the approvals engine, kind
 * `template-version`; the requester can never approve it). Once approved, the
 * image is public so members of every project can boot from it; every boot
 * (create, start) re-hashes the file and refuses if it no longer matches.
 */
export class TemplateService {
  constructor(
    private readonly store: Store,
    private readonly images: ImageService,
    /** Where an image's data lives (host/image-store.ts). */
    private readonly imagePath: (imageId: string) => string,
    private readonly approvals: ApprovalService,
  ) {
    approvals.register('template-version', (_requester, payload, approval) =>
      this.publish(String((payload as { templateId?: unknown }).templateId), approval.approvedBy),
    );
  }

  private get db() {
    return this.store.db;
  }

  async create(
    auth: AuthContext,
    input: { name: string; imageId: string; description?: string | null | undefined },
  ): Promise<{ template: Template; approval: ApprovalView }> {
    if (!NAME.test(input.name))
      throw badRequest(
        'A template name is 1-64 letters, digits, ".", "_" or "-", starting with a letter or digit.',
      );
    const img = await this.images.get(auth, input.imageId);
    if (img.status !== 'active' || !img.os_hash_value)
      throw badRequest(`Image ${img.id} has no data yet (status ${img.status}); upload it first.`);
    if (await this.ofImage(img.id))
      throw conflict(`Image ${img.id} is already a template version; upload a new image for a new version.`);
    // The file as it is now must be the data that was uploaded (and checked) before it is pinned.
    const sha256 = await sha256File(this.imagePath(img.id));
    if (sha256 !== img.os_hash_value)
      throw conflict(
        `Image ${img.id}'s file no longer matches the sha256 recorded at upload; it cannot be a template.`,
      );
    const last = await this.db
      .selectFrom('templates')
      .select((eb) => eb.fn.max('version').as('v'))
      .where('name', '=', input.name)
      .executeTakeFirst();
    const row: Template = {
      id: uuid(),
      name: input.name,
      version: Number(last?.v ?? 0) + 1,
      image_id: img.id,
      sha256,
      description: input.description ?? '',
      status: 'pending',
      created_by: auth.userId,
      approval_id: null,
      approved_by: null,
      approved_at: null,
      created_at: nowIso(),
    };
    await this.db.insertInto('templates').values(row).execute();
    const approval = await this.approvals.submit(
      auth,
      'template-version',
      { templateId: row.id },
      `publish template ${row.name} v${row.version} (image ${img.id}, sha256 ${sha256})`,
    );
    await this.db
      .updateTable('templates')
      .set({ approval_id: approval.id })
      .where('id', '=', row.id)
      .execute();
    return { template: { ...row, approval_id: approval.id }, approval };
  }

  /** The approval's executor: the version becomes usable, its image public and protected. */
  private async publish(templateId: string, approvedBy: string) {
    const t = await this.db
      .selectFrom('templates')
      .selectAll()
      .where('id', '=', templateId)
      .executeTakeFirst();
    if (!t) throw notFound('template', templateId);
    if (t.status !== 'pending') throw conflict(`Template ${t.name} v${t.version} is already ${t.status}.`);
    const at = nowIso();
    await this.db
      .updateTable('templates')
      .set({ status: 'approved', approved_by: approvedBy, approved_at: at })
      .where('id', '=', t.id)
      .where('status', '=', 'pending')
      .execute();
    await this.db
      .updateTable('images')
      .set({ visibility: 'public', protected: 1, updated_at: at })
      .where('id', '=', t.image_id)
      .execute();
    return { template: { id: t.id, name: t.name, version: t.version } };
  }

  /** Templates with a pending version shown as `rejected` once its approval was rejected (it never becomes usable). */
  private query() {
    return this.db
      .selectFrom('templates as t')
      .leftJoin('approvals as a', 'a.id', 't.approval_id')
      .selectAll('t')
      .select('a.status as approval_status');
  }

  private static withDecision(r: Template & { approval_status: string | null }): Template {
    const { approval_status, ...t } = r;
    return t.status === 'pending' && approval_status === 'rejected' ? { ...t, status: 'rejected' } : t;
  }

  async list(filter: { name?: string | undefined }): Promise<Template[]> {
    let q = this.query().orderBy('t.name').orderBy('t.version');
    if (filter.name) q = q.where('t.name', '=', filter.name);
    return (await q.execute()).map(TemplateService.withDecision);
  }

  async get(id: string): Promise<Template> {
    const t = await this.query().where('t.id', '=', id).executeTakeFirst();
    if (!t) throw notFound('template', id);
    return TemplateService.withDecision(t);
  }

  async ofImage(imageId: string): Promise<Template | undefined> {
    const t = await this.query().where('t.image_id', '=', imageId).executeTakeFirst();
    return t && TemplateService.withDecision(t);
  }

  /** ImageService's guard: a template's image never changes. */
  async immutable(imageId: string): Promise<void> {
    const t = await this.ofImage(imageId);
    if (t)
      throw forbidden(
        `Image ${imageId} is template ${t.name} v${t.version}; templates are immutable (upload a new image and make it the next version).`,
      );
  }

  /**
   * ServerService's gate before a server is made from an image and before
   * every boot: a template version must be approved and its file must still
   * hash to the pinned sha256. Other images pass.
   */
  async checkBoot(imageId: string, path: string): Promise<void> {
    const t = await this.ofImage(imageId);
    if (!t) return;
    if (t.status === 'rejected')
      throw conflict(
        `Template ${t.name} v${t.version} was rejected (approval ${t.approval_id}); it cannot be used.`,
      );
    if (t.status !== 'approved')
      throw conflict(
        `Template ${t.name} v${t.version} is waiting for a second administrator's approval (approval ${t.approval_id}); it cannot be used yet.`,
      );
    const now = await sha256File(path);
    if (now !== t.sha256)
      throw conflict(
        `Template ${t.name} v${t.version}'s image data no longer matches its pinned sha256 (${t.sha256}, now ${now}); refusing to boot from it.`,
      );
  }
}
