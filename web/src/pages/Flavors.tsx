import { type FormEvent, useState } from 'react';
import { get, post } from '../api';
import { useAction, useLoad } from '../hooks';
import { ErrorBox, Field, Loading, Page } from '../ui';

interface Flavor {
  id: string;
  name: string;
  vcpus: number;
  ram: number;
  disk: number;
  'os-flavor-access:is_public': boolean;
}

const loadFlavors = async () => {
  const { flavors } = await get<{ flavors: Flavor[] }>('/compute/v2.1/flavors/detail?is_public=None');
  return Promise.all(
    flavors.map(async (f) => ({
      ...f,
      extra_specs: (
        await get<{ extra_specs: Record<string, string> }>(`/compute/v2.1/flavors/${f.id}/os-extra_specs`)
      ).extra_specs,
    })),
  );
};

/** Extra specs the platform acts on, offered as presets. */
const PRESET_SPECS: Record<string, [string, string][]> = {
  'vTPM 2.0 (CRB)': [
    ['hw:tpm_model', 'tpm-crb'],
    ['hw:tpm_version', '2.0'],
  ],
  'vTPM 2.0 (TIS)': [
    ['hw:tpm_model', 'tpm-tis'],
    ['hw:tpm_version', '2.0'],
  ],
};

export function FlavorsPage() {
  const flavors = useLoad(loadFlavors);
  const [name, setName] = useState('');
  const [vcpus, setVcpus] = useState('1');
  const [ram, setRam] = useState('256');
  const [disk, setDisk] = useState('1');
  const [specs, setSpecs] = useState<[string, string][]>([]);
  const create = useAction();
  const submit = async (e: FormEvent) => {
    e.preventDefault();
    const ok = await create.run(async () => {
      const { flavor } = await post('/compute/v2.1/flavors', {
        flavor: { name, vcpus: Number(vcpus), ram: Number(ram), disk: Number(disk) },
      });
      const extra = Object.fromEntries(specs.filter(([k]) => k.trim() !== ''));
      if (Object.keys(extra).length > 0)
        await post(`/compute/v2.1/flavors/${flavor.id}/os-extra_specs`, { extra_specs: extra });
    });
    if (ok) {
      setName('');
      setSpecs([]);
      flavors.reload();
    }
  };
  return (
    <Page title="Flavors">
      <form onSubmit={submit} className="inline-form" aria-label="Create Flavor">
        <h2>Create Flavor</h2>
        <Field label="Name">
          <input name="name" required value={name} onChange={(e) => setName(e.target.value)} />
        </Field>
        <Field label="VCPUs">
          <input
            name="vcpus"
            type="number"
            min="1"
            required
            value={vcpus}
            onChange={(e) => setVcpus(e.target.value)}
          />
        </Field>
        <Field label="RAM (MiB)">
          <input
            name="ram"
            type="number"
            min="1"
            required
            value={ram}
            onChange={(e) => setRam(e.target.value)}
          />
        </Field>
        <Field label="Root Disk (GiB)">
          <input
            name="disk"
            type="number"
            min="0"
            required
            value={disk}
            onChange={(e) => setDisk(e.target.value)}
          />
        </Field>
        <fieldset>
          <legend>Extra Specs</legend>
          <div className="actions">
            {Object.entries(PRESET_SPECS).map(([label, kv]) => (
              <button
                key={label}
                type="button"
                onClick={() => setSpecs([...specs.filter(([k]) => !kv.some(([p]) => p === k)), ...kv])}
              >
                Add {label}
              </button>
            ))}
            <button type="button" onClick={() => setSpecs([...specs, ['', '']])}>
              Add extra spec
            </button>
          </div>
          {specs.map(([k, v], i) => (
            // biome-ignore lint/suspicious/noArrayIndexKey: rows are positional
            <div key={i} className="meta-row">
              <Field label={`Spec key ${i + 1}`}>
                <input
                  value={k}
                  onChange={(e) => setSpecs(specs.map((s, j) => (j === i ? [e.target.value, s[1]] : s)))}
                />
              </Field>
              <Field label={`Spec value ${i + 1}`}>
                <input
                  value={v}
                  onChange={(e) => setSpecs(specs.map((s, j) => (j === i ? [s[0], e.target.value] : s)))}
                />
              </Field>
            </div>
          ))}
        </fieldset>
        <button type="submit" disabled={create.busy}>
          Create Flavor
        </button>
        <ErrorBox error={create.error} />
      </form>
      <ErrorBox error={flavors.error} />
      {flavors.data === null ? (
        <Loading what="flavors" />
      ) : (
        <table>
          <caption>Flavors</caption>
          <thead>
            <tr>
              <th scope="col">Name</th>
              <th scope="col">VCPUs</th>
              <th scope="col">RAM</th>
              <th scope="col">Disk</th>
              <th scope="col">Public</th>
              <th scope="col">Extra Specs</th>
            </tr>
          </thead>
          <tbody>
            {flavors.data.map((f) => (
              <tr key={f.id}>
                <td>{f.name}</td>
                <td>{f.vcpus}</td>
                <td>{f.ram} MiB</td>
                <td>{f.disk} GiB</td>
                <td>{f['os-flavor-access:is_public'] ? 'Yes' : 'No'}</td>
                <td>
                  {Object.entries(f.extra_specs)
                    .map(([k, v]) => `${k}=${v}`)
                    .join(', ') || '-'}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </Page>
  );
}
