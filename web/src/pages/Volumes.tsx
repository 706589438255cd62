import { type FormEvent, useState } from 'react';
import { Link } from 'react-router';
import { get, post } from '../api';
import { useAction, useLoad, usePoll } from '../hooks';
import { ErrorBox, Field, Loading, Page, Progress } from '../ui';

export interface Volume {
  id: string;
  name: string | null;
  size: number;
  status: string;
  volume_type: string | null;
  encrypted: boolean;
  attachments: { server_id: string; device: string }[];
}
/** Cinder statuses of a volume on its way somewhere. */
export const volumeBusy = (v: Volume) => /ing$/.test(v.status);

export function VolumesPage() {
  const volumes = useLoad(() =>
    get<{ volumes: Volume[] }>('/volume/v3/volumes/detail').then((r) => r.volumes),
  );
  const types = useLoad(() =>
    get('/volume/v3/types').then((r) => r.volume_types as { id: string; name: string }[]),
  );
  usePoll(volumes.data?.some(volumeBusy) ?? false, volumes.reload);
  const [name, setName] = useState('');
  const [size, setSize] = useState('1');
  const [type, setType] = useState('');
  const create = useAction();
  const submit = async (e: FormEvent) => {
    e.preventDefault();
    const volume = { name, size: Number(size), ...(type ? { volume_type: type } : {}) };
    if (await create.run(() => post('/volume/v3/volumes', { volume }))) {
      setName('');
      volumes.reload();
    }
  };
  return (
    <Page title="Volumes">
      <form onSubmit={submit} className="inline-form" aria-label="Create Volume">
        <h2>Create Volume</h2>
        <Field label="Volume Name">
          <input name="name" required value={name} onChange={(e) => setName(e.target.value)} />
        </Field>
        <Field label="Size (GiB)">
          <input
            name="size"
            type="number"
            min="1"
            required
            value={size}
            onChange={(e) => setSize(e.target.value)}
          />
        </Field>
        <Field label="Type">
          <select name="type" value={type} onChange={(e) => setType(e.target.value)}>
            <option value="">No volume type</option>
            {(types.data ?? []).map((t) => (
              <option key={t.id} value={t.name}>
                {t.name}
              </option>
            ))}
          </select>
        </Field>
        <button type="submit" disabled={create.busy}>
          Create Volume
        </button>
        <ErrorBox error={create.error ?? types.error} />
      </form>
      <ErrorBox error={volumes.error} />
      {volumes.data === null ? (
        <Loading what="volumes" />
      ) : (
        <table>
          <caption>Volumes of this project</caption>
          <thead>
            <tr>
              <th scope="col">Name</th>
              <th scope="col">Size</th>
              <th scope="col">Status</th>
              <th scope="col">Type</th>
              <th scope="col">Encrypted</th>
              <th scope="col">Attached To</th>
            </tr>
          </thead>
          <tbody>
            {volumes.data.map((v) => (
              <tr key={v.id}>
                <td>
                  <Link to={`/project/volumes/${v.id}`}>{v.name || v.id}</Link>
                </td>
                <td>{v.size} GiB</td>
                <td>
                  {v.status}
                  {volumeBusy(v) && <Progress label={`${v.name ?? v.id}: ${v.status}`} />}
                </td>
                <td>{v.volume_type ?? '-'}</td>
                <td>{v.encrypted ? 'Yes' : 'No'}</td>
                <td>{v.attachments.map((a) => a.server_id).join(', ') || '-'}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </Page>
  );
}
