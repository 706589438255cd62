import { type FormEvent, useState } from 'react';
import { get } from '../api';
import { useLoad } from '../hooks';
import { ErrorBox, Field, Loading, Page } from '../ui';

interface AuditEvent {
  seq: number;
  time: string;
  user_name: string | null;
  project_id: string | null;
  action: string;
  method: string;
  path: string;
  outcome: string;
  status: number;
  reason: string | null;
  source_ip: string | null;
}
interface Verification {
  ok: boolean;
  checked: number;
  failure?: { seq: number; id: string; problem: string };
}

/** The hash-chained audit log (docs/audit.md) with filters, and whether the chain verifies. */
export function AuditPage() {
  const [filters, setFilters] = useState({ user: '', action: '', outcome: '', since: '' });
  const [applied, setApplied] = useState(filters);
  const events = useLoad(() => {
    const q = new URLSearchParams({ limit: '100' });
    if (applied.user) q.set('user', applied.user);
    if (applied.action) q.set('action', applied.action);
    if (applied.outcome) q.set('outcome', applied.outcome);
    if (applied.since) q.set('since', new Date(applied.since).toISOString());
    return get<{ events: AuditEvent[] }>(`/bulwark/v1/audit/events?${q}`).then((r) => r.events);
  }, [applied]);
  const verify = useLoad(() =>
    get<{ verification: Verification }>('/bulwark/v1/audit/verify').then((r) => r.verification),
  );
  const submit = (e: FormEvent) => {
    e.preventDefault();
    setApplied(filters);
  };
  const v = verify.data;
  return (
    <Page title="Audit Log">
      <div className={`chain ${v ? (v.ok ? 'chain-ok' : 'chain-bad') : ''}`} role="status">
        {verify.error
          ? `Chain verification failed to run: ${verify.error}`
          : !v
            ? 'Verifying the audit chain…'
            : v.ok
              ? `Chain verified: ${v.checked} records intact.`
              : `Chain BROKEN at record ${v.failure?.seq}: ${v.failure?.problem}`}
        <button type="button" onClick={verify.reload}>
          Verify again
        </button>
      </div>
      <form onSubmit={submit} className="inline-form" aria-label="Filter audit events">
        <Field label="User">
          <input
            name="user"
            value={filters.user}
            onChange={(e) => setFilters({ ...filters, user: e.target.value })}
          />
        </Field>
        <Field label="Action">
          <input
            name="action"
            placeholder="e.g. compute:servers:create"
            value={filters.action}
            onChange={(e) => setFilters({ ...filters, action: e.target.value })}
          />
        </Field>
        <Field label="Outcome">
          <select
            name="outcome"
            value={filters.outcome}
            onChange={(e) => setFilters({ ...filters, outcome: e.target.value })}
          >
            <option value="">Any</option>
            <option value="success">success</option>
            <option value="failure">failure</option>
            <option value="denied">denied</option>
          </select>
        </Field>
        <Field label="Since">
          <input
            name="since"
            type="datetime-local"
            value={filters.since}
            onChange={(e) => setFilters({ ...filters, since: e.target.value })}
          />
        </Field>
        <button type="submit">Apply filters</button>
      </form>
      <ErrorBox error={events.error} />
      {events.data === null ? (
        <Loading what="audit events" />
      ) : (
        <table className="wrap">
          <caption>Latest audit events (newest first)</caption>
          <thead>
            <tr>
              <th scope="col">#</th>
              <th scope="col">Time</th>
              <th scope="col">User</th>
              <th scope="col">Action</th>
              <th scope="col">Request</th>
              <th scope="col">Outcome</th>
              <th scope="col">Reason</th>
            </tr>
          </thead>
          <tbody>
            {events.data.map((e) => (
              <tr key={e.seq}>
                <td>{e.seq}</td>
                <td>{e.time}</td>
                <td>{e.user_name ?? '-'}</td>
                <td>{e.action}</td>
                <td>
                  {e.method} {e.path} ({e.status})
                </td>
                <td>{e.outcome}</td>
                <td>{e.reason ?? ''}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </Page>
  );
}
