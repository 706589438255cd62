/**
 * The control catalogue (issue 12; docs/compliance.md): every control the
 * security guide and the OpenStack platform page name, as data. Priority and
 * effort come from the guide's Priority Matrix where it lists the item
 * (`rating: 'matrix'`); otherwise from the section's own marker (CRITICAL and
 * PRIVILEGED: high, IMPORTANT and COMPLIANCE: medium, PLANNING: low;
 * `rating: 'section'`). Each control has one live check in checks.ts or
 * host-checks.ts; a test holds the two sets equal.
 *
 * Mappings: PCI DSS v4.0 requirement numbers; HIPAA Security Rule paragraphs
 * (45 CFR 164.312, plus 164.308(a)(7) where the control is the contingency
 * plan's, which 164.312 does not cover); SOC 2 2017 Trust Services Criteria.
 */

export const FRAMEWORKS = ['pci-dss', 'hipaa', 'soc2'] as const;
export type Framework = (typeof FRAMEWORKS)[number];
export const FRAMEWORK_NAMES: Record<Framework, string> = {
  'pci-dss': 'PCI DSS v4.0',
  hipaa: 'HIPAA Security Rule (45 CFR 164.312)',
  soc2: 'SOC 2 (2017 Trust Services Criteria)',
};

export type Level = 'high' | 'medium' | 'low';

export interface Control {
  id: string;
  title: string;
  description: string;
  priority: Level;
  effort: Level;
  rating: 'matrix' | 'section';
  /** Where the control comes from in the spec documents. */
  source: string;
  /** `platform`: one verdict from the store and configuration; `host`: evaluated on each hypervisor host. */
  scope: 'platform' | 'host';
  remediation: string;
  mappings: Record<Framework, readonly string[]>;
}

const c = (x: Control): Control => x;

