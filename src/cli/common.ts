import { type Command, Option } from 'commander';
import { ApiError, BulwarkClient } from './client.js';
import { loadCloudConfig } from './cloud-config.js';
import type { Format } from './output.js';

export interface CommonOpts {
  format: Format;
  osCloud?: string;
}

/** Adds `-f/--format` to a leaf command, like the openstack CLI. */
export const withFormat = (cmd: Command): Command =>
  cmd.addOption(
    new Option('-f, --format <format>', 'output format').choices(['table', 'json', 'value']).default('table'),
  );

/** Runs `fn` with an authenticated client; prints API errors plainly and exits non-zero. */
export async function withClient(
  opts: { osCloud?: string },
  fn: (c: BulwarkClient) => Promise<void>,
): Promise<void> {
  const cloud = loadCloudConfig(process.env, opts.osCloud ?? process.env.OS_CLOUD);
  const client = new BulwarkClient(cloud);
  try {
    await fn(client);
  } finally {
    await client.close();
  }
}

/** Finds a resource by id, then by unique name, as `openstack` does. */
export async function findByNameOrId<T extends { id: string; name?: string }>(
  client: BulwarkClient,
  service: string,
  collection: string,
  key: string,
  ref: string,
  extraQuery = '',
): Promise<T> {
  try {
    const one = await client.request<Record<string, T>>(
      service,
      'GET',
      `/${collection}/${encodeURIComponent(ref)}`,
    );
    const found = one[key];
    if (found) return found;
  } catch (e) {
    if (!(e instanceof ApiError) || e.status !== 404) throw e;
  }
  const list = await client.request<Record<string, T[]>>(
    service,
    'GET',
    `/${collection}?name=${encodeURIComponent(ref)}${extraQuery}`,
  );
  const matches = list[collection] ?? [];
  if (matches.length === 0) throw new Error(`No ${key} with a name or ID of '${ref}' exists.`);
  if (matches.length > 1) throw new Error(`More than one ${key} exists with the name '${ref}'; use the ID.`);
  return matches[0] as T;
}
