import type { Selectable } from 'kysely';
import type { DomainsTable, ProjectsTable, RolesTable, UsersTable } from '../store/schema.js';

/** Keystone v3 JSON shapes for our rows. `links.self` is filled by the API layer. */
export type Links = { self: string };

export const domainView = (d: Selectable<DomainsTable>, base: string) => ({
  id: d.id,
  name: d.name,
  description: d.description,
  enabled: d.enabled === 1,
  tags: [] as string[],
  options: {},
  links: { self: `${base}/domains/${d.id}` },
});

export const projectView = (p: Selectable<ProjectsTable>, base: string) => ({
  id: p.id,
  name: p.name,
  domain_id: p.domain_id,
  description: p.description,
  enabled: p.enabled === 1,
  is_domain: false,
  parent_id: p.domain_id,
  tags: [] as string[],
  options: {},
  links: { self: `${base}/projects/${p.id}` },
});

export const userView = (u: Selectable<UsersTable>, base: string) => ({
  id: u.id,
  name: u.name,
  domain_id: u.domain_id,
  enabled: u.enabled === 1,
  ...(u.default_project_id ? { default_project_id: u.default_project_id } : {}),
  ...(u.email ? { email: u.email } : {}),
  description: u.description,
  password_expires_at: u.password_expires_at,
  options: JSON.parse(u.options) as Record<string, unknown>,
  links: { self: `${base}/users/${u.id}` },
});

export const roleView = (r: Selectable<RolesTable>, base: string) => ({
  id: r.id,
  name: r.name,
  description: r.description,
  domain_id: null,
  options: {},
  links: { self: `${base}/roles/${r.id}` },
});