export const CONTROLS: readonly Control[] = [
  c({
    id: 'disk-encryption',
    title: 'VM disks and volumes encrypted at rest',
    description:
      "Every server's root disk is LUKS-encrypted under its own key; every volume has an encrypted type.",
    priority: 'high',
    effort: 'high',
    rating: 'matrix',
    source: 'guide §1 VM Disk Encryption; platform: Encrypted Volumes',
    scope: 'platform',
    remediation:
      'Give volume types an encryption type (openstack volume type create --encryption-provider luks ...) and move data off plain volumes; rebuild servers that lack a root disk key.',
    mappings: { 'pci-dss': ['3.5.1', '3.5.1.2'], hipaa: ['164.312(a)(2)(iv)'], soc2: ['CC6.1'] },
  }),
  c({
    id: 'admin-mfa',
    title: 'MFA for administrators',
    description:
      'The site requires a second factor for admin tokens, and every cloud admin has one enrolled.',
    priority: 'high',
    effort: 'medium',
    rating: 'matrix',
    source: 'guide §15 Multi-Factor Authentication',
    scope: 'platform',
    remediation:
      'Run serve without --no-admin-mfa-required; each listed admin enrolls TOTP (openstack credential create --type totp) and enables MFA rules.',
    mappings: { 'pci-dss': ['8.4.1', '8.4.2'], hipaa: ['164.312(d)'], soc2: ['CC6.1', 'CC6.6'] },
  }),
  c({
    id: 'password-policy',
    title: 'Password and lockout rules',
    description:
      'Accounts lock after at most 10 failed attempts for at least 30 minutes; passwords are at least 12 characters.',
    priority: 'high',
    effort: 'low',
    rating: 'section',
    source: 'guide §15 MFA; Host Hardening: Access Control',
    scope: 'platform',
    remediation: 'serve --lockout-failure-attempts 10 --lockout-duration 1800 --password-min-length 12',
    mappings: { 'pci-dss': ['8.3.4', '8.3.6'], hipaa: ['164.312(d)'], soc2: ['CC6.1'] },
  }),
  c({
    id: 'access-review',
    title: 'Access review: no stale or disabled accounts holding roles',
    description:
      'Enabled accounts unused for 90 days, and disabled accounts that still hold roles, are removed.',
    priority: 'medium',
    effort: 'low',
    rating: 'section',
    source: 'guide §8 Operational Security: Access Reviews',
    scope: 'platform',
    remediation:
      'Review bulwark access review; disable or remove the listed accounts, or revoke their roles.',
    mappings: { 'pci-dss': ['7.2.4', '8.2.6'], hipaa: ['164.312(a)(1)'], soc2: ['CC6.2', 'CC6.3'] },
  }),
  c({
    id: 'backup-encryption',
    title: 'Backups encrypted',
    description:
      'Backup repositories seal every chunk for a recovery key the daemon never holds; every backup is sealed.',
    priority: 'high',
    effort: 'low',
    rating: 'matrix',
    source: 'guide §2 VM Backup Operations; Best Practices 6 Backup Encryption',
    scope: 'platform',
    remediation:
      'Delete backups without a seal and take them again into an encrypted repository (docs/backups.md).',
    mappings: {
      'pci-dss': ['3.5.1'],
      hipaa: ['164.312(a)(2)(iv)', '164.308(a)(7)(ii)(A)'],
      soc2: ['CC6.1', 'A1.2'],
    },
  }),
  c({
    id: 'backup-freshness',
    title: 'Scheduled backups run on time',
    description:
      "Each backup schedule's volume has a successful backup younger than twice the schedule's interval.",
    priority: 'medium',
    effort: 'low',
    rating: 'section',
    source: 'guide §2 VM Backup Operations; Quick Security Checklist: Backups encrypted and tested',
    scope: 'platform',
    remediation:
      "Look at the schedule's last_error (bulwark backup schedule list); fix the target or volume and run a backup.",
    mappings: { 'pci-dss': ['12.10.1'], hipaa: ['164.308(a)(7)(ii)(A)'], soc2: ['A1.2'] },
  }),
  c({
    id: 'restore-admin-only',
    title: 'Restore is admin-only',
    description: 'Only cloud admins may restore or delete backups; backup operators may only create them.',
    priority: 'high',
    effort: 'low',
    rating: 'section',
    source: 'guide §3 VM Restore Operations (PRIVILEGED)',
    scope: 'platform',
    remediation: "Set volume:backups:restore and volume:backups:delete to ['admin'] in src/policy/rules.ts.",
    mappings: { 'pci-dss': ['7.2.1', '7.2.2'], hipaa: ['164.312(a)(1)'], soc2: ['CC6.3'] },
  }),
  c({
    id: 'resource-quotas',
    title: 'Resource quotas bounded',
    description: 'No project has unlimited (-1) instances, cores, RAM, volumes or gigabytes.',
    priority: 'medium',
    effort: 'medium',
    rating: 'matrix',
    source: 'guide §4 VM Resource Quotas',
    scope: 'platform',
    remediation: 'openstack quota set --instances N --cores N --ram MiB --volumes N --gigabytes N <project>',
    mappings: { 'pci-dss': [], hipaa: [], soc2: ['A1.1'] },
  }),
  c({
    id: 'storage-thresholds',
    title: 'Storage pools below their warning threshold',
    description:
      'The filesystems holding disks, volumes and images are under the warn percentage; the refuse limit is at most 95%.',
    priority: 'medium',
    effort: 'low',
    rating: 'section',
    source: 'guide §5 Storage Quotas and Disk Space Management',
    scope: 'platform',
    remediation: 'Free space in the listed pool or grow it; keep --storage-refuse-percent at 95 or below.',
    mappings: { 'pci-dss': [], hipaa: [], soc2: ['A1.1'] },
  }),
  c({
    id: 'snapshot-lifecycle',
    title: 'Snapshot lifecycle policies',
    description:
      'Every project holding snapshots has a lifecycle policy (count or age limit), so old copies of data are disposed of.',
    priority: 'medium',
    effort: 'low',
    rating: 'matrix',
    source: 'guide §6 Snapshot Lifecycle Management',
    scope: 'platform',
    remediation: 'bulwark snapshot policy set --project <p> --max-count N --max-age-days D',
    mappings: { 'pci-dss': ['3.2.1'], hipaa: [], soc2: ['C1.2'] },
  }),
  c({
    id: 'network-zones',
    title: 'Network security zones segmented',
    description: 'Zone rules open named protocols and ports between zones, never everything.',
    priority: 'high',
    effort: 'medium',
    rating: 'matrix',
    source: 'guide §7 Network Isolation and Security Zones; Best Practices 2 Network Segmentation',
    scope: 'platform',
    remediation:
      'Replace the listed zone rules with ones naming a protocol and port (bulwark zone rule remove <id>; bulwark zone rule add ... --protocol tcp --dst-port 443).',
    mappings: { 'pci-dss': ['1.3.1', '1.4.1'], hipaa: ['164.312(e)(1)'], soc2: ['CC6.6'] },
  }),
  c({
    id: 'default-deny-ingress',
    title: 'Default-deny ingress',
    description:
      "New projects' default group blocks all ingress, and no security group opens every port to the whole Internet.",
    priority: 'high',
    effort: 'medium',
    rating: 'section',
    source: 'platform: Security Groups; guide §7 Network Isolation',
    scope: 'platform',
    remediation:
      'Run serve without --default-group-allows-same-group; narrow the listed rules to the ports and sources needed.',
    mappings: { 'pci-dss': ['1.3.1', '1.4.2'], hipaa: ['164.312(e)(1)'], soc2: ['CC6.6'] },
  }),
  c({
    id: 'admin-ports-exposed',
    title: 'SSH and RDP not open to the Internet',
    description: 'No ingress rule allows 0.0.0.0/0 or ::/0 to port 22 or 3389.',
    priority: 'high',
    effort: 'low',
    rating: 'section',
    source: 'platform: Security Groups; guide Quick Security Checklist: Firewall rules reviewed',
    scope: 'platform',
    remediation:
      'openstack security group rule delete <rule>; allow 22/3389 only from a bastion or VPN prefix.',
    mappings: { 'pci-dss': ['1.3.1', '1.4.2'], hipaa: ['164.312(e)(1)'], soc2: ['CC6.6'] },
  }),
  c({
    id: 'escape-hardening',
    title: 'VM escape hardening: per-VM user, seccomp, cgroups',
    description:
      'Each running guest process runs as its own non-root user, under a seccomp filter, in its own cgroup.',
    priority: 'high',
    effort: 'medium',
    rating: 'section',
    source: 'guide §8 VM Escape Prevention; platform: Hypervisor Isolation',
    scope: 'platform',
    remediation:
      'Restart the listed servers (openstack server stop/start) so they run under the hardened launcher (docs/host.md).',
    mappings: { 'pci-dss': ['2.2.3', '2.2.6'], hipaa: ['164.312(a)(1)'], soc2: ['CC6.1', 'CC6.8'] },
  }),
  c({
    id: 'template-only-clones',
    title: 'Clones need approval; servers come from approved templates',
    description:
      'The server-clone approval trigger is on, and once templates exist every server boots from an approved template version.',
    priority: 'high',
    effort: 'medium',
    rating: 'section',
    source: 'guide §9 VM Clone Operations; §18 VM Template Management',
    scope: 'platform',
    remediation:
      'bulwark approval trigger set server-clone --enable; rebuild the listed servers from an approved template.',
    mappings: { 'pci-dss': ['2.2.1', '6.5.1'], hipaa: ['164.312(c)(1)'], soc2: ['CC8.1'] },
  }),
  c({
    id: 'guest-agent-limits',
    title: 'Guest agent grants limited',
    description: 'No guest agent grant that includes guest-exec lasts longer than 24 hours.',
    priority: 'medium',
    effort: 'low',
    rating: 'section',
    source: 'guide §10 Guest Agent Security',
    scope: 'platform',
    remediation:
      'Revoke the listed grants (bulwark server guest-agent-revoke <server> <grant>) and grant guest-exec only for the task at hand.',
    mappings: { 'pci-dss': ['7.2.2'], hipaa: ['164.312(a)(1)'], soc2: ['CC6.3'] },
  }),
  c({
    id: 'passthrough-control',
    title: 'Device passthrough only from the allow-lists',
    description: "Every server's attached PCI and USB devices are on the site's allow-lists.",
    priority: 'high',
    effort: 'low',
    rating: 'section',
    source: 'guide §11 USB and PCI Device Passthrough (PRIVILEGED)',
    scope: 'platform',
    remediation:
      'Detach the listed devices, or add them to --pci-passthrough-allow / --usb-passthrough-allow after review.',
    mappings: { 'pci-dss': ['2.2.6'], hipaa: ['164.312(a)(1)'], soc2: ['CC6.7', 'CC6.8'] },
  }),
  c({
    id: 'console-recording',
    title: 'Console sessions recorded and kept',
    description: 'Recordings are kept at least 90 days (PCI: three months at hand) and the pruner keeps up.',
    priority: 'medium',
    effort: 'low',
    rating: 'matrix',
    source: 'guide §12 VM Console Session Recording',
    scope: 'platform',
    remediation:
      'serve --console-retention-days 90 (or more); a recording older than retention means the pruner is not running.',
    mappings: { 'pci-dss': ['10.2.1', '10.2.1.2', '10.5.1'], hipaa: ['164.312(b)'], soc2: ['CC7.2'] },
  }),
  c({
    id: 'siem-forwarding',
    title: 'Audit forwarded to a SIEM',
    description:
      'The audit log is forwarded over TLS, and the oldest undelivered event is under 5 minutes old.',
    priority: 'medium',
    effort: 'high',
    rating: 'matrix',
    source: 'guide §13 Centralized Logging and SIEM Integration',
    scope: 'platform',
    remediation:
      'serve --siem-target HOST:PORT --siem-ca FILE; if lagging, check the SIEM is reachable (docs/siem.md).',
    mappings: { 'pci-dss': ['10.3.3', '10.4.1.1'], hipaa: ['164.312(b)'], soc2: ['CC7.2', 'CC7.3'] },
  }),
  c({
    id: 'vm-metadata',
    title: 'VM metadata required and present',
    description: 'Metadata rules require ownership fields, and every server carries what the rules require.',
    priority: 'medium',
    effort: 'low',
    rating: 'matrix',
    source: 'guide §14 VM Metadata and Change Tracking',
    scope: 'platform',
    remediation: 'bulwark metadata-rule create ...; openstack server set --property owner=... <server>',
    mappings: { 'pci-dss': ['12.5.1'], hipaa: ['164.312(b)'], soc2: ['CC8.1', 'C1.1'] },
  }),
  c({
    id: 'break-glass',
    title: 'Break-glass access set up and reviewed',
    description: 'A break-glass account exists, and every break-glass session that has ended was reviewed.',
    priority: 'high',
    effort: 'medium',
    rating: 'section',
    source: 'guide §16 Emergency Procedures and Break-Glass Access',
    scope: 'platform',
    remediation:
      'bulwark break-glass create <name>; close the listed sessions with a note (bulwark break-glass close <review> --note ...).',
    mappings: { 'pci-dss': ['8.2.2', '10.2.1.2'], hipaa: ['164.312(a)(2)(ii)'], soc2: ['CC6.3', 'CC7.4'] },
  }),
  c({
    id: 'rate-limits',
    title: 'Rate limits on',
    description: 'Server creation and API requests per token and per address are rate limited.',
    priority: 'low',
    effort: 'low',
    rating: 'matrix',
    source: 'guide §17 Rate Limiting and DoS Prevention',
    scope: 'platform',
    remediation: 'serve --server-create-rate 20 --api-rate 600 (0 turns a limit off).',
    mappings: { 'pci-dss': [], hipaa: [], soc2: ['A1.1'] },
  }),
  c({
    id: 'dr-drill',
    title: 'Disaster recovery drill is recent',
    description: 'A restore drill ran successfully within the last year.',
    priority: 'low',
    effort: 'medium',
    rating: 'section',
    source: 'guide §19 Disaster Recovery and Business Continuity; Phase 4: Disaster recovery testing',
    scope: 'platform',
    remediation:
      'Set DR targets (bulwark dr target set SERVER --rpo S --rto S) and run bulwark dr drill at least yearly.',
    mappings: { 'pci-dss': ['12.10.2'], hipaa: ['164.308(a)(7)(ii)(D)'], soc2: ['A1.3'] },
  }),
  c({
    id: 'audit-chain',
    title: 'Audit chain intact',
    description:
      'Every audit row hashes to the next from the first to the head; no row is missing or changed.',
    priority: 'medium',
    effort: 'low',
    rating: 'section',
    source: 'guide §20 Compliance mapping: Requirement 10, §164.312(b), CC7.2',
    scope: 'platform',
    remediation:
      'Treat as an incident: the named row was changed or removed; restore the audit table from backup and investigate.',
    mappings: { 'pci-dss': ['10.3.2', '10.3.4'], hipaa: ['164.312(b)', '164.312(c)(1)'], soc2: ['CC7.2'] },
  }),
  c({
    id: 'vtpm-secure-boot',
    title: 'vTPM and Secure Boot available',
    description: 'Every up hypervisor host offers UEFI Secure Boot (enrolled keys) and a vTPM (swtpm).',
    priority: 'medium',
    effort: 'low',
    rating: 'section',
    source: 'platform: vTPM, Secure Boot (UEFI)',
    scope: 'platform',
    remediation:
      'Install ovmf and swtpm on the listed hosts (scripts/deps.sh) and restart the daemon or agent.',
    mappings: { 'pci-dss': ['2.2.6'], hipaa: ['164.312(c)(1)'], soc2: ['CC6.8'] },
  }),
  c({
    id: 'host-sysctls',
    title: 'Host kernel security parameters',
    description: 'The kernel sysctls of the hardening baseline have their safe values on each host.',
    priority: 'high',
    effort: 'low',
    rating: 'section',
    source: 'guide Host Hardening: Kernel Security (security parameters); Quick Security Checklist',
    scope: 'host',
    remediation: 'Write the listed values to /etc/sysctl.d/90-bulwark.conf and run sysctl --system.',
    mappings: { 'pci-dss': ['2.2.6'], hipaa: [], soc2: ['CC7.1'] },
  }),
  c({
    id: 'host-ssh-key-only',
    title: 'Host SSH key-only',
    description: 'sshd refuses passwords and keyboard-interactive logins, and root logs in by key at most.',
    priority: 'high',
    effort: 'low',
    rating: 'section',
    source: 'guide Host Hardening: Access Control; Quick Security Checklist: SSH key-only authentication',
    scope: 'host',
    remediation:
      'In /etc/ssh/sshd_config: PasswordAuthentication no, KbdInteractiveAuthentication no, PermitRootLogin prohibit-password; reload sshd.',
    mappings: { 'pci-dss': ['2.2.6', '8.3.1'], hipaa: ['164.312(d)'], soc2: ['CC6.1'] },
  }),
  c({
    id: 'host-auditd',
    title: 'Host auditd with the watch rules',
    description:
      'auditd runs and its rules watch the data dir, /etc/shadow, /var/log/auth.log and /etc/nftables.conf.',
    priority: 'high',
    effort: 'low',
    rating: 'section',
    source: 'guide Host Hardening: Audit Logging; Quick Security Checklist: Audit logging configured',
    scope: 'host',
    remediation:
      'apt-get install auditd; add the missing -w rules to /etc/audit/rules.d/bulwark.rules; augenrules --load.',
    mappings: { 'pci-dss': ['10.2.1', '10.2.2'], hipaa: ['164.312(b)'], soc2: ['CC7.2'] },
  }),
  c({
    id: 'host-nested-virt',
    title: 'Nested virtualisation disabled',
    description: 'kvm_intel/kvm_amd are loaded with nested=0.',
    priority: 'high',
    effort: 'low',
    rating: 'section',
    source: 'guide §8 VM Escape Prevention (options kvm_intel nested=0)',
    scope: 'host',
    remediation:
      'echo "options kvm_intel nested=0" > /etc/modprobe.d/bulwark.conf (kvm_amd likewise); reload the module.',
    mappings: { 'pci-dss': ['2.2.6'], hipaa: [], soc2: ['CC6.8'] },
  }),
  c({
    id: 'host-mac-seccomp',
    title: 'AppArmor and seccomp available',
    description: 'The kernel offers seccomp filters and AppArmor is enabled.',
    priority: 'high',
    effort: 'medium',
    rating: 'section',
    source:
      'guide §8 VM Escape Prevention; Best Practices 2 AppArmor Profiles; Quick Security Checklist: AppArmor profiles active',
    scope: 'host',
    remediation: 'Boot with apparmor=1 security=apparmor and a kernel built with CONFIG_SECCOMP_FILTER.',
    mappings: { 'pci-dss': ['2.2.3', '2.2.6'], hipaa: [], soc2: ['CC6.8'] },
  }),
  c({
    id: 'host-hardened-kernel',
    title: 'Hardened kernel options',
    description: 'The kernel command line carries vsyscall=none and keeps CPU mitigations on.',
    priority: 'medium',
    effort: 'low',
    rating: 'section',
    source: 'guide §8 (boot.kernelParams vsyscall=none); Host Hardening: Hardened Kernel',
    scope: 'host',
    remediation: 'Add vsyscall=none to GRUB_CMDLINE_LINUX and drop mitigations=off; update-grub and reboot.',
    mappings: { 'pci-dss': ['2.2.6'], hipaa: [], soc2: ['CC7.1'] },
  }),
  c({
    id: 'host-unneeded-services',
    title: 'No unneeded network services on the host',
    description: 'Nothing listens on telnet, FTP, rsh/rlogin/rexec, TFTP, rpcbind, CUPS or mDNS.',
    priority: 'medium',
    effort: 'low',
    rating: 'section',
    source: 'guide §7 Compliance and Hardening (CIS benchmarks, security scanning); Quick Security Checklist',
    scope: 'host',
    remediation: 'systemctl disable --now the listed services (or apt-get purge them).',
    mappings: { 'pci-dss': ['2.2.4', '2.2.5'], hipaa: [], soc2: ['CC6.6'] },
  }),
];

export const controlById = (id: string): Control | undefined => CONTROLS.find((x) => x.id === id);

/** The controls one framework maps, each with its requirement ids there. */
export const controlsFor = (fw: Framework): Control[] => CONTROLS.filter((x) => x.mappings[fw].length > 0);
