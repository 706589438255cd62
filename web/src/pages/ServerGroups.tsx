import { type FormEvent, useState } from 'react';
import { api, del } from '../api';
import { useAction, useLoad } from '../hooks';
import { Choice, CreateForm, DangerButton, Listing } from '../listing';
import { ErrorBox, Field, Page } from '../ui';

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
      <CreateForm title="Create Server Group" busy={create.busy} error={create.error} onSubmit={submit}>
        <Field label="Name">
          <input name="name" required value={name} onChange={(e) => setName(e.target.value)} />
        </Field>
        <Field label="Policy">
          <Choice name="policy" value={policy} onChange={setPolicy} options={POLICIES} />
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
      </CreateForm>
      <ErrorBox error={groups.error ?? remove.error} />
      <Listing
        what="server groups"
        caption="Server groups of this project"
        rows={groups.data}
        rowKey={(g) => g.id}
        columns={[
          { header: 'Name', cell: (g) => g.name },
          { header: 'Policy', cell: (g) => g.policy },
          {
            header: 'Rules',
            cell: (g) =>
              Object.entries(g.rules ?? {})
                .map(([k, v]) => `${k}=${v}`)
                .join(', ') || 'None',
          },
          { header: 'Members', cell: (g) => g.members.length },
          {
            header: 'Actions',
            cell: (g) => (
              <DangerButton
                busy={remove.busy}
                label={`Delete ${g.name}`}
                onClick={async () => {
                  if (await remove.run(() => del(`/compute/v2.1/os-server-groups/${g.id}`))) groups.reload();
                }}
              >
                Delete
              </DangerButton>
            ),
          },
        ]}
      />
    </Page>
  );
}
