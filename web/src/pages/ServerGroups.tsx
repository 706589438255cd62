import { type FormEvent, useState } from 'react';
import { api, del } from '../api';
import { useAction, useLoad } from '../hooks';
import { ErrorBox, Field, Loading, Page } from '../ui';

export interface ServerGroup {
  id: string;
  name: string;
  policy: string;
  rules: { max_server_per_host?: number };
  members: string[];
}

/** Nova's server groups at microversion 2.64: one `policy` and its `rules`. */
const MV = { 'openstack-api-version': 'compute 2.64' };
export const listServerGroups = () =>
  api<{ server_groups: ServerGroup[] }>('GET', '/compute/v2.1/os-server-groups', undefined, MV).then(
    (r) => r.server_groups,
  );

const POLICIES = ['anti-affinity', 'affinity', 'soft-anti-affinity', 'soft-affinity'] as const;

/**
 * Project → Compute → Server Groups (`openstack server group create --policy`):
 * members of an anti-affinity group land on different hosts, of an affinity
 * group on one; the soft ones prefer it. The Launch form picks a group.
 */
export function ServerGroupsPage() {
  const groups = useLoad(listServerGroups);
  const [name, setName] = useState('');
  const [policy, setPolicy] = useState<string>('anti-affinity');
  const [maxPerHost, setMaxPerHost] = useState('');
  const create = useAction();
  const remove = useAction();
  const submit = async (e: FormEvent) => {
    e.preventDefault();
    const rules = policy === 'anti-affinity' && maxPerHost ? { max_server_per_host: Number(maxPerHost) } : {};
    const body = { server_group: { name, policy, ...(Object.keys(rules).length ? { rules } : {}) } };
    if (await create.run(() => api('POST', '/compute/v2.1/os-server-groups', body, MV))) {
      setName('');
      setMaxPerHost('');
      groups.reload();
    }
  };
  return (
    <Page title="Server Groups">
      <form onSubmit={submit} className="inline-form" aria-label="Create Server Group">
        <h2>Create Server Group</h2>
        <Field label="Name">
          <input name="name" required value={name} onChange={(e) => setName(e.target.value)} />
        </Field>
        <Field label="Policy">
          <select name="policy" value={policy} onChange={(e) => setPolicy(e.target.value)}>
            {POLICIES.map((p) => (
              <option key={p} value={p}>
                {p}
              </option>
            ))}
          </select>
        </Field>
        {policy === 'anti-affinity' && (
          <Field label="Max servers per host (optional)">
            <input
              name="max-per-host"
              inputMode="numeric"
              value={maxPerHost}
              onChange={(e) => setMaxPerHost(e.target.value)}
            />
          </Field>
        )}
        <button type="submit" disabled={create.busy}>
          Create Server Group
        </button>
        <ErrorBox error={create.error} />
      </form>
      <ErrorBox error={groups.error ?? remove.error} />
      {groups.data === null ? (
        <Loading what="server groups" />
      ) : (
        <table>
          <caption>Server groups of this project</caption>
          <thead>
            <tr>
              <th scope="col">Name</th>
              <th scope="col">Policy</th>
              <th scope="col">Rules</th>
              <th scope="col">Members</th>
              <th scope="col">Actions</th>
            </tr>
          </thead>
          <tbody>
            {groups.data.map((g) => (
              <tr key={g.id}>
                <td>{g.name}</td>
                <td>{g.policy}</td>
                <td>
                  {Object.entries(g.rules ?? {})
                    .map(([k, v]) => `${k}=${v}`)
                    .join(', ') || 'None'}
                </td>
                <td>{g.members.length}</td>
                <td>
                  <button
                    type="button"
                    className="danger"
                    disabled={remove.busy}
                    aria-label={`Delete ${g.name}`}
                    onClick={async () => {
                      if (await remove.run(() => del(`/compute/v2.1/os-server-groups/${g.id}`)))
                        groups.reload();
                    }}
                  >
                    Delete
                  </button>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </Page>
  );
}
