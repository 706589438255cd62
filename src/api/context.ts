import type { AuthContext, PolicyTarget } from '../policy/context.js';
import type { Action } from '../policy/rules.js';

/** Per-route settings every route must declare (checked when routes are added). */
export interface RouteConfig {
  /** The policy action this route performs (policy/rules.ts). */
  action: Action;
  /** Builds the policy target from the request, for rules like `self` or `member`. */
  target?: (req: {
    params: unknown;
    headers: Record<string, unknown>;
    query?: unknown;
    /** The body as sent (not yet validated: policy runs first), for rules on what a write names. */
    body?: unknown;
    auth?: AuthContext | null;
  }) => PolicyTarget | Promise<PolicyTarget>;
  /** The audit target type, e.g. "project"; the id comes from `audit.targetId` or the `:id` param. */
  targetType?: string;
}

/** What handlers add to the request for the audit record. */
export interface AuditNote {
  targetId?: string;
  /** The user name given in a failed login, before any user is authenticated. */
  attemptedUser?: string;
  reason?: string;
}

/** One registered route, for the RBAC matrix, the fuzzer and the docs. */
export interface RouteInfo {
  method: string;
  url: string;
  action: Action;
  /** The route's JSON schemas (body, querystring, params) as registered, for test/api/fuzz.test.ts. */
  schema?: { body?: unknown; querystring?: unknown; params?: unknown } | undefined;
}

declare module 'fastify' {
  interface FastifyInstance {
    routeTable: readonly RouteInfo[];
  }
  interface FastifyContextConfig {
    action?: Action;
    target?: RouteConfig['target'];
    targetType?: string;
  }
  interface FastifyRequest {
    auth: AuthContext | null;
    auditNote: AuditNote;
  }
}
