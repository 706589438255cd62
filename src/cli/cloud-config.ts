import { existsSync, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { parse } from 'yaml';

/** Connection settings, resolved the way the openstack CLI does. */
export interface CloudConfig {
  authUrl: string;
  username: string;
  password: string;
  projectName: string | undefined;
  userDomainName: string;
  projectDomainName: string;
  cacert: string | undefined;
  /** A TOTP code (`OS_PASSCODE`): the login sends password + TOTP, as `v3multifactor` does. */
  passcode?: string | undefined;
  /** An existing token (`OS_TOKEN`): re-scoped with Keystone's token method instead of a password login. */
  token?: string | undefined;
}

const candidates = (env: NodeJS.ProcessEnv) =>
  [
    env.OS_CLIENT_CONFIG_FILE,
    join(process.cwd(), 'clouds.yaml'),
    join(homedir(), '.config', 'openstack', 'clouds.yaml'),
    '/etc/openstack/clouds.yaml',
  ].filter((p): p is string => typeof p === 'string' && p.length > 0);

const str = (v: unknown): string | undefined =>
  typeof v === 'string' && v.length > 0 ? v : typeof v === 'number' ? String(v) : undefined;

export function loadCloudConfig(env: NodeJS.ProcessEnv = process.env, cloudName = env.OS_CLOUD): CloudConfig {
  let fromFile: Record<string, unknown> = {};
  let auth: Record<string, unknown> = {};
  if (cloudName) {
    const file = candidates(env).find((p) => existsSync(p));
    if (!file)
      throw new Error(`OS_CLOUD=${cloudName} is set but no clouds.yaml was found; set OS_CLIENT_CONFIG_FILE`);
    const doc: unknown = parse(readFileSync(file, 'utf8'));
    const clouds = (doc as { clouds?: Record<string, unknown> } | null)?.clouds;
    const cloud = clouds?.[cloudName];
    if (!cloud || typeof cloud !== 'object') throw new Error(`cloud ${cloudName} is not defined in ${file}`);
    fromFile = cloud as Record<string, unknown>;
    auth = (fromFile.auth && typeof fromFile.auth === 'object' ? fromFile.auth : {}) as Record<
      string,
      unknown
    >;
  }
  const pick = (envKey: string, authKey: string) => str(env[envKey]) ?? str(auth[authKey]);
  const authUrl = pick('OS_AUTH_URL', 'auth_url');
  const username = pick('OS_USERNAME', 'username');
  const password = pick('OS_PASSWORD', 'password');
  const token = pick('OS_TOKEN', 'token');
  if (!authUrl || (token === undefined && (!username || password === undefined))) {
    throw new Error(
      'No credentials: set OS_CLOUD (with clouds.yaml) or OS_AUTH_URL, OS_USERNAME and OS_PASSWORD (or OS_TOKEN)',
    );
  }
  return {
    authUrl: authUrl.replace(/\/+$/, ''),
    username: username ?? '',
    password: password ?? '',
    passcode: str(env.OS_PASSCODE),
    token,
    projectName: pick('OS_PROJECT_NAME', 'project_name'),
    userDomainName: pick('OS_USER_DOMAIN_NAME', 'user_domain_name') ?? 'Default',
    projectDomainName: pick('OS_PROJECT_DOMAIN_NAME', 'project_domain_name') ?? 'Default',
    cacert: str(env.OS_CACERT) ?? str(fromFile.cacert),
  };
}
