import { hostname } from 'node:os';
import { join, resolve } from 'node:path';
import { SIEM_FORMATS, type SiemFormat } from './audit/syslog.js';
import { DEFAULT_VTPM_RESTARTS } from './compute/vtpm-recovery.js';
import { checkThresholds, DEFAULT_THRESHOLDS, type Thresholds } from './governance/storage-thresholds.js';
import { DEFAULT_IDENTITY_POLICY, type IdentityPolicy } from './identity/config.js';
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
  /** Automatic restarts per server per hour after its swtpm died (`--vtpm-restarts`; docs/compute.md). */
  vtpmRestarts: number;
  /** API requests per minute per token (`--api-rate`) and per source address (`--api-address-rate`); 0: no limit. */
  apiRate: { perToken: number; perAddress: number };
  /** The most items one page of a Nova list answers (Nova's `[api] max_limit`, docs/compute.md). */
  apiMaxLimit: number;
  /** Storage pool thresholds in percent used (`--storage-warn-percent`, `--storage-refuse-percent`). */
  storageThresholds: Thresholds;
  /** The site's device passthrough allow-lists, vendor:product (`--pci-passthrough-allow`, `--usb-passthrough-allow`). */
  passthrough: { pciAllowList: string[]; usbAllowList: string[] };
  /** Admin MFA, lockout and password rules (`--admin-mfa-required`, `--lockout-*`, `--password-*`; docs/identity.md). */
  identityPolicy: IdentityPolicy;
  /** A separate plain-HTTP listener serving only `/metrics`, unauthenticated (`--metrics-listen`); absent: none. */
  metricsListen: { host: string; port: number } | undefined;
  /** Days console recordings are kept (`--console-retention-days`, default 90). */
  consoleRetentionDays: number;
  /** Audit forwarding to a SIEM over TLS (`--siem-*`, docs/siem.md); absent: none. */
  siem: SiemTarget | undefined;
  /** The mutual-TLS endpoint host agents report to (`--agent-listen`; docs/multi-host.md); unset: none. */
  agentListen: { host: string; port: number } | undefined;
  /** Seconds between agent reports; a host that misses three is marked down (`--heartbeat-interval`). */
  heartbeatSeconds: number;
}

export interface SiemTarget {
  host: string;
  port: number;
  caFile: string;
  certFile: string | undefined;
  keyFile: string | undefined;
  serverName: string | undefined;
  format: SiemFormat;
}

/** `HOST:PORT` or `[V6]:PORT`. */
const HOST_PORT = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]+)):(\d{1,5})$/;

/** The `--siem-*` flags as given. */
export interface SiemFlags {
  siemTarget?: string | undefined;
  siemCa?: string | undefined;
  siemClientCert?: string | undefined;
  siemClientKey?: string | undefined;
  siemServerName?: string | undefined;
  siemFormat?: string | undefined;
}

/** `--siem-*` flags into a target; refuses half a configuration (a client cert without its key, no CA). */
export function parseSiem(o: SiemFlags): SiemTarget | undefined {
  const given = [o.siemCa, o.siemClientCert, o.siemClientKey, o.siemServerName, o.siemFormat].some(
    (v) => v !== undefined,
  );
  if (o.siemTarget === undefined) {
    if (given)
      throw new Error(
        '--siem-* options need --siem-target HOST:PORT (e.g. --siem-target siem.example.com:6514)',
      );
    return undefined;
  }
  const m = HOST_PORT.exec(o.siemTarget);
  const port = Number(m?.[3]);
  if (!m || !(port > 0 && port <= 65535))
    throw new Error(
      `--siem-target ${o.siemTarget} is not HOST:PORT; try --siem-target siem.example.com:6514`,
    );
  if (!o.siemCa)
    throw new Error("--siem-target needs --siem-ca FILE, the CA the SIEM's certificate chains to");
  if ((o.siemClientCert === undefined) !== (o.siemClientKey === undefined))
    throw new Error('mutual TLS needs both --siem-client-cert FILE and --siem-client-key FILE');
  const format = o.siemFormat ?? 'rfc5424';
  if (!(SIEM_FORMATS as readonly string[]).includes(format))
    throw new Error(`--siem-format ${format} is not one of ${SIEM_FORMATS.join(', ')}`);
  return {
    host: m[1] ?? m[2] ?? '',
    port,
    caFile: resolve(o.siemCa),
    certFile: o.siemClientCert ? resolve(o.siemClientCert) : undefined,
    keyFile: o.siemClientKey ? resolve(o.siemClientKey) : undefined,
    serverName: o.siemServerName,
    format: format as SiemFormat,
  };
}

export const DEFAULT_SERVER_CREATE_RATE = 20;
export const DEFAULT_API_RATE = 600;
/** Nova's default `[api] max_limit` (osapi_max_limit). */
export const DEFAULT_API_MAX_LIMIT = 1000;

/** A rate flag's value: a whole number, 0 meaning no limit. */
function parseRate(flag: string, value: string | number | undefined, dflt: number): number {
  if (value === undefined || value === '') return dflt;
  const n =
    typeof value === 'number' ? value : /^\d{1,9}$/.test(value.trim()) ? Number(value.trim()) : Number.NaN;
  if (!Number.isSafeInteger(n) || n < 0)
    throw new Error(`${flag} ${String(value)} is not a whole number; try ${flag} ${dflt} (0: no limit)`);
  return n;
}

