import { type FormEvent, useState } from 'react';
import { api, get } from '../api';
import { useAction, useLoad } from '../hooks';
import { ErrorBox, Field, Loading, Page } from '../ui';

interface Image {
  id: string;
  name: string;
  status: string;
  visibility: string;
  disk_format: string | null;
  size: number | null;
  hw_firmware_type?: string;
  hw_machine_type?: string;
  os_secure_boot?: string;
  [k: string]: unknown;
}

/** The boot properties an image may set, with the values the platform accepts. */
const BOOT_PROPERTIES: [string, string, readonly string[]][] = [
  ['hw_firmware_type', 'Firmware', ['bios', 'uefi']],
  ['hw_machine_type', 'Machine Type', ['pc', 'q35']],
  ['os_secure_boot', 'Secure Boot', ['disabled', 'optional', 'required']],
];

/** Glance images with the properties that decide how a guest boots (Secure Boot needs uefi). */
export function ImagesPage() {
  const images = useLoad(() => get<{ images: Image[] }>('/image/v2/images').then((r) => r.images));
  const [image, setImage] = useState('');
  const [props, setProps] = useState<Record<string, string>>({
    hw_firmware_type: 'uefi',
    hw_machine_type: 'q35',
    os_secure_boot: 'required',
  });
  const save = useAction();
  const submit = async (e: FormEvent) => {
    e.preventDefault();
    // Glance v2's JSON patch; `add` sets a property whether or not it exists.
    const ops = Object.entries(props).map(([k, v]) => ({ op: 'add', path: `/${k}`, value: v }));
    if (
      await save.run(() =>
        api('PATCH', `/image/v2/images/${image}`, ops, {
          'content-type': 'application/openstack-images-v2.1-json-patch',
        }),
      )
    )
      images.reload();
  };
  return (
    <Page title="Images">
      <form onSubmit={submit} className="inline-form" aria-label="Set Boot Properties">
        <h2>Set Boot Properties</h2>
        <Field label="Image">
          <select name="image" required value={image} onChange={(e) => setImage(e.target.value)}>
            <option value="">Choose an image</option>
            {(images.data ?? []).map((i) => (
              <option key={i.id} value={i.id}>
                {i.name}
              </option>
            ))}
          </select>
        </Field>
        {BOOT_PROPERTIES.map(([key, label, values]) => (
          <Field key={key} label={label}>
            <select
              name={key}
              value={props[key]}
              onChange={(e) => setProps({ ...props, [key]: e.target.value })}
            >
              {values.map((v) => (
                <option key={v}>{v}</option>
              ))}
            </select>
          </Field>
        ))}
        <button type="submit" disabled={save.busy}>
          Save
        </button>
        <ErrorBox error={save.error} />
      </form>
      <ErrorBox error={images.error} />
      {images.data === null ? (
        <Loading what="images" />
      ) : (
        <table>
          <caption>Images and their boot properties</caption>
          <thead>
            <tr>
              <th scope="col">Name</th>
              <th scope="col">Status</th>
              <th scope="col">Visibility</th>
              <th scope="col">Format</th>
              <th scope="col">Firmware</th>
              <th scope="col">Machine</th>
              <th scope="col">Secure Boot</th>
            </tr>
          </thead>
          <tbody>
            {images.data.map((i) => (
              <tr key={i.id}>
                <td>{i.name}</td>
                <td>{i.status}</td>
                <td>{i.visibility}</td>
                <td>{i.disk_format ?? '-'}</td>
                <td>{i.hw_firmware_type ?? 'bios (default)'}</td>
                <td>{i.hw_machine_type ?? '-'}</td>
                <td>{i.os_secure_boot ?? 'disabled'}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </Page>
  );
}
