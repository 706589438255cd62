/** Who is calling, as established from a validated token. */
export interface AuthContext {
  userId: string;
  userName: string;
  userDomainId: string;
  projectId: string | null;
  projectName: string | null;
  projectDomainId: string | null;
  /** Effective roles on the scoped project, with implied roles expanded. */
  roles: readonly string[];
  /** True only for the admin role on the cloud's admin project (see policy/rules.ts). */
  isAdmin: boolean;
  methods: readonly string[];
  /**
   * An admin-scoped token obtained without a second factor while admins must
   * use MFA: `isAdmin` is false and only MFA enrollment is allowed (policy/rules.ts).
   */
  mfaPending?: boolean;
  /** Set for a token made from an application credential: its access rules limit every request. */
  appCred?: {
    id: string;
    accessRules: readonly { id: string; service: string; method: string; path: string }[];
    unrestricted: boolean;
  };
  tokenHash: string;
  auditId: string;
  issuedAt: string;
  expiresAt: string;
}

/** Attributes of the thing being acted on, compared against the caller. */
export interface PolicyTarget {
  project_id?: string | null;
  user_id?: string | null;
}

/** Keystone's role implication: admin > manager > member > reader. */
const IMPLIES: Readonly<Record<string, readonly string[]>> = {
  admin: ['manager', 'member', 'reader'],
  manager: ['member', 'reader'],
  member: ['reader'],
};

export function expandRoles(names: Iterable<string>): string[] {
  const out = new Set<string>();
  for (const n of names) {
    out.add(n);
    for (const implied of IMPLIES[n] ?? []) out.add(implied);
  }
  return [...out].sort();
}