/** `10de:1eb8,046d:c52b` → the entries, each checked as vendor:product in hex. */
function allowList(flag: string, value: string | undefined): string[] {
  const entries = (value ?? '')
    .split(',')
    .map((e) => e.trim().toLowerCase())
    .filter(Boolean);
  for (const e of entries)
    if (!/^[0-9a-f]{4}:[0-9a-f]{4}$/.test(e))
      throw new Error(`${flag} entry ${e} is not vendor:product in hex; e.g. ${flag} 10de:1eb8,10de:10f8`);
  return entries;
}

/** `--console-retention-days`: a whole number of days, at least 1 (recordings are evidence). */
function retentionDays(value: string | number | undefined): number {
  const n = parseRate('--console-retention-days', value, 90);
  if (n < 1) throw new Error('--console-retention-days must be at least 1; the default is 90');
  return n;
}

export const DEFAULT_SECURE_BOOT_VARS = '/usr/share/OVMF/OVMF_VARS_4M.ms.fd';

/** Parses `HOST:PORT`, `[V6]:PORT` or `PORT`; refuses anything else with a fix. */
export function parseListen(listen: string, flag = '--listen'): { host: string; port: number } {
  const m = HOST_PORT.exec(listen) ?? /^()()(\d{1,5})$/.exec(listen);
  const port = m ? Number(m[3]) : Number.NaN;
  if (!m || !(port >= 0 && port <= 65535)) {
    throw new Error(
      `${flag} ${listen} is not HOST:PORT; try ${flag} 127.0.0.1:${flag === '--listen' ? 8443 : 8444}`,
    );
  }
  return { host: m[1] || m[2] || '127.0.0.1', port };
}

export function makeConfig(
  opts: {
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
    vtpmRestarts?: string | number | undefined;
    apiRate?: string | number | undefined;
    apiAddressRate?: string | number | undefined;
    apiMaxLimit?: string | number | undefined;
    storageWarnPercent?: string | number | undefined;
    storageRefusePercent?: string | number | undefined;
    pciPassthroughAllow?: string | undefined;
    usbPassthroughAllow?: string | undefined;
    adminMfaRequired?: boolean | undefined;
    lockoutFailureAttempts?: string | number | undefined;
    lockoutDuration?: string | number | undefined;
    passwordMinLength?: string | number | undefined;
    passwordHistory?: string | number | undefined;
    passwordExpiresDays?: string | number | undefined;
    consoleRetentionDays?: string | number | undefined;
    metricsListen?: string | undefined;
    agentListen?: string | undefined;
    heartbeatInterval?: string | number | undefined;
  } & SiemFlags,
): DaemonConfig {
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
  const vtpmRestarts = parseRate('--vtpm-restarts', opts.vtpmRestarts, DEFAULT_VTPM_RESTARTS);
  const perToken = parseRate('--api-rate', opts.apiRate, DEFAULT_API_RATE);
  const perAddress = parseRate('--api-address-rate', opts.apiAddressRate, 2 * perToken);
  const apiMaxLimit = parseRate('--api-max-limit', opts.apiMaxLimit, DEFAULT_API_MAX_LIMIT);
  if (apiMaxLimit < 1)
    throw new Error(`--api-max-limit must be at least 1; try --api-max-limit ${DEFAULT_API_MAX_LIMIT}`);
  const percent = (flag: string, v: string | number | undefined, dflt: number) => {
    const n = parseRate(flag, v, dflt);
    if (n < 1 || n > 100)
      throw new Error(`${flag} ${n} is not a percentage from 1 to 100; try ${flag} ${dflt}`);
    return n;
  };
  const storageThresholds = checkThresholds({
    warnPercent: percent('--storage-warn-percent', opts.storageWarnPercent, DEFAULT_THRESHOLDS.warnPercent),
    refusePercent: percent(
      '--storage-refuse-percent',
      opts.storageRefusePercent,
      DEFAULT_THRESHOLDS.refusePercent,
    ),
  });
  const d = DEFAULT_IDENTITY_POLICY;
  const identityPolicy: IdentityPolicy = {
    adminMfaRequired: opts.adminMfaRequired ?? d.adminMfaRequired,
    lockoutFailureAttempts: parseRate(
      '--lockout-failure-attempts',
      opts.lockoutFailureAttempts,
      d.lockoutFailureAttempts,
    ),
    lockoutDurationSeconds: parseRate('--lockout-duration', opts.lockoutDuration, d.lockoutDurationSeconds),
    passwordMinLength: Math.max(
      8,
      parseRate('--password-min-length', opts.passwordMinLength, d.passwordMinLength),
    ),
    passwordHistory: parseRate('--password-history', opts.passwordHistory, d.passwordHistory),
    passwordExpiresDays: parseRate(
      '--password-expires-days',
      opts.passwordExpiresDays,
      d.passwordExpiresDays,
    ),
  };
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
    vtpmRestarts,
    apiRate: { perToken, perAddress },
    apiMaxLimit,
    storageThresholds,
    passthrough: {
      pciAllowList: allowList('--pci-passthrough-allow', opts.pciPassthroughAllow),
      usbAllowList: allowList('--usb-passthrough-allow', opts.usbPassthroughAllow),
    },
    identityPolicy,
    siem: parseSiem(opts),
    consoleRetentionDays: retentionDays(opts.consoleRetentionDays),
    metricsListen:
      opts.metricsListen === undefined ? undefined : parseListen(opts.metricsListen, '--metrics-listen'),
    agentListen: opts.agentListen ? parseListen(opts.agentListen, '--agent-listen') : undefined,
    heartbeatSeconds: Math.max(1, parseRate('--heartbeat-interval', opts.heartbeatInterval, 10)),
  };
}
