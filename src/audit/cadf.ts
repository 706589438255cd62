import type { AuditEventsTable } from '../store/schema.js';
import { type Classification, classify } from './security-events.js';

/**
 * An audit row as a DMTF CADF event (the shape OpenStack's audit middleware
 * emits and SIEMs that read OpenStack expect), plus the security
 * classification and our chain position so a receiver can check order.
 */
export interface CadfEvent {
  typeURI: 'http://schemas.dmtf.org/cloud/audit/1.0/event';
  id: string;
  eventType: 'activity';
  eventTime: string;
  action: string;
  outcome: 'success' | 'failure';
  initiator: {
    typeURI: string;
    id: string | null;
    name: string | null;
    project_id: string | null;
    host: { address: string | null; agent: 'bulwark' };
  };
  target: { typeURI: string; id: string | null };
  observer: { typeURI: 'service/bulwark'; id: string };
  reason: { reasonType: 'HTTP'; reasonCode: string; message: string | null };
  requestPath: string;
  severity: Classification['severity'];
  category: string;
  bulwark: { seq: number; action: string; outcome: string; request_id: string; hash: string };
}

/** CADF's taxonomy of actions, from the HTTP method (or the last word of a system action). */
function cadfAction(method: string, action: string): string {
  if (action === 'identity:issue_token') return 'authenticate';
  const verbs: Record<string, string> = {
    POST: 'create',
    PUT: 'update',
    PATCH: 'update',
    DELETE: 'delete',
    GET: 'read',
    HEAD: 'read',
  };
  return verbs[method] ?? `system/${action.split(':').pop() ?? action}`;
}

/**
 * Anything shaped like one of our bearer secrets (256-bit base64url) or an
 * `X-Auth-Token`/`X-Subject-Token` value is replaced whole: a SIEM must never
 * receive a usable token, not even a prefix of one.
 */
export function maskTokens(text: string): string {
  return text
    .replace(/(x-(?:auth|subject)-token["'=:\s]+)[^\s"',;]+/gi, '$1***')
    .replace(/(?<![A-Za-z0-9_-])[A-Za-z0-9_-]{43}(?![A-Za-z0-9_-])/g, '***');
}

export function toCadf(row: AuditEventsTable, observerId: string): CadfEvent {
  const c = classify(row);
  const status = Number(row.status);
  return {
    typeURI: 'http://schemas.dmtf.org/cloud/audit/1.0/event',
    id: row.id,
    eventType: 'activity',
    eventTime: row.time,
    action: cadfAction(row.method, row.action),
    outcome: row.outcome === 'success' ? 'success' : 'failure',
    initiator: {
      typeURI: row.user_id ? 'service/security/account/user' : 'unknown',
      id: row.user_id,
      name: row.user_name,
      project_id: row.project_id,
      host: { address: row.source_ip, agent: 'bulwark' },
    },
    target: { typeURI: row.target_type ?? 'unknown', id: row.target_id },
    observer: { typeURI: 'service/bulwark', id: observerId },
    reason: {
      reasonType: 'HTTP',
      reasonCode: String(status),
      message: row.reason === null ? null : maskTokens(row.reason),
    },
    requestPath: maskTokens(row.path),
    severity: c.severity,
    category: c.category,
    bulwark: {
      seq: Number(row.seq),
      action: row.action,
      outcome: row.outcome,
      request_id: row.request_id,
      hash: row.hash,
    },
  };
}
