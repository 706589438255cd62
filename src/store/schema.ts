import type { Generated } from 'kysely';

/**
 * Table types shared by both dialects. Portable column types only: text,
 * integer, and JSON stored as text, so one query builder serves SQLite and
 * PostgreSQL. Times are ISO-8601 UTC strings (they sort lexically).
 */
export interface DomainsTable {
  id: string;
  name: string;
  description: string;
  enabled: number;
  created_at: string;
}

export interface ProjectsTable {
  id: string;
  name: string;
  domain_id: string;
  description: string;
  enabled: number;
  created_at: string;
}

export interface UsersTable {
  id: string;
  name: string;
  domain_id: string;
  password_hash: string | null;
  enabled: number;
  default_project_id: string | null;
  email: string | null;
  description: string;
  /** JSON object of Keystone user options. */
  options: string;
  created_at: string;
  password_expires_at: string | null;
}

export interface RolesTable {
  id: string;
  name: string;
  description: string;
}

export interface RoleAssignmentsTable {
  user_id: string;
  project_id: string;
  role_id: string;
}

export interface TokensTable {
  /** sha256 of the token; the token itself is never stored. */
  id_hash: string;
  user_id: string;
  project_id: string | null;
  /** JSON array of auth methods used. */
  methods: string;
  audit_id: string;
  issued_at: string;
  expires_at: string;
  revoked_at: string | null;
}

export interface AuditEventsTable {
  seq: number;
  id: string;
  time: string;
  request_id: string;
  user_id: string | null;
  user_name: string | null;
  project_id: string | null;
  roles: string;
  source_ip: string | null;
  action: string;
  method: string;
  path: string;
  target_type: string | null;
  target_id: string | null;
  outcome: string;
  status: number;
  reason: string | null;
  prev_hash: string;
  hash: string;
}

export interface AuditHeadTable {
  id: number;
  seq: number;
  hash: string;
}

export interface Schema {
  domains: DomainsTable;
  projects: ProjectsTable;
  users: UsersTable;
  roles: RolesTable;
  role_assignments: RoleAssignmentsTable;
  tokens: TokensTable;
  audit_events: AuditEventsTable;
  audit_head: AuditHeadTable;
}

export type { Generated };
