import { type FormEvent, useState } from 'react';
import { get, post } from '../api';
import { useAction, useLoad, usePoll } from '../hooks';
import { ErrorBox, Field, Loading, Progress } from '../ui';
import type { Volume } from './Volumes';

interface Snapshot {
  id: string;
  name: string;
  description: string;
  status: string;
  size: number;
  created_at: string;
  'bulwark:fault': string | null;
}
interface Backup {
  id: string;
  name: string;
  status: string;
  is_incremental: boolean;
  created_at: string;
  fail_reason: string | null;
  'bulwark:progress': number | null;
  'bulwark:stored_bytes': number | null;
}
const busy = (s: { status: string }) => /ing$/.test(s.status);

/** Snapshot: Cinder volume snapshots of this volume; the description is required (docs/snapshots.md). */
export function VolumeSnapshots({ volume }: { volume: Volume }) {
  const snaps = useLoad(
    () =>
      get<{ snapshots: Snapshot[] }>(`/volume/v3/snapshots/detail?volume_id=${volume.id}`).then(
        (r) => r.snapshots,
      ),
    [volume.id],
  );
  usePoll(snaps.data?.some(busy) ?? false, snaps.reload);
  const [name, setName] = useState('');
  const [description, setDescription] = useState('');
  const act = useAction();
  const submit = async (e: FormEvent) => {
    e.preventDefault();
    const snapshot = { volume_id: volume.id, name, description, force: volume.status === 'in-use' };
    if (await act.run(() => post('/volume/v3/snapshots', { snapshot }))) {
      setName('');
      setDescription('');
      snaps.reload();
    }
  };
  return (
    <section aria-labelledby="snapshots-title">
      <h2 id="snapshots-title">Snapshots</h2>
      <form onSubmit={submit} className="inline-form" aria-label="Create Snapshot">
        <Field label="Purpose (name)">
          <input name="snapshot-name" required value={name} onChange={(e) => setName(e.target.value)} />
        </Field>
        <Field label="Description (required)">
          <input
            name="snapshot-description"
            required
            value={description}
            onChange={(e) => setDescription(e.target.value)}
          />
        </Field>
        <button type="submit" disabled={act.busy}>
          Create Snapshot
        </button>
        <ErrorBox error={act.error} />
      </form>
      {snaps.data?.some(busy) && <Progress label="Snapshot in progress" />}
      <ErrorBox error={snaps.error} />
      {snaps.data === null ? (
        <Loading what="snapshots" />
      ) : (
        <table className="wrap">
          <caption>Snapshots of this volume</caption>
          <thead>
            <tr>
              <th scope="col">Name</th>
              <th scope="col">Description</th>
              <th scope="col">Status</th>
              <th scope="col">Size</th>
              <th scope="col">Created</th>
            </tr>
          </thead>
          <tbody>
            {snaps.data.map((s) => (
              <tr key={s.id}>
                <td>{s.name}</td>
                <td>{s.description}</td>
                <td>{s['bulwark:fault'] ? `${s.status}: ${s['bulwark:fault']}` : s.status}</td>
                <td>{s.size} GiB</td>
                <td>{s.created_at}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </section>
  );
}

/** Back up: encrypted Cinder backups of this volume, with their progress (docs/backups.md). */
export function VolumeBackups({ volume }: { volume: Volume }) {
  const backups = useLoad(
    () =>
      get<{ backups: Backup[] }>(`/volume/v3/backups/detail?volume_id=${volume.id}`).then((r) => r.backups),
    [volume.id],
  );
  usePoll(backups.data?.some(busy) ?? false, backups.reload);
  const [name, setName] = useState('');
  const [incremental, setIncremental] = useState(false);
  const act = useAction();
  const submit = async (e: FormEvent) => {
    e.preventDefault();
    // An in-use volume is read with its guest paused (Cinder's --force), as the CLI does.
    const backup = { volume_id: volume.id, name, incremental, force: volume.status === 'in-use' };
    if (await act.run(() => post('/volume/v3/backups', { backup }))) {
      setName('');
      backups.reload();
    }
  };
  const running = backups.data?.find(busy);
  return (
    <section aria-labelledby="backups-title">
      <h2 id="backups-title">Backups</h2>
      <form onSubmit={submit} className="inline-form" aria-label="Back Up Volume">
        <Field label="Backup Name">
          <input name="backup-name" required value={name} onChange={(e) => setName(e.target.value)} />
        </Field>
        <label className="check">
          <input
            type="checkbox"
            name="incremental"
            checked={incremental}
            onChange={(e) => setIncremental(e.target.checked)}
          />{' '}
          Incremental
        </label>
        <button type="submit" disabled={act.busy}>
          Back Up
        </button>
        <ErrorBox error={act.error} />
      </form>
      {running && (
        <Progress
          label={`Backing up ${running.name}${running['bulwark:progress'] === null ? '' : `: ${running['bulwark:progress']}%`}`}
        />
      )}
      <ErrorBox error={backups.error} />
      {backups.data === null ? (
        <Loading what="backups" />
      ) : (
        <table className="wrap">
          <caption>Backups of this volume</caption>
          <thead>
            <tr>
              <th scope="col">Name</th>
              <th scope="col">Status</th>
              <th scope="col">Incremental</th>
              <th scope="col">Stored</th>
              <th scope="col">Created</th>
            </tr>
          </thead>
          <tbody>
            {backups.data.map((b) => (
              <tr key={b.id}>
                <td>{b.name}</td>
                <td>{b.fail_reason ? `${b.status}: ${b.fail_reason}` : b.status}</td>
                <td>{b.is_incremental ? 'Yes' : 'No'}</td>
                <td>{b['bulwark:stored_bytes'] === null ? '-' : `${b['bulwark:stored_bytes']} bytes`}</td>
                <td>{b.created_at}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </section>
  );
}
