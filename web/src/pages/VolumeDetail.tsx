import { useState } from 'react';
import { useParams } from 'react-router';
import { del, get, post } from '../api';
import { useAction, useLoad, usePoll } from '../hooks';
import { Details, ErrorBox, Field, Loading, Page, Progress } from '../ui';
import { listServers } from './Instances';
import { VolumeBackups, VolumeSnapshots } from './VolumeProtection';
import { type Volume, volumeBusy } from './Volumes';

export function VolumeDetail() {
  const { id = '' } = useParams();
  const volume = useLoad(
    () => get<{ volume: Volume }>(`/volume/v3/volumes/${id}`).then((r) => r.volume),
    [id],
  );
  const servers = useLoad(listServers);
  usePoll(volume.data ? volumeBusy(volume.data) : false, volume.reload);
  const [server, setServer] = useState('');
  const act = useAction();
  if (volume.error) return <ErrorBox error={volume.error} />;
  const v = volume.data;
  if (!v) return <Loading what="volume" />;
  const attached = v.attachments[0];
  return (
    <Page title={`Volume: ${v.name ?? v.id}`}>
      <Details
        rows={[
          ['ID', v.id],
          ['Status', v.status],
          ['Size', `${v.size} GiB`],
          ['Type', v.volume_type ?? 'None'],
          ['Encryption', v.encrypted ? 'Yes' : 'No'],
          ['Attached To', attached ? `${attached.server_id} on ${attached.device}` : 'Not attached'],
        ]}
      />
      {volumeBusy(v) && <Progress label={`Volume ${v.status}`} />}
      {attached ? (
        <button
          type="button"
          disabled={act.busy}
          onClick={async () =>
            (await act.run(() =>
              del(`/compute/v2.1/servers/${attached.server_id}/os-volume_attachments/${v.id}`),
            )) && volume.reload()
          }
        >
          Detach Volume
        </button>
      ) : (
        <form
          className="inline-form"
          aria-label="Attach Volume"
          onSubmit={async (e) => {
            e.preventDefault();
            if (
              await act.run(() =>
                post(`/compute/v2.1/servers/${server}/os-volume_attachments`, {
                  volumeAttachment: { volumeId: v.id },
                }),
              )
            )
              volume.reload();
          }}
        >
          <Field label="Attach to instance">
            <select name="server" required value={server} onChange={(e) => setServer(e.target.value)}>
              <option value="">Choose an instance</option>
              {(servers.data ?? []).map((s) => (
                <option key={s.id} value={s.id}>
                  {s.name}
                </option>
              ))}
            </select>
          </Field>
          <button type="submit" disabled={act.busy || v.status !== 'available'}>
            Attach Volume
          </button>
        </form>
      )}
      {act.busy && <Progress label="Working on the volume" />}
      <ErrorBox error={act.error} />
      <VolumeSnapshots volume={v} />
      <VolumeBackups volume={v} />
    </Page>
  );
}
