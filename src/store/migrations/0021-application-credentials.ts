import type { Kysely } from 'kysely';

/**
 * Keystone application credentials (issue 8): for automation, bound to one
 * project, a subset of the creator's roles, an optional expiry and access
 * rules. The secret is stored as an argon2 hash only; tokens made from one
 * name it, so its rules, roles and expiry apply on every request.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('application_credentials')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('user_id', 'text', (c) => c.notNull().references('users.id').onDelete('cascade'))
    .addColumn('project_id', 'text', (c) => c.notNull().references('projects.id').onDelete('cascade'))
    .addColumn('name', 'text', (c) => c.notNull())
    .addColumn('description', 'text', (c) => c.notNull().defaultTo(''))
    .addColumn('secret_hash', 'text', (c) => c.notNull())
    .addColumn('expires_at', 'text')
    .addColumn('roles', 'text', (c) => c.notNull())
    .addColumn('access_rules', 'text', (c) => c.notNull())
    .addColumn('unrestricted', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('created_at', 'text', (c) => c.notNull())
    .addUniqueConstraint('application_credentials_user_name', ['user_id', 'name'])
    .execute();
  await db.schema.alterTable('tokens').addColumn('app_cred_id', 'text').execute();
}
