import { type FormEvent, useState } from 'react';
import { get, post } from '../api';
import { useAction, useLoad } from '../hooks';
import { ErrorBox, Field, Loading, Page } from '../ui';

interface Encryption {
  provider?: string;
  cipher?: string;
  key_size?: number;
  control_location?: string;
}

const loadTypes = async () => {
  const { volume_types } = await get<{
    volume_types: { id: string; name: string; description: string | null }[];
  }>('/volume/v3/types');
  return Promise.all(
    volume_types.map(async (t) => ({
      ...t,
      encryption: (await get<Encryption>(`/volume/v3/types/${t.id}/encryption`)) ?? {},
    })),
  );
};

export function VolumeTypesPage() {
  const types = useLoad(loadTypes);
  const [name, setName] = useState('');
  const [encrypt, setEncrypt] = useState(true);
  const [provider, setProvider] = useState('nova.volume.encryptors.luks.LuksEncryptor');
  const [cipher, setCipher] = useState('aes-xts-plain64');
  const [keySize, setKeySize] = useState('256');
  const [location, setLocation] = useState('front-end');
  const create = useAction();
  const submit = async (e: FormEvent) => {
    e.preventDefault();
    const ok = await create.run(async () => {
      const { volume_type } = await post('/volume/v3/types', { volume_type: { name } });
      if (encrypt)
        await post(`/volume/v3/types/${volume_type.id}/encryption`, {
          encryption: { provider, cipher, key_size: Number(keySize), control_location: location },
        });
    });
    if (ok) {
      setName('');
      types.reload();
    }
  };
  return (
    <Page title="Volume Types">
      <form onSubmit={submit} className="inline-form" aria-label="Create Volume Type">
        <h2>Create Volume Type</h2>
        <Field label="Name">
          <input name="name" required value={name} onChange={(e) => setName(e.target.value)} />
        </Field>
        <label className="check">
          <input
            type="checkbox"
            name="encrypted"
            checked={encrypt}
            onChange={(e) => setEncrypt(e.target.checked)}
          />
          Encrypted (LUKS)
        </label>
        {encrypt && (
          <>
            <Field label="Provider">
              <select name="provider" value={provider} onChange={(e) => setProvider(e.target.value)}>
                <option>nova.volume.encryptors.luks.LuksEncryptor</option>
                <option>luks</option>
              </select>
            </Field>
            <Field label="Cipher">
              <input name="cipher" value={cipher} onChange={(e) => setCipher(e.target.value)} />
            </Field>
            <Field label="Key Size">
              <select name="key_size" value={keySize} onChange={(e) => setKeySize(e.target.value)}>
                <option>256</option>
                <option>512</option>
              </select>
            </Field>
            <Field label="Control Location">
              <select name="control_location" value={location} onChange={(e) => setLocation(e.target.value)}>
                <option>front-end</option>
                <option>back-end</option>
              </select>
            </Field>
          </>
        )}
        <button type="submit" disabled={create.busy}>
          Create Volume Type
        </button>
        <ErrorBox error={create.error} />
      </form>
      <ErrorBox error={types.error} />
      {types.data === null ? (
        <Loading what="volume types" />
      ) : (
        <table>
          <caption>Volume types</caption>
          <thead>
            <tr>
              <th scope="col">Name</th>
              <th scope="col">Encryption</th>
              <th scope="col">Cipher</th>
              <th scope="col">Key Size</th>
              <th scope="col">Control Location</th>
            </tr>
          </thead>
          <tbody>
            {types.data.map((t) => (
              <tr key={t.id}>
                <td>{t.name}</td>
                <td>{t.encryption.provider ? `Yes (${t.encryption.provider})` : 'No'}</td>
                <td>{t.encryption.cipher ?? '-'}</td>
                <td>{t.encryption.key_size ?? '-'}</td>
                <td>{t.encryption.control_location ?? '-'}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </Page>
  );
}
