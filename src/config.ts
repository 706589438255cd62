import { hostname } from 'node:os';
import { join, resolve } from 'node:path';

/** Everything `bulwark serve` needs; defaults give the single-machine platform. */
export interface DaemonConfig {
  dataDir: string;
  host: string;
  port: number;
  publicUrl: string;
  /** SQLite file path or `postgres://` URL for the running daemon. */
  databaseUrl: string;
  /** PostgreSQL table owner for migrations (see store/database.ts). */
  databaseAdminUrl: string | undefined;
  tokenTtlSeconds: number;
  adminProjectName: string;
  logLevel: string;
  /** Largest image upload accepted, in bytes. */
  maxImageBytes: number;
  /**
   * The host's uplink device (`--uplink-device`): routers with an external
   * gateway SNAT their subnets out of it. Unset: no guest traffic leaves the host.
   */
  uplinkDevice: string | undefined;
  /** Neutron's allow-from-same-group ingress rule in new projects' `default` group (off: block all ingress). */
  defaultGroupAllowsSameGroup: boolean;
}

/** Parses `HOST:PORT`, `[V6]:PORT` or `PORT`; refuses anything else with a fix. */
export function parseListen(listen: string): { host: string; port: number } {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(listen) ?? /^()()(\d{1,5})$/.exec(listen);
  const port = m ? Number(m[3]) : Number.NaN;
  if (!m || !(port >= 0 && port <= 65535)) {
    throw new Error(`--listen ${listen} is not HOST:PORT; try --listen 127.0.0.1:8443`);
  }
  return { host: m[1] || m[2] || '127.0.0.1', port };
}

export function makeConfig(opts: {
  dataDir: string;
  listen?: string | undefined;
  publicUrl?: string | undefined;
  databaseUrl?: string | undefined;
  databaseAdminUrl?: string | undefined;
  tokenTtlSeconds?: number | undefined;
  logLevel?: string | undefined;
  uplinkDevice?: string | undefined;
  defaultGroupAllowsSameGroup?: boolean | undefined;
}): DaemonConfig {
  if (opts.uplinkDevice !== undefined && !/^[A-Za-z0-9_-]{1,15}$/.test(opts.uplinkDevice))
    throw new Error(
      `--uplink-device ${opts.uplinkDevice} is not an interface name; try --uplink-device eth0`,
    );
  const dataDir = resolve(opts.dataDir);
  const { host, port } = parseListen(opts.listen ?? '127.0.0.1:8443');
  const urlHost = host === '0.0.0.0' || host === '::' ? hostname() : host.includes(':') ? `[${host}]` : host;
  return {
    dataDir,
    host,
    port,
    publicUrl: (opts.publicUrl ?? `https://${urlHost}:${port}`).replace(/\/+$/, ''),
    databaseUrl: opts.databaseUrl ?? join(dataDir, 'bulwark.db'),
    databaseAdminUrl: opts.databaseAdminUrl,
    tokenTtlSeconds: opts.tokenTtlSeconds ?? 3600,
    adminProjectName: 'admin',
    logLevel: opts.logLevel ?? 'info',
    maxImageBytes: 64 * 2 ** 30,
    uplinkDevice: opts.uplinkDevice,
    defaultGroupAllowsSameGroup: opts.defaultGroupAllowsSameGroup ?? false,
  };
}
