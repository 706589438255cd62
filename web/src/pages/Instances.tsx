import { type FormEvent, useState } from 'react';
import { Link } from 'react-router';
import { get, post, type Session } from '../api';
import { useAction, useLoad, usePoll } from '../hooks';
import { ErrorBox, Field, Loading, Page, Progress } from '../ui';
import { listGroups } from './SecurityGroups';
import { listServerGroups } from './ServerGroups';

export interface Server {
  id: string;
  name: string;
  status: string;
  flavor: { id: string };
  image: { id: string };
  addresses: Record<string, { addr: string }[]>;
  security_groups: { name: string }[];
  metadata: Record<string, string>;
  'OS-EXT-STS:task_state': string | null;
  'bulwark:quarantine': { reason?: string } | null;
  fault?: { message?: string };
}

/** Statuses a server passes through on its way somewhere: pages poll while one shows. */
export const TRANSITIONAL = new Set(['BUILD', 'REBOOT', 'HARD_REBOOT', 'MIGRATING', 'RESIZE']);
export const busyServer = (s: Server) => TRANSITIONAL.has(s.status) || s['OS-EXT-STS:task_state'] !== null;

export const listServers = () =>
  get<{ servers: Server[] }>('/compute/v2.1/servers/detail').then((r) => r.servers);

function LaunchForm({ onLaunched }: { onLaunched: () => void }) {
  const opts = useLoad(async () => {
    const [flavors, images, networks, groups, serverGroups] = await Promise.all([
      get('/compute/v2.1/flavors/detail').then((r) => r.flavors as { id: string; name: string }[]),
      get('/image/v2/images').then((r) => r.images as { id: string; name: string; status: string }[]),
      get('/network/v2.0/networks').then((r) => r.networks as { id: string; name: string }[]),
      listGroups(),
      listServerGroups(),
    ]);
    return {
      flavors,
      images: images.filter((i) => i.status === 'active'),
      networks,
      groups,
      serverGroups,
    };
  });
  const [name, setName] = useState('');
  const [flavor, setFlavor] = useState('');
  const [image, setImage] = useState('');
  const [network, setNetwork] = useState('');
  const [serverGroup, setServerGroup] = useState('');
  const [groups, setGroups] = useState<string[]>(['default']);
  const [meta, setMeta] = useState<[string, string][]>([['', '']]);
  const launch = useAction();
  const submit = async (e: FormEvent) => {
    e.preventDefault();
    const metadata = Object.fromEntries(meta.filter(([k]) => k.trim() !== ''));
    const server = {
      name,
      flavorRef: flavor,
      imageRef: image,
      networks: network ? [{ uuid: network }] : 'none',
      security_groups: groups.map((g) => ({ name: g })),
      ...(Object.keys(metadata).length > 0 ? { metadata } : {}),
    };
    const hints = serverGroup ? { 'os:scheduler_hints': { group: serverGroup } } : {};
    if (await launch.run(() => post('/compute/v2.1/servers', { server, ...hints }))) {
      setName('');
      onLaunched();
    }
  };
  if (opts.error) return <ErrorBox error={opts.error} />;
  if (!opts.data) return <Loading what="launch options" />;
  const o = opts.data;
  return (
    <form onSubmit={submit} className="inline-form" aria-label="Launch Instance">
      <h2>Launch Instance</h2>
      <Field label="Instance Name">
        <input name="name" required value={name} onChange={(e) => setName(e.target.value)} />
      </Field>
      <Field label="Flavor">
        <select name="flavor" required value={flavor} onChange={(e) => setFlavor(e.target.value)}>
          <option value="">Choose a flavor</option>
          {o.flavors.map((f) => (
            <option key={f.id} value={f.id}>
              {f.name}
            </option>
          ))}
        </select>
      </Field>
      <Field label="Image">
        <select name="image" required value={image} onChange={(e) => setImage(e.target.value)}>
          <option value="">Choose an image</option>
          {o.images.map((i) => (
            <option key={i.id} value={i.id}>
              {i.name}
            </option>
          ))}
        </select>
      </Field>
      <Field label="Network">
        <select name="network" value={network} onChange={(e) => setNetwork(e.target.value)}>
          <option value="">No network</option>
          {o.networks.map((n) => (
            <option key={n.id} value={n.id}>
              {n.name}
            </option>
          ))}
        </select>
      </Field>
      <Field label="Server Group">
        <select name="server-group" value={serverGroup} onChange={(e) => setServerGroup(e.target.value)}>
          <option value="">No server group</option>
          {o.serverGroups.map((g) => (
            <option key={g.id} value={g.id}>
              {g.name} ({g.policy})
            </option>
          ))}
        </select>
      </Field>
      <fieldset>
        <legend>Security Groups</legend>
        {o.groups.map((g) => (
          <label key={g.id} className="check">
            <input
              type="checkbox"
              checked={groups.includes(g.name)}
              onChange={(e) =>
                setGroups(e.target.checked ? [...groups, g.name] : groups.filter((x) => x !== g.name))
              }
            />
            {g.name}
          </label>
        ))}
      </fieldset>
      <fieldset>
        <legend>Metadata</legend>
        {meta.map(([k, v], i) => (
          // biome-ignore lint/suspicious/noArrayIndexKey: rows are positional
          <div key={i} className="meta-row">
            <Field label={`Key ${i + 1}`}>
              <input
                value={k}
                onChange={(e) => setMeta(meta.map((m, j) => (j === i ? [e.target.value, m[1]] : m)))}
              />
            </Field>
            <Field label={`Value ${i + 1}`}>
              <input
                value={v}
                onChange={(e) => setMeta(meta.map((m, j) => (j === i ? [m[0], e.target.value] : m)))}
              />
            </Field>
          </div>
        ))}
        <button type="button" onClick={() => setMeta([...meta, ['', '']])}>
          Add metadata field
        </button>
      </fieldset>
      <button type="submit" disabled={launch.busy}>
        Launch Instance
      </button>
      {launch.busy && <Progress label="Submitting launch request" />}
      <ErrorBox error={launch.error} />
    </form>
  );
}

export function InstancesPage(_: { session: Session }) {
  const servers = useLoad(listServers);
  usePoll(servers.data?.some(busyServer) ?? false, servers.reload);
  return (
    <Page title="Instances">
      <LaunchForm onLaunched={servers.reload} />
      <ErrorBox error={servers.error} />
      {servers.data === null ? (
        <Loading what="instances" />
      ) : (
        <table>
          <caption>Instances of this project</caption>
          <thead>
            <tr>
              <th scope="col">Name</th>
              <th scope="col">Status</th>
              <th scope="col">IP Address</th>
              <th scope="col">Security Groups</th>
            </tr>
          </thead>
          <tbody>
            {servers.data.map((s) => (
              <tr key={s.id}>
                <td>
                  <Link to={`/project/compute/instances/${s.id}`}>{s.name}</Link>
                </td>
                <td>
                  <span className={`status status-${s.status.toLowerCase()}`}>{s.status}</span>
                  {busyServer(s) && (
                    <Progress label={`${s.name}: ${s['OS-EXT-STS:task_state'] ?? s.status.toLowerCase()}`} />
                  )}
                </td>
                <td>
                  {Object.values(s.addresses)
                    .flat()
                    .map((a) => a.addr)
                    .join(', ')}
                </td>
                <td>{s.security_groups.map((g) => g.name).join(', ')}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </Page>
  );
}
