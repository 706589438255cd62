import { get } from '../api';
import { useLoad } from '../hooks';
import { ErrorBox, Loading, Page } from '../ui';

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

/** Glance images with the properties that decide how a guest boots (docs/secure-boot.md). */
export function ImagesPage() {
  const images = useLoad(() => get<{ images: Image[] }>('/image/v2/images').then((r) => r.images));
  return (
    <Page title="Images">
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
