import { type FormEvent, useState } from 'react';
import { Link } from 'react-router';
import { get, post } from '../api';
import { useAction, useLoad } from '../hooks';
import { CreateForm, Listing } from '../listing';
import { ErrorBox, Field, Page } from '../ui';

export interface SecurityGroup {
  id: string;
  name: string;
  description: string;
  security_group_rules: SecurityGroupRule[];
}
export interface SecurityGroupRule {
  id: string;
  direction: string;
  ethertype: string;
  protocol: string | null;
  port_range_min: number | null;
  port_range_max: number | null;
  remote_ip_prefix: string | null;
  remote_group_id: string | null;
}

export const listGroups = () =>
  get<{ security_groups: SecurityGroup[] }>('/network/v2.0/security-groups').then((r) => r.security_groups);

export function SecurityGroupsPage() {
  const groups = useLoad(listGroups);
  const [name, setName] = useState('');
  const [description, setDescription] = useState('');
  const create = useAction();
  const submit = async (e: FormEvent) => {
    e.preventDefault();
    if (
      await create.run(() => post('/network/v2.0/security-groups', { security_group: { name, description } }))
    ) {
      setName('');
      setDescription('');
      groups.reload();
    }
  };
  return (
    <Page title="Security Groups">
      <CreateForm title="Create Security Group" busy={create.busy} error={create.error} onSubmit={submit}>
        <Field label="Name">
          <input name="name" required value={name} onChange={(e) => setName(e.target.value)} />
        </Field>
        <Field label="Description">
          <input name="description" value={description} onChange={(e) => setDescription(e.target.value)} />
        </Field>
      </CreateForm>
      <ErrorBox error={groups.error} />
      <Listing
        what="security groups"
        caption="Security groups of this project"
        rows={groups.data}
        rowKey={(g) => g.id}
        columns={[
          { header: 'Name', cell: (g) => g.name },
          { header: 'Description', cell: (g) => g.description },
          { header: 'Rules', cell: (g) => g.security_group_rules.length },
          {
            header: 'Actions',
            cell: (g) => (
              <Link to={`/project/network/security-groups/${g.id}`} aria-label={`Manage Rules of ${g.name}`}>
                Manage Rules
              </Link>
            ),
          },
        ]}
      />
    </Page>
  );
}
