import { useState } from 'react';
import { get, post } from '../api';
import { useAction, useLoad } from '../hooks';
import { ErrorBox, Field, Loading, Page } from '../ui';

interface Approval {
  id: string;
  kind: string;
  status: string;
  project_id: string;
  requester_name: string;
  summary: string;
  created_at: string;
  decided_by_name: string | null;
  decided_at: string | null;
  decision_reason: string | null;
  error: string | null;
}

/** One pending approval: approve or reject with a reason; the API decides who may (docs/approvals.md). */
function Decide({ a, onDone }: { a: Approval; onDone: () => void }) {
  const [reason, setReason] = useState('');
  const act = useAction();
  const decide = (decision: 'approve' | 'reject') => async () => {
    if (await act.run(() => post(`/bulwark/v1/approvals/${a.id}/${decision}`, { reason }))) onDone();
  };
  return (
    <form className="inline-form" aria-label={`Decide ${a.summary}`} onSubmit={(e) => e.preventDefault()}>
      <Field label={`Reason for ${a.id}`}>
        <input name="reason" required value={reason} onChange={(e) => setReason(e.target.value)} />
      </Field>
      <button type="button" disabled={act.busy || !reason.trim()} onClick={decide('approve')}>
        Approve
      </button>
      <button type="button" disabled={act.busy || !reason.trim()} onClick={decide('reject')}>
        Reject
      </button>
      <ErrorBox error={act.error} />
    </form>
  );
}

/** Admin → Approvals: the two-person rule's queue, pending first, then what was decided. */
export function ApprovalsPage() {
  const approvals = useLoad(() =>
    get<{ approvals: Approval[] }>('/bulwark/v1/approvals').then((r) => r.approvals),
  );
  if (approvals.error) return <ErrorBox error={approvals.error} />;
  if (!approvals.data) return <Loading what="approvals" />;
  const pending = approvals.data.filter((a) => a.status === 'pending');
  const decided = approvals.data.filter((a) => a.status !== 'pending');
  return (
    <Page title="Approvals">
      <p>
        Requests held by a trigger wait here for another cloud admin. The requester never decides their own;
        an approved request runs as the requester.
      </p>
      <h2>Pending</h2>
      {pending.length === 0 ? (
        <p>No request is waiting.</p>
      ) : (
        <table className="wrap">
          <caption>Pending approvals</caption>
          <thead>
            <tr>
              <th scope="col">Request</th>
              <th scope="col">Kind</th>
              <th scope="col">Requester</th>
              <th scope="col">Submitted</th>
              <th scope="col">Decision</th>
            </tr>
          </thead>
          <tbody>
            {pending.map((a) => (
              <tr key={a.id}>
                <td>{a.summary}</td>
                <td>{a.kind}</td>
                <td>{a.requester_name}</td>
                <td>{a.created_at}</td>
                <td>
                  <Decide a={a} onDone={approvals.reload} />
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      <h2>Decided</h2>
      <table className="wrap">
        <caption>Decided approvals</caption>
        <thead>
          <tr>
            <th scope="col">Request</th>
            <th scope="col">Kind</th>
            <th scope="col">Requester</th>
            <th scope="col">Status</th>
            <th scope="col">Decided by</th>
            <th scope="col">Reason</th>
            <th scope="col">Outcome</th>
          </tr>
        </thead>
        <tbody>
          {decided.map((a) => (
            <tr key={a.id}>
              <td>{a.summary}</td>
              <td>{a.kind}</td>
              <td>{a.requester_name}</td>
              <td>{a.status}</td>
              <td>{a.decided_by_name ?? '-'}</td>
              <td>{a.decision_reason ?? ''}</td>
              <td>{a.error ?? ''}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </Page>
  );
}
