import type { Store } from '../store/database.js';
import type { KeyService } from './contract.js';

/** The names the platform gives the keys it makes for a server's disk or vTPM and a volume (never a user's). */
const PLATFORM_KEY =
  /^(?:root-disk-|vtpm-|volume )[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/**
 * After a daemon restart, before any build runs (docs/reliability.md): keys
 * the platform made for a server or volume that no live record refers to are
 * deleted. A kill between creating a key and storing its id on the record,
 * or between deleting the record's data and its key, leaves one; its data is
 * gone or was never written, so nothing can need it. Only keys the platform
 * made itself (no creator) qualify: a user's secret is never touched,
 * whatever its name. Returns the deleted keys' names.
 */
export async function sweepOrphanKeys(store: Store, keys: KeyService): Promise<string[]> {
  const platformKeys = (
    await store.db
      .selectFrom('secrets')
      .select(['id', 'project_id', 'name'])
      .where('creator_id', 'is', null)
      .where((eb) =>
        eb.or([
          eb('name', 'like', 'root-disk-%'),
          eb('name', 'like', 'vtpm-%'),
          eb('name', 'like', 'volume %'),
        ]),
      )
      .execute()
  ).filter((s) => PLATFORM_KEY.test(s.name ?? ''));
  if (platformKeys.length === 0) return [];
  const servers = await store.db
    .selectFrom('servers')
    .select(['root_key_secret_id', 'tpm_secret_id'])
    .where('deleted_at', 'is', null)
    .execute();
  const volumes = await store.db
    .selectFrom('volumes')
    .select('key_secret_id')
    .where('deleted_at', 'is', null)
    .execute();
  const used = new Set(
    [
      ...servers.flatMap((s) => [s.root_key_secret_id, s.tpm_secret_id]),
      ...volumes.map((v) => v.key_secret_id),
    ].filter((id): id is string => id !== null),
  );
  const swept: string[] = [];
  for (const k of platformKeys) {
    if (used.has(k.id)) continue;
    await keys.deleteKeyFor(k.project_id, k.id);
    swept.push(k.name ?? k.id);
  }
  return swept;
}
