import { join } from 'node:path';
import type { Command } from 'commander';
import { makeConfig, type SiemFlags } from '../../config.js';
import { startDaemon } from '../../daemon.js';

export function registerServeCommand(program: Command): void {
  program
    .command('serve')
    .description('Run the Bulwark daemon (API, control plane and the local host agent)')
    .requiredOption('--data-dir <dir>', 'directory holding all state (created 0711; secrets 0600)')
    .option('--listen <host:port>', 'address to listen on', '127.0.0.1:8443')
    .option('--public-url <url>', 'URL clients use to reach this daemon (default from --listen)')
    .option(
      '--database-url <url>',
      'postgres:// URL for the control plane (default: SQLite in the data dir)',
      process.env.BULWARK_DATABASE_URL,
    )
    .option(
      '--database-admin-url <url>',
      'postgres:// URL of the table owner, for migrations',
      process.env.BULWARK_DATABASE_ADMIN_URL,
    )
    .option('--log-level <level>', 'log level', 'info')
    .option(
      '--uplink-device <dev>',
      'host interface that routers with an external gateway SNAT out of (unset: guests stay on the host)',
      process.env.BULWARK_UPLINK_DEVICE,
    )
    .option(
      '--default-group-allows-same-group',
      "Neutron's default group: also allow ingress from members of the same group (default: the spec's block-all-ingress)",
      process.env.BULWARK_DEFAULT_GROUP_ALLOWS_SAME_GROUP === '1',
    )
    .option(
      '--kek <provider>',
      'key-encryption key for the key manager: file (0600 file in the data dir) or pkcs11',
      process.env.BULWARK_KEK ?? 'file',
    )
    .option(
      '--pkcs11-module <path>',
      'PKCS#11 module for --kek pkcs11, e.g. /usr/lib/softhsm/libsofthsm2.so',
      process.env.BULWARK_PKCS11_MODULE,
    )
    .option(
      '--pkcs11-token-label <label>',
      'label of the PKCS#11 token holding the KEK',
      process.env.BULWARK_PKCS11_TOKEN_LABEL,
    )
    .option(
      '--pkcs11-pin-file <file>',
      'file (0600) holding the token user PIN; never pass the PIN itself',
      process.env.BULWARK_PKCS11_PIN_FILE,
    )
    .option(
      '--secure-boot-vars <file>',
      'UEFI variable store with the enrolled Secure Boot keys, copied per Secure Boot guest (default: OVMF_VARS_4M.ms.fd, Microsoft keys)',
      process.env.BULWARK_SECURE_BOOT_VARS,
    )
    .option(
      '--server-create-rate <n>',
      'servers each user may create per sliding hour, counted across restarts (0: no limit; default 20)',
      process.env.BULWARK_SERVER_CREATE_RATE,
    )
    .option(
      '--vtpm-restarts <n>',
      'automatic restarts per server per hour after its vTPM emulator (swtpm) dies; then ERROR (0: none; default 3)',
      process.env.BULWARK_VTPM_RESTARTS,
    )
    .option(
      '--api-rate <n>',
      'API requests per minute per token (0: no limit; default 600)',
      process.env.BULWARK_API_RATE,
    )
    .option(
      '--api-address-rate <n>',
      'API requests per minute per source address, IPv6 per /64 (0: no limit; default twice --api-rate)',
      process.env.BULWARK_API_ADDRESS_RATE,
    )
    .option(
      '--api-max-limit <n>',
      "the most servers one page of a list answers, Nova's osapi_max_limit (default 1000)",
      process.env.BULWARK_API_MAX_LIMIT,
    )
    .option(
      '--storage-warn-percent <n>',
      'storage pool use (%) at which a warning is logged and audited (default 80)',
      process.env.BULWARK_STORAGE_WARN_PERCENT,
    )
    .option(
      '--storage-refuse-percent <n>',
      'storage pool use (%) at which new servers, volumes and images are refused (default 95)',
      process.env.BULWARK_STORAGE_REFUSE_PERCENT,
    )
    .option(
      '--pci-passthrough-allow <list>',
      'PCI devices (vendor:product, comma-separated) an admin may pass through to guests; default none',
      process.env.BULWARK_PCI_PASSTHROUGH_ALLOW,
    )
    .option(
      '--usb-passthrough-allow <list>',
      'USB devices (vendor:product, comma-separated) an admin may pass through to guests; default none',
      process.env.BULWARK_USB_PASSTHROUGH_ALLOW,
    )
    .option(
      '--no-admin-mfa-required',
      'let admin-scoped tokens act without a second factor (default: admins must use MFA; env BULWARK_ADMIN_MFA_REQUIRED=0)',
    )
    .option(
      '--lockout-failure-attempts <n>',
      'failed logins that lock an account (0: never; default 5)',
      process.env.BULWARK_LOCKOUT_FAILURE_ATTEMPTS,
    )
    .option(
      '--lockout-duration <seconds>',
      'how long a locked account stays locked (default 1800)',
      process.env.BULWARK_LOCKOUT_DURATION,
    )
    .option(
      '--password-min-length <n>',
      'shortest password accepted (at least 8; default 12)',
      process.env.BULWARK_PASSWORD_MIN_LENGTH,
    )
    .option(
      '--password-history <n>',
      'previous passwords a user may not reuse (default 3)',
      process.env.BULWARK_PASSWORD_HISTORY,
    )
    .option(
      '--password-expires-days <n>',
      'days until a new password expires (0: never; default 0)',
      process.env.BULWARK_PASSWORD_EXPIRES_DAYS,
    )
    .option(
      '--siem-target <host:port>',
      'forward the audit log as syslog over TLS (RFC 5425) to this SIEM',
      process.env.BULWARK_SIEM_TARGET,
    )
    .option(
      '--siem-ca <file>',
      'PEM CA the SIEM certificate must chain to (pinned)',
      process.env.BULWARK_SIEM_CA,
    )
    .option(
      '--siem-client-cert <file>',
      'PEM client certificate for mutual TLS with the SIEM',
      process.env.BULWARK_SIEM_CLIENT_CERT,
    )
    .option('--siem-client-key <file>', 'PEM key of --siem-client-cert', process.env.BULWARK_SIEM_CLIENT_KEY)
    .option(
      '--siem-server-name <name>',
      'name the SIEM certificate carries, when not the target host',
      process.env.BULWARK_SIEM_SERVER_NAME,
    )
    .option(
      '--siem-format <format>',
      'rfc5424 (structured data, default), cef or json',
      process.env.BULWARK_SIEM_FORMAT,
    )
    .option(
      '--console-retention-days <n>',
      'days console recordings are kept before they are pruned (default 90)',
      process.env.BULWARK_CONSOLE_RETENTION_DAYS,
    )
    .option(
      '--metrics-listen <host:port>',
      'also serve Prometheus /metrics here over plain HTTP without a token (a management address; the API listener serves it to admins)',
      process.env.BULWARK_METRICS_LISTEN,
    )
    .option(
      '--agent-listen <host:port>',
      'mutual-TLS endpoint for host agents (bulwark agent) to report to (default: none, single host)',
      process.env.BULWARK_AGENT_LISTEN,
    )
    .option(
      '--heartbeat-interval <seconds>',
      'seconds between agent reports; a host missing three is marked down (default 10)',
      process.env.BULWARK_HEARTBEAT_INTERVAL,
    )
    .action(
      async (
        o: {
          dataDir: string;
          listen: string;
          publicUrl?: string;
          databaseUrl?: string;
          databaseAdminUrl?: string;
          logLevel: string;
          uplinkDevice?: string;
          defaultGroupAllowsSameGroup: boolean;
          kek?: string;
          pkcs11Module?: string;
          pkcs11TokenLabel?: string;
          pkcs11PinFile?: string;
          secureBootVars?: string;
          serverCreateRate?: string;
          vtpmRestarts?: string;
          apiRate?: string;
          apiAddressRate?: string;
          apiMaxLimit?: string;
          storageWarnPercent?: string;
          storageRefusePercent?: string;
          pciPassthroughAllow?: string;
          usbPassthroughAllow?: string;
          adminMfaRequired: boolean;
          lockoutFailureAttempts?: string;
          lockoutDuration?: string;
          passwordMinLength?: string;
          passwordHistory?: string;
          passwordExpiresDays?: string;
          consoleRetentionDays?: string;
          metricsListen?: string;
          agentListen?: string;
          heartbeatInterval?: string;
        } & SiemFlags,
      ) => {
        const config = makeConfig({
          ...o,
          adminMfaRequired: o.adminMfaRequired && process.env.BULWARK_ADMIN_MFA_REQUIRED !== '0',
        });
        const daemon = await startDaemon(config);
        const lines = [
          `Bulwark is up at ${daemon.url}`,
          `  identity: ${daemon.url}/identity/v3`,
          `  dashboard: ${daemon.url}/dashboard/`,
        ];
        if (daemon.adminPassword) {
          lines.push(
            `  bootstrap admin: user "admin", password ${daemon.adminPassword}`,
            `  (written once to ${join(config.dataDir, 'admin-password')}, mode 0600)`,
          );
        } else {
          lines.push(`  admin password: see ${join(config.dataDir, 'admin-password')}`);
        }
        lines.push(
          `  CA certificate: ${join(config.dataDir, 'pki', 'ca.crt')}`,
          `  CLI: export OS_CLIENT_CONFIG_FILE=${join(config.dataDir, 'clouds.yaml')} OS_CLOUD=bulwark; openstack token issue`,
        );
        if (config.identityPolicy.adminMfaRequired)
          lines.push(
            '  admins must use MFA: until you enroll TOTP, an admin token may only enroll it (docs/identity.md):',
            '    SECRET=$(head -c 20 /dev/urandom | base32); openstack credential create --type totp admin "$SECRET"',
            '    openstack user set --multi-factor-auth-rule password,totp --enable-multi-factor-auth admin',
            '    then: OS_CLOUD=bulwark-mfa openstack --os-auth-type v3multifactor --os-passcode CODE ... (the cloud names both methods)',
          );
        if (daemon.agentUrl) lines.push(`  agent endpoint (mutual TLS): ${daemon.agentUrl}`);
        console.log(lines.join('\n'));
        const stop = async () => {
          await daemon.close();
          process.exit(0);
        };
        process.once('SIGINT', () => void stop());
        process.once('SIGTERM', () => void stop());
      },
    );
}
