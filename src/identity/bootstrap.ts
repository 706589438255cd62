import type { Store } from '../store/database.js';
import { nowIso, randomSecret } from '../util/ids.js';
import { DEFAULT_DOMAIN_ID } from './config.js';
import type { IdentityService } from './service.js';

export const BUILTIN_ROLES = ['admin', 'manager', 'member', 'reader', 'backup-operator'] as const;

/**
 * Brings a fresh store to a usable state: the default domain, the built-in
 * roles, the admin project and an admin user. Returns the generated admin
 * password only when the admin was created now; it is never stored in clear.
 */
export async function bootstrapIdentity(
  store: Store,
  identity: IdentityService,
  adminName = 'admin',
): Promise<{ adminPassword: string | null }> {
  const db = store.db;
  if (!(await db.selectFrom('domains').select('id').where('id', '=', DEFAULT_DOMAIN_ID).executeTakeFirst())) {
    await db
      .insertInto('domains')
      .values({
        id: DEFAULT_DOMAIN_ID,
        name: 'Default',
        description: 'The default domain',
        enabled: 1,
        created_at: nowIso(),
      })
      .execute();
  }
  for (const name of BUILTIN_ROLES) {
    if ((await identity.listRoles({ name })).length === 0) await identity.createRole({ name });
  }
  const projectName = identity.config.adminProjectName;
  const project =
    (await identity.listProjects({ name: projectName, domainId: DEFAULT_DOMAIN_ID }))[0] ??
    (await identity.createProject({
      name: projectName,
      domainId: DEFAULT_DOMAIN_ID,
      description: 'Cloud administration',
    }));
  if ((await identity.listUsers({ name: adminName, domainId: DEFAULT_DOMAIN_ID })).length > 0) {
    return { adminPassword: null };
  }
  const adminPassword = randomSecret(18);
  const user = await identity.createUser({
    name: adminName,
    domainId: DEFAULT_DOMAIN_ID,
    password: adminPassword,
  });
  const adminRole = (await identity.listRoles({ name: 'admin' }))[0];
  if (!adminRole) throw new Error('admin role missing after bootstrap');
  await identity.grant(project.id, user.id, adminRole.id);
  return { adminPassword };
}
