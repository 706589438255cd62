import { createHash } from 'node:crypto';

/** A service published in the token's catalog; each API module registers one. */
export interface ServiceEntry {
  type: string;
  name: string;
  /** Path under the public URL, e.g. "/identity/v3". */
  path: string;
}

export const REGION = 'RegionOne';

const stableId = (s: string) => createHash('sha256').update(s).digest('hex').slice(0, 32);

/** The Keystone v3 catalog, with public, internal and admin interfaces on the one port. */
export function renderCatalog(services: readonly ServiceEntry[], publicUrl: string) {
  return services.map((s) => ({
    id: stableId(`service:${s.type}`),
    type: s.type,
    name: s.name,
    endpoints: (['public', 'internal', 'admin'] as const).map((iface) => ({
      id: stableId(`endpoint:${s.type}:${iface}`),
      interface: iface,
      region: REGION,
      region_id: REGION,
      url: `${publicUrl}${s.path}`,
    })),
  }));
}
