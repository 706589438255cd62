import { type FormEvent, useState } from 'react';
import { useParams } from 'react-router';
import { del, get, post } from '../api';
import { useAction, useLoad } from '../hooks';
import { Choice, CreateForm, DangerButton, Listing } from '../listing';
import { ErrorBox, Field, Page } from '../ui';
import { listGroups, type SecurityGroup, type SecurityGroupRule } from './SecurityGroups';

/** Horizon's rule presets: a protocol and, for the named services, their port. */
const PRESETS: Record<string, { protocol: string; port?: number }> = {
  'Custom TCP Rule': { protocol: 'tcp' },
  'Custom UDP Rule': { protocol: 'udp' },
  'Custom ICMP Rule': { protocol: 'icmp' },
  SSH: { protocol: 'tcp', port: 22 },
  HTTP: { protocol: 'tcp', port: 80 },
  HTTPS: { protocol: 'tcp', port: 443 },
};

const ports = (r: SecurityGroupRule) =>
  r.port_range_min === null
    ? 'Any'
    : r.port_range_min === r.port_range_max
      ? String(r.port_range_min)
      : `${r.port_range_min}-${r.port_range_max}`;

export function SecurityGroupDetail() {
  const { id = '' } = useParams();
  const group = useLoad(
    () =>
      get<{ security_group: SecurityGroup }>(`/network/v2.0/security-groups/${id}`).then(
        (r) => r.security_group,
      ),
    [id],
  );
  const groups = useLoad(listGroups);
  const [preset, setPreset] = useState('Custom TCP Rule');
  const [direction, setDirection] = useState('ingress');
  const [portRange, setPortRange] = useState('');
  const [icmpType, setIcmpType] = useState('');
  const [remote, setRemote] = useState<'cidr' | 'group'>('cidr');
  const [cidr, setCidr] = useState('0.0.0.0/0');
  const [remoteGroup, setRemoteGroup] = useState('');
  const add = useAction();
  const remove = useAction();
  const p = PRESETS[preset] ?? { protocol: 'tcp' };

  const submit = async (e: FormEvent) => {
    e.preventDefault();
    const rule: Record<string, unknown> = {
      security_group_id: id,
      direction,
      ethertype: remote === 'cidr' && cidr.includes(':') ? 'IPv6' : 'IPv4',
      protocol: p.protocol,
    };
    if (p.port !== undefined) {
      rule.port_range_min = p.port;
      rule.port_range_max = p.port;
    } else if (p.protocol === 'icmp') {
      if (icmpType !== '') rule.port_range_min = Number(icmpType);
    } else if (portRange !== '') {
      const [lo, hi] = portRange.split('-').map((s) => Number(s.trim()));
      rule.port_range_min = lo;
      rule.port_range_max = hi ?? lo;
    }
    if (remote === 'cidr') rule.remote_ip_prefix = cidr;
    else rule.remote_group_id = remoteGroup;
    if (await add.run(() => post('/network/v2.0/security-group-rules', { security_group_rule: rule })))
      group.reload();
  };
  const nameOf = (gid: string) => groups.data?.find((g) => g.id === gid)?.name ?? gid;

  return (
    <Page title={`Manage Security Group Rules: ${group.data?.name ?? ''}`}>
      <ErrorBox error={group.error} />
      <CreateForm title="Add Rule" submit="Add" busy={add.busy} error={add.error} onSubmit={submit}>
        <Field label="Rule">
          <Choice name="rule" value={preset} onChange={setPreset} options={Object.keys(PRESETS)} />
        </Field>
        <Field label="Direction">
          <Choice
            name="direction"
            value={direction}
            onChange={setDirection}
            options={[
              ['ingress', 'Ingress'],
              ['egress', 'Egress'],
            ]}
          />
        </Field>
        {p.port === undefined && p.protocol !== 'icmp' && (
          <Field label="Port Range">
            <input
              name="port_range"
              placeholder="443 or 8000-8080 (empty: all)"
              pattern="[0-9]{1,5}(-[0-9]{1,5})?"
              value={portRange}
              onChange={(e) => setPortRange(e.target.value)}
            />
          </Field>
        )}
        {p.protocol === 'icmp' && (
          <Field label="ICMP Type">
            <input
              name="icmp_type"
              inputMode="numeric"
              placeholder="any"
              value={icmpType}
              onChange={(e) => setIcmpType(e.target.value)}
            />
          </Field>
        )}
        <Field label="Remote">
          <Choice
            name="remote"
            value={remote}
            onChange={(v) => setRemote(v as 'cidr' | 'group')}
            options={[
              ['cidr', 'CIDR'],
              ['group', 'Security Group'],
            ]}
          />
        </Field>
        {remote === 'cidr' ? (
          <Field label="CIDR">
            <input name="cidr" required value={cidr} onChange={(e) => setCidr(e.target.value)} />
          </Field>
        ) : (
          <Field label="Remote Security Group">
            <select
              name="remote_group"
              required
              value={remoteGroup}
              onChange={(e) => setRemoteGroup(e.target.value)}
            >
              <option value="">Choose a group</option>
              {(groups.data ?? []).map((g) => (
                <option key={g.id} value={g.id}>
                  {g.name}
                </option>
              ))}
            </select>
          </Field>
        )}
      </CreateForm>
      <ErrorBox error={remove.error} />
      <Listing
        what="rules"
        caption="Rules"
        rows={group.data?.security_group_rules ?? null}
        rowKey={(r) => r.id}
        columns={[
          { header: 'Direction', cell: (r) => (r.direction === 'ingress' ? 'Ingress' : 'Egress') },
          { header: 'Ether Type', cell: (r) => r.ethertype },
          { header: 'IP Protocol', cell: (r) => r.protocol ?? 'Any' },
          { header: 'Port Range', cell: ports },
          {
            header: 'Remote',
            cell: (r) => (r.remote_group_id ? nameOf(r.remote_group_id) : (r.remote_ip_prefix ?? 'Any')),
          },
          {
            header: 'Actions',
            cell: (r) => (
              <DangerButton
                busy={remove.busy}
                onClick={async () =>
                  (await remove.run(() => del(`/network/v2.0/security-group-rules/${r.id}`))) &&
                  group.reload()
                }
              >
                Delete Rule
              </DangerButton>
            ),
          },
        ]}
      />
    </Page>
  );
}
