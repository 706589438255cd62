import { isAction, POLICY } from '../policy/rules.js';
import type { AuditEventsTable } from '../store/schema.js';

/**
 * Which audit records are security events, and how severe (guide §13 "Key
 * events to monitor"). Pure: one table of known actions plus three rules
 * that hold for any action, so a new action (e.g. `break_glass:use`)
 * slots in as one row.
 */
export const SEVERITIES = ['critical', 'high', 'medium', 'low', 'info'] as const;
export type Severity = (typeof SEVERITIES)[number];

/** RFC 5424 §6.2.1 severity codes: crit, err, warning, notice, informational. */
export const SYSLOG_SEVERITY: Readonly<Record<Severity, number>> = {
  critical: 2,
  high: 3,
  medium: 4,
  low: 5,
  info: 6,
};

/** ArcSight CEF severity, 0-10. */
export const CEF_SEVERITY: Readonly<Record<Severity, number>> = {
  critical: 10,
  high: 8,
  medium: 5,
  low: 3,
  info: 1,
};

export interface Classification {
  /** Short event class a SIEM can filter on, e.g. `authentication.failure`. */
  category: string;
  severity: Severity;
}

type Outcome = 'success' | 'failure' | 'denied';
type Row = Pick<AuditEventsTable, 'action' | 'outcome' | 'status' | 'reason' | 'user_id'>;

/** Known actions: category, and severity by outcome (absent outcome: the generic rules decide). */
const KNOWN: Readonly<Record<string, { category: string } & Partial<Record<Outcome, Severity>>>> = {
  'compute:servers:create': { category: 'server.create', success: 'low', failure: 'low' },
  'compute:servers:delete': { category: 'server.delete', success: 'low', failure: 'low' },
  'identity:issue_token': {
    category: 'authentication',
    success: 'info',
    failure: 'medium',
    denied: 'medium',
  },
  // Every break-glass use and attempt (identity/break-glass.ts), and the API call that opened it.
  'break_glass:use': {
    category: 'break_glass',
    success: 'critical',
    failure: 'critical',
    denied: 'critical',
  },
  'break_glass:open_session': {
    category: 'break_glass',
    success: 'critical',
    failure: 'critical',
    denied: 'critical',
  },
  'break_glass:close_review': { category: 'break_glass.review', success: 'medium' },
  'compute:servers:quarantine:create': { category: 'quarantine', success: 'high', failure: 'high' },
  'compute:servers:quarantine:suspend': { category: 'quarantine', success: 'high', failure: 'critical' },
  'compute:servers:quarantine:isolate': { category: 'quarantine', success: 'high', failure: 'critical' },
  'compute:servers:quarantine:snapshot': { category: 'quarantine', success: 'high', failure: 'high' },
  'compute:servers:quarantine:delete': { category: 'quarantine.lifted', success: 'medium' },
  'dataplane:lockdown': { category: 'firewall.lockdown', success: 'critical', failure: 'critical' },
  'dataplane:lockdown_lifted': { category: 'firewall.lockdown', success: 'medium' },
  'network:drop_spike': { category: 'firewall.drop_spike', success: 'high' },
  // A guest's vTPM emulator died under it (compute/vtpm-recovery.ts): stopped, restarted or left ERROR.
  'server:vtpm_lost': { category: 'vtpm.lost', failure: 'high' },
  'server:vtpm_restarts_exhausted': { category: 'vtpm.lost', failure: 'critical' },
  'server:vtpm_recovered': { category: 'vtpm.recovered', success: 'medium', failure: 'high' },
  'key-manager:rotate_kek': { category: 'key.rotation', success: 'medium', failure: 'high' },
  'secret:decrypt': { category: 'secret.read', success: 'low' },
  'console:connect': { category: 'console.session', success: 'medium' },
  'console:recordings:replay': { category: 'console.replay', success: 'medium' },
  'console:recordings_pruned': { category: 'console.retention', success: 'info' },
};

/** Actions only the cloud admin may perform: a refused attempt is a privilege escalation attempt. */
export function isAdminOnly(action: string): boolean {
  if (!isAction(action)) return false;
  const terms: readonly string[] = POLICY[action];
  return terms.length === 1 && terms[0] === 'admin';
}

export function classify(row: Row): Classification {
  const outcome = row.outcome as Outcome;
  // Rules that hold whatever the action: they outrank the table because they say more.
  if (outcome !== 'success' && row.reason?.startsWith('Quota exceeded'))
    return { category: 'quota.violation', severity: 'medium' };
  if (outcome !== 'success' && row.user_id !== null && Number(row.status) === 403 && isAdminOnly(row.action))
    return { category: 'privilege_escalation.attempt', severity: 'high' };
  const known = KNOWN[row.action];
  const severity = known?.[outcome];
  if (known && severity) {
    const category =
      known.category === 'authentication'
        ? `authentication.${outcome === 'success' ? 'success' : 'failure'}`
        : known.category;
    return { category, severity };
  }
  if (outcome === 'denied') return { category: 'access.denied', severity: 'medium' };
  if (outcome === 'failure') return { category: known?.category ?? 'request.failure', severity: 'low' };
  return { category: known?.category ?? 'activity', severity: 'info' };
}
