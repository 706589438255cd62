import { type FormEvent, useState } from 'react';
import { Link } from 'react-router';
import { get, post } from '../api';
import { useAction, useLoad } from '../hooks';
import { ErrorBox, Field, Loading, Page } from '../ui';

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
      <form onSubmit={submit} className="inline-form" aria-label="Create Security Group">
        <h2>Create Security Group</h2>
        <Field label="Name">
          <input name="name" required value={name} onChange={(e) => setName(e.target.value)} />
        </Field>
        <Field label="Description">
          <input name="description" value={description} onChange={(e) => setDescription(e.target.value)} />
        </Field>
        <button type="submit" disabled={create.busy}>
          Create Security Group
        </button>
        <ErrorBox error={create.error} />
      </form>
      <ErrorBox error={groups.error} />
      {groups.data === null ? (
        <Loading what="security groups" />
      ) : (
        <table>
          <caption>Security groups of this project</caption>
          <thead>
            <tr>
              <th scope="col">Name</th>
              <th scope="col">Description</th>
              <th scope="col">Rules</th>
              <th scope="col">Actions</th>
            </tr>
          </thead>
          <tbody>
            {groups.data.map((g) => (
              <tr key={g.id}>
                <td>{g.name}</td>
                <td>{g.description}</td>
                <td>{g.security_group_rules.length}</td>
                <td>
                  <Link
                    to={`/project/network/security-groups/${g.id}`}
                    aria-label={`Manage Rules of ${g.name}`}
                  >
                    Manage Rules
                  </Link>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </Page>
  );
}
