import { hostname } from 'node:os';
import { join, resolve } from 'node:path';
import type { KekConfig } from './keys/kek.js';

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
  /** The key manager's KEK provider (`--kek file|pkcs11`; docs/keys.md). */
  kek: KekConfig;
  /**
   * UEFI variable store with the enrolled Secure Boot keys (PK, KEK, db), copied
   * per Secure Boot guest (`--secure-boot-vars`). Default Debian's Microsoft keys.
   */
  secureBootVars: string;
  /** Servers a user may create per sliding hour, kept across restarts (`--server-create-rate`; 0: no limit). */
  serverCreateRate: number;
  /** API requests per minute per token (`--api-rate`) and per source address (`--api-address-rate`); 0: no limit. */
  apiRate: { perToken: number; perAddress: number };
  /** The mutual-TLS endpoint host agents report to (`--agent-listen`; docs/multi-host.md); unset: none. */
  agentListen: { host: string; port: number } | undefined;
  /** Seconds between agent reports; a host that misses three is marked down (`--heartbeat-interval`). */
  heartbeatSeconds: number;
}

export const DEFAULT_SERVER_CREATE_RATE = 20;
export const DEFAULT_API_RATE = 600;

/** A rate flag's value: a whole number, 0 meaning no limit. */
function parseRate(flag: string, value: string | number | undefined, dflt: number): number {
  if (value === undefined || value === '') return dflt;
  const n =
    typeof value === 'number' ? value : /^\d{1,9}$/.test(value.trim()) ? Number(value.trim()) : Number.NaN;
  if (!Number.isSafeInteger(n) || n < 0)
    throw new Error(`${flag} ${String(value)} is not a whole number; try ${flag} ${dflt} (0: no limit)`);
  return n;
}

export const DEFAULT_SECURE_BOOT_VARS = '/usr/share/OVMF/OVMF_VARS_4M.ms.fd';

/** Parses `HOST:PORT`, `[V6]:PORT` or `PORT`; refuses anything else with a fix. */
export function parseListen(listen: string, flag = '--listen'): { host: string; port: number } {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(listen) ?? /^()()(\d{1,5})$/.exec(listen);
  const port = m ? Number(m[3]) : Number.NaN;
  if (!m || !(port >= 0 && port <= 65535)) {
    throw new Error(
      `${flag} ${listen} is not HOST:PORT; try ${flag} 127.0.0.1:${flag === '--listen' ? 8443 : 8444}`,
    );
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
  kek?: string | undefined;
  pkcs11Module?: string | undefined;
  pkcs11TokenLabel?: string | undefined;
  pkcs11PinFile?: string | undefined;
  secureBootVars?: string | undefined;
  serverCreateRate?: string | number | undefined;
  apiRate?: string | number | undefined;
  apiAddressRate?: string | number | undefined;
  agentListen?: string | undefined;
  heartbeatInterval?: string | number | undefined;
}): DaemonConfig {
  const kekKind = opts.kek ?? 'file';
  if (kekKind !== 'file' && kekKind !== 'pkcs11')
    throw new Error(`--kek ${kekKind} is not a KEK provider; use --kek file or --kek pkcs11`);
  if (kekKind === 'pkcs11' && (!opts.pkcs11Module || !opts.pkcs11TokenLabel || !opts.pkcs11PinFile))
    throw new Error(
      '--kek pkcs11 needs --pkcs11-module PATH, --pkcs11-token-label LABEL and --pkcs11-pin-file FILE',
    );
  if (opts.uplinkDevice !== undefined && !/^[A-Za-z0-9_-]{1,15}$/.test(opts.uplinkDevice))
    throw new Error(
      `--uplink-device ${opts.uplinkDevice} is not an interface name; try --uplink-device eth0`,
    );
  const serverCreateRate = parseRate(
    '--server-create-rate',
    opts.serverCreateRate,
    DEFAULT_SERVER_CREATE_RATE,
  );
  const perToken = parseRate('--api-rate', opts.apiRate, DEFAULT_API_RATE);
  const perAddress = parseRate('--api-address-rate', opts.apiAddressRate, 2 * perToken);
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
    kek:
      kekKind === 'pkcs11'
        ? {
            kind: 'pkcs11',
            pkcs11Module: opts.pkcs11Module ? resolve(opts.pkcs11Module) : undefined,
            pkcs11TokenLabel: opts.pkcs11TokenLabel,
            pkcs11PinFile: opts.pkcs11PinFile ? resolve(opts.pkcs11PinFile) : undefined,
          }
        : { kind: 'file' },
    secureBootVars: resolve(opts.secureBootVars ?? DEFAULT_SECURE_BOOT_VARS),
    serverCreateRate,
    apiRate: { perToken, perAddress },
    agentListen: opts.agentListen ? parseListen(opts.agentListen, '--agent-listen') : undefined,
    heartbeatSeconds: Math.max(1, parseRate('--heartbeat-interval', opts.heartbeatInterval, 10)),
  };
}
