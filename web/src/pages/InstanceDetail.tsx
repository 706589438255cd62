import { type FormEvent, useCallback, useState } from 'react';
import { Link, useNavigate, useParams } from 'react-router';
import { del, get, post, type Session } from '../api';
import { useAction, useLoad, usePoll } from '../hooks';
import { Details, ErrorBox, Field, Loading, Page, Progress } from '../ui';
import { busyServer, type Server } from './Instances';
import { listGroups } from './SecurityGroups';

const ACTIONS: [string, string, (s: Server) => boolean][] = [
  ['Start', 'os-start', (s) => s.status === 'SHUTOFF'],
  ['Stop', 'os-stop', (s) => s.status === 'ACTIVE'],
  ['Suspend', 'suspend', (s) => s.status === 'ACTIVE'],
  ['Resume', 'resume', (s) => s.status === 'SUSPENDED'],
];

/** Edit Security Groups: the groups a server is in, changed one add/remove at a time (Nova's actions). */
function EditSecurityGroups({ server, onChanged }: { server: Server; onChanged: () => void }) {
  const groups = useLoad(listGroups);
  const edit = useAction();
  // The box shows what was asked at once; a refusal puts it back to what the server has.
  const [asked, setAsked] = useState<Set<string> | null>(null);
  const current = asked ?? new Set(server.security_groups.map((g) => g.name));
  const toggle = async (name: string, add: boolean) => {
    const next = new Set(current);
    if (add) next.add(name);
    else next.delete(name);
    setAsked(next);
    const ok = await edit.run(() =>
      post(`/compute/v2.1/servers/${server.id}/action`, {
        [add ? 'addSecurityGroup' : 'removeSecurityGroup']: { name },
      }),
    );
    if (!ok) setAsked(null);
    onChanged();
  };
  return (
    <fieldset aria-label="Edit Security Groups">
      <legend>Edit Security Groups</legend>
      {(groups.data ?? []).map((g) => (
        <label key={g.id} className="check">
          <input
            type="checkbox"
            name={`sg-${g.name}`}
            disabled={edit.busy}
            checked={current.has(g.name)}
            onChange={(e) => toggle(g.name, e.target.checked)}
          />
          {g.name}
        </label>
      ))}
      {edit.busy && <Progress label="Updating security groups" />}
      <ErrorBox error={edit.error ?? groups.error} />
    </fieldset>
  );
}

function Quarantine({ server, onChanged }: { server: Server; onChanged: () => void }) {
  const [reason, setReason] = useState('');
  const q = useAction();
  const url = `/compute/v2.1/servers/${server.id}/os-quarantine`;
  const submit = async (e: FormEvent) => {
    e.preventDefault();
    if (await q.run(() => post(url, { quarantine: { reason } }))) onChanged();
  };
  return server['bulwark:quarantine'] ? (
    <div>
      <p>Quarantined: {server['bulwark:quarantine'].reason}</p>
      <button
        type="button"
        disabled={q.busy}
        onClick={async () => (await q.run(() => del(url))) && onChanged()}
      >
        Lift Quarantine
      </button>
      <ErrorBox error={q.error} />
    </div>
  ) : (
    <form onSubmit={submit} className="inline-form" aria-label="Quarantine">
      <Field label="Quarantine reason">
        <input name="reason" required value={reason} onChange={(e) => setReason(e.target.value)} />
      </Field>
      <button type="submit" className="danger" disabled={q.busy}>
        Quarantine
      </button>
      {q.busy && <Progress label="Quarantining: suspend, isolate, forensic snapshot" />}
      <ErrorBox error={q.error} />
    </form>
  );
}

export function InstanceDetail({ session }: { session: Session }) {
  const { id = '' } = useParams();
  const navigate = useNavigate();
  const server = useLoad(
    () => get<{ server: Server }>(`/compute/v2.1/servers/${id}`).then((r) => r.server),
    [id],
  );
  const act = useAction();
  const reload = server.reload;
  usePoll(server.data ? busyServer(server.data) : false, reload);
  const action = useCallback(
    (name: string) =>
      act.run(() => post(`/compute/v2.1/servers/${id}/action`, { [name]: null })).then(reload),
    [act, id, reload],
  );
  if (server.error) return <ErrorBox error={server.error} />;
  const s = server.data;
  if (!s) return <Loading what="instance" />;
  return (
    <Page title={`Instance: ${s.name}`}>
      <Details
        rows={[
          ['ID', s.id],
          ['Status', s.status],
          ['Task', s['OS-EXT-STS:task_state'] ?? 'None'],
          [
            'IP Addresses',
            Object.values(s.addresses)
              .flat()
              .map((a) => a.addr)
              .join(', ') || 'None',
          ],
          ['Security Groups', s.security_groups.map((g) => g.name).join(', ') || 'None'],
          [
            'Metadata',
            Object.entries(s.metadata)
              .map(([k, v]) => `${k}=${v}`)
              .join(', ') || 'None',
          ],
          ...(s.fault?.message ? ([['Fault', s.fault.message]] as [string, string][]) : []),
        ]}
      />
      {busyServer(s) && (
        <Progress label={`${s.status.toLowerCase()}: ${s['OS-EXT-STS:task_state'] ?? 'working'}`} />
      )}
      <fieldset className="actions">
        <legend>Actions</legend>
        {ACTIONS.map(([label, name, ok]) => (
          <button key={name} type="button" disabled={act.busy || !ok(s)} onClick={() => action(name)}>
            {label}
          </button>
        ))}
        <button
          type="button"
          className="danger"
          disabled={act.busy}
          onClick={async () => {
            if (await act.run(() => del(`/compute/v2.1/servers/${id}`)))
              navigate('/project/compute/instances');
          }}
        >
          Delete Instance
        </button>
      </fieldset>
      <ErrorBox error={act.error} />
      <p>
        <Link to={`/project/compute/instances/${id}/console`}>Console</Link> (serial console; sessions are
        recorded)
      </p>
      <EditSecurityGroups server={s} onChanged={reload} />
      {session.is_admin && (
        <section aria-labelledby="quarantine-title">
          <h2 id="quarantine-title">Quarantine (admin)</h2>
          <Quarantine server={s} onChanged={reload} />
        </section>
      )}
    </Page>
  );
}
