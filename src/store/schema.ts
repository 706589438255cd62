import type { Generated } from 'kysely';

/**
 * Table types shared by both dialects. Portable column types only: text,
 * integer, and JSON stored as text, so one query builder serves SQLite and
 * PostgreSQL. Times are ISO-8601 UTC strings (they sort lexically).
 */
export interface DomainsTable {
  id: string;
  name: string;
  description: string;
  enabled: number;
  created_at: string;
}

export interface ProjectsTable {
  id: string;
  name: string;
  domain_id: string;
  description: string;
  enabled: number;
  created_at: string;
}

export interface UsersTable {
  id: string;
  name: string;
  domain_id: string;
  password_hash: string | null;
  enabled: number;
  default_project_id: string | null;
  email: string | null;
  description: string;
  /** JSON object of Keystone user options. */
  options: string;
  created_at: string;
  password_expires_at: string | null;
  /** Keystone lockout: failures since the last success, and when the last one was (migration 0020). */
  failed_auth_count: Generated<number>;
  failed_auth_at: string | null;
  last_login_at: string | null;
  password_changed_at: string | null;
}

export interface RolesTable {
  id: string;
  name: string;
  description: string;
}

export interface RoleAssignmentsTable {
  user_id: string;
  project_id: string;
  role_id: string;
}

export interface TokensTable {
  /** sha256 of the token; the token itself is never stored. */
  id_hash: string;
  user_id: string;
  project_id: string | null;
  /** JSON array of auth methods used. */
  methods: string;
  audit_id: string;
  issued_at: string;
  expires_at: string;
  revoked_at: string | null;
  /** The application credential the token was made from (migration 0021): its rules apply. */
  app_cred_id: Generated<string | null>;
}

// ---- identity hardening (issue 8, migrations 0020-0029) ----

/** A Keystone credential; its blob is a key-manager secret (sealed), never stored here. */
export interface CredentialsTable {
  id: string;
  user_id: string;
  project_id: string | null;
  type: string;
  secret_id: string;
  /** The last TOTP time step accepted: a code for this step or an earlier one is a replay. */
  totp_last_step: number | null;
  created_at: string;
}

/** A partial login (one factor done); only the receipt's SHA-256 is kept. */
export interface AuthReceiptsTable {
  id_hash: string;
  user_id: string;
  methods: string;
  issued_at: string;
  expires_at: string;
}

/** Keystone application credential; the secret is an argon2 hash, shown once at creation. */
export interface ApplicationCredentialsTable {
  id: string;
  user_id: string;
  project_id: string;
  name: string;
  description: string;
  secret_hash: string;
  expires_at: string | null;
  /** JSON array of role names (a subset of the creator's roles on the project). */
  roles: string;
  /** JSON array of `{id, service, method, path}`; empty: any request. */
  access_rules: string;
  unrestricted: number;
  created_at: string;
}

/** An emergency admin: its sealed credential's argon2 hash (the secret itself went offline once). */
export interface BreakGlassAccountsTable {
  id: string;
  user_id: string;
  secret_hash: string;
  created_by: string | null;
  created_at: string;
}

/** One break-glass use, open until an admin closes it with a post-incident note. */
export interface BreakGlassReviewsTable {
  id: string;
  account_id: string;
  user_name: string;
  reason: string;
  source_ip: string | null;
  token_audit_id: string;
  opened_at: string;
  expires_at: string;
  closed_at: string | null;
  closed_by: string | null;
  note: string | null;
}

/** A registered security key: its public key (COSE, base64url) and signature counter. */
export interface WebauthnCredentialsTable {
  id: string;
  user_id: string;
  name: string;
  public_key: string;
  counter: number;
  /** JSON array of transports the authenticator reported. */
  transports: string;
  created_at: string;
  last_used_at: string | null;
}

/** A single-use WebAuthn challenge (registration or login), valid two minutes. */
export interface WebauthnChallengesTable {
  id: string;
  user_id: string;
  kind: string;
  challenge: string;
  expires_at: string;
}

/** A one-time recovery code's argon2 hash. */
export interface RecoveryCodesTable {
  id: string;
  user_id: string;
  code_hash: string;
  created_at: string;
  used_at: string | null;
}

export interface PasswordHistoryTable {
  id: string;
  user_id: string;
  password_hash: string;
  created_at: string;
}

export interface AuditEventsTable {
  seq: number;
  id: string;
  time: string;
  request_id: string;
  user_id: string | null;
  user_name: string | null;
  project_id: string | null;
  roles: string;
  source_ip: string | null;
  action: string;
  method: string;
  path: string;
  target_type: string | null;
  target_id: string | null;
  outcome: string;
  status: number;
  reason: string | null;
  prev_hash: string;
  hash: string;
}

export interface AuditHeadTable {
  id: number;
  seq: number;
  hash: string;
}

export interface ImagesTable {
  id: string;
  name: string;
  owner: string;
  visibility: string;
  status: string;
  disk_format: string | null;
  container_format: string | null;
  size: number | null;
  virtual_size: number | null;
  checksum: string | null;
  os_hash_algo: string | null;
  os_hash_value: string | null;
  min_disk: number;
  min_ram: number;
  protected: number;
  /** JSON object of free-form image properties (hw_firmware_type, ...). */
  properties: string;
  tags: string;
  created_at: string;
  updated_at: string;
}

export interface ImageMembersTable {
  image_id: string;
  member_id: string;
  status: string;
  created_at: string;
}

export interface FlavorsTable {
  id: string;
  name: string;
  vcpus: number;
  ram: number;
  disk: number;
  ephemeral: number;
  swap: number;
  rxtx_factor: number;
  is_public: number;
  description: string | null;
  extra_specs: string;
  created_at: string;
}

export interface ServersTable {
  id: string;
  name: string;
  project_id: string;
  user_id: string;
  flavor_id: string;
  image_id: string;
  flavor: string;
  status: string;
  task_state: string | null;
  power_state: number;
  vm_state: string;
  host: string | null;
  fault: string | null;
  metadata: string;
  hints: string;
  guest: string;
  key_name: string | null;
  created_at: string;
  updated_at: string;
  launched_at: string | null;
  /** JSON quarantine record (compute/quarantine.ts); null when not quarantined. */
  quarantine: string | null;
  deleted_at: string | null;
  /** The key manager's id of the root overlay's LUKS key (migration 0009); null: not encrypted. */
  root_key_secret_id: string | null;
  /** The key manager's id of the key encrypting the vTPM state (migration 0010); null: no vTPM. */
  tpm_secret_id: string | null;
  /** JSON PassthroughPlan of host PCI/USB devices given to the guest (migration 0015); null: none. */
  host_devices: string | null;
}

export interface NetworksTable {
  id: string;
  name: string;
  project_id: string;
  description: string;
  admin_state_up: number;
  shared: number;
  mtu: number;
  port_security_enabled: number;
  zone: string;
  /** Neutron `router:external`: an external network (admin-made), usable as a router's gateway. */
  router_external: Generated<number>;
  created_at: string;
  updated_at: string;
}

export interface RoutersTable {
  id: string;
  name: string;
  project_id: string;
  description: string;
  admin_state_up: number;
  /** The external network of the router's gateway (SNAT out of the uplink), or null. */
  external_network_id: string | null;
  created_at: string;
  updated_at: string;
}

export interface RouterInterfacesTable {
  /** One router per subnet: the interface address is the subnet's gateway. */
  subnet_id: string;
  router_id: string;
  network_id: string;
  created_at: string;
}

export interface ZonesTable {
  name: string;
  description: string;
  /** 1: ports in the zone may reach host services; 0: DHCP and neighbour discovery only. */
  host_access: number;
  created_at: string;
  updated_at: string;
}

export interface ZoneRulesTable {
  id: string;
  from_zone: string;
  to_zone: string;
  /** `any`, `tcp`, `udp`, `icmp` or an IP protocol number as text. */
  protocol: string;
  port_range_min: number | null;
  port_range_max: number | null;
  description: string;
  rule_key: string;
  created_at: string;
}

export interface SubnetsTable {
  id: string;
  name: string;
  network_id: string;
  project_id: string;
  description: string;
  ip_version: number;
  cidr: string;
  gateway_ip: string | null;
  enable_dhcp: number;
  /** JSON array of {start, end}. */
  allocation_pools: string;
  dns_nameservers: string;
  created_at: string;
  updated_at: string;
}

export interface PortsTable {
  id: string;
  name: string;
  network_id: string;
  project_id: string;
  description: string;
  mac_address: string;
  device_id: string;
  device_owner: string;
  admin_state_up: number;
  port_security_enabled: number;
  /** JSON array of {ip_address, mac_address}. */
  allowed_address_pairs: string;
  quarantined: number;
  created_at: string;
  updated_at: string;
}

export interface PortIpsTable {
  port_id: string;
  subnet_id: string;
  ip_address: string;
}

export interface SecurityGroupsTable {
  id: string;
  name: string;
  project_id: string;
  description: string;
  stateful: number;
  created_at: string;
  updated_at: string;
}

export interface SecurityGroupRulesTable {
  id: string;
  security_group_id: string;
  project_id: string;
  direction: string;
  ethertype: string;
  protocol: string | null;
  port_range_min: number | null;
  port_range_max: number | null;
  remote_ip_prefix: string | null;
  remote_group_id: string | null;
  description: string;
  rule_key: string;
  created_at: string;
}

export interface PortSecurityGroupsTable {
  port_id: string;
  security_group_id: string;
}

// ---- block storage (migration 0009) ----
export interface VolumeTypesTable {
  id: string;
  name: string;
  description: string | null;
  is_public: number;
  created_at: string;
}

export interface VolumeEncryptionTypesTable {
  volume_type_id: string;
  encryption_id: string;
  provider: string;
  cipher: string;
  key_size: number;
  control_location: string;
  created_at: string;
}

export interface VolumesTable {
  id: string;
  name: string | null;
  description: string | null;
  project_id: string;
  user_id: string;
  /** GiB. */
  size: number;
  /** Cinder's: creating, available, in-use, attaching, detaching, extending, deleting, error, error_deleting. */
  status: string;
  volume_type_id: string | null;
  encrypted: number;
  /** The key manager's id of the LUKS key; the key itself is never stored here. */
  key_secret_id: string | null;
  /** Why the volume is in error, for the owner. */
  fault: string | null;
  metadata: string;
  created_at: string;
  updated_at: string;
  deleted_at: string | null;
}

export interface VolumeAttachmentsTable {
  volume_id: string;
  id: string;
  server_id: string;
  device: string;
  attached_at: string;
}

/** A key-manager secret: metadata in clear, payload and data key only as ciphertext (0008). */
export interface SecretsTable {
  id: string;
  project_id: string;
  creator_id: string | null;
  name: string | null;
  secret_type: string;
  algorithm: string | null;
  bit_length: number | null;
  mode: string | null;
  content_type: string;
  expiration: string | null;
  payload_iv: string;
  payload_ct: string;
  payload_tag: string;
  dek_iv: string;
  dek_wrapped: string;
  dek_tag: string;
  kek_id: string;
  kek_version: number;
  created_at: string;
  updated_at: string;
}

/** One event counted against a persistent rate limit, e.g. a server created by a user (0012). */
export interface RateLimitEventsTable {
  id: string;
  /** Which limit, e.g. "server-create". */
  bucket: string;
  /** Whom it is counted against, e.g. the user id. */
  subject: string;
  at: string;
}

/** One row per project whose quota has been checked or set: the row enforcement locks. */
export interface QuotaProjectsTable {
  project_id: string;
  updated_at: string;
}

/** A quota limit that differs from the default; user_id '' is the whole project. -1: unlimited. */
export interface QuotaLimitsTable {
  project_id: string;
  user_id: string;
  resource: string;
  hard_limit: number;
  updated_at: string;
}

// ---- snapshots (0050, docs/snapshots.md) ----

/** An internal qcow2 snapshot of a volume or a server's root overlay (its tag inside the file). */
export interface SnapshotsTable {
  id: string;
  /** 'volume' or 'server'. */
  kind: string;
  /** The volume's or server's id. */
  resource_id: string;
  project_id: string;
  user_id: string;
  /** `<purpose>-<UTC timestamp>` (naming.ts). */
  name: string;
  purpose: string;
  /** Required, never empty. */
  description: string;
  /** The snapshot's name inside the qcow2 file. */
  tag: string;
  /** 1: RAM and device state saved too (server snapshots of a running guest). */
  memory: number;
  /** GiB, as Cinder reports it (the volume's size). */
  size: number;
  status: string;
  fault: string | null;
  metadata: string;
  created_at: string;
  updated_at: string;
  deleted_at: string | null;
}

/** A lifecycle policy: scope 'project' (target = project id), 'server' or 'volume' (target = its id). */
export interface SnapshotPoliciesTable {
  scope: string;
  target_id: string;
  project_id: string;
  /** null: no limit at this scope. */
  max_count: number | null;
  max_age_days: number | null;
  /** 1: at the count limit a new snapshot prunes the oldest; 0: it is refused. */
  prune_oldest: number;
  updated_by: string;
  updated_at: string;
}

// ---- governance: approvals (0013) ----------------------------------------------------------

/** A request held for a second admin's decision (governance/approvals.ts). */
export interface ApprovalsTable {
  id: string;
  /** What to run when approved, e.g. "server-create" (the registered executor). */
  kind: string;
  /** pending, approved (running), executed, failed or rejected. */
  status: string;
  project_id: string;
  requester_id: string;
  requester_name: string;
  /** One line for people: what was asked for and why it needs approval. */
  summary: string;
  /** JSON: the request, as the executor takes it. */
  payload: string;
  created_at: string;
  decided_by: string | null;
  decided_by_name: string | null;
  decided_at: string | null;
  decision_reason: string | null;
  /** JSON: what the executor returned. */
  result: string | null;
  error: string | null;
  finished_at: string | null;
}

/** A trigger an admin has changed from its default; absent rows keep the default. */
export interface ApprovalTriggersTable {
  kind: string;
  enabled: number;
  /** JSON object of the trigger's thresholds, e.g. {"vcpus":16,"ram":65536}. */
  params: string;
  updated_by: string;
  updated_at: string;
}

// ---- governance: server metadata rules and change history (0014) ------------------------------

/** When metadata `when_key` is `when_value`, every key in `requires` (JSON array) must be set. */
export interface MetadataRulesTable {
  id: string;
  when_key: string;
  when_value: string;
  requires: string;
  created_by: string;
  created_at: string;
}

/** One change to a server: who, when, what kind, and the JSON diff ({field: {from, to}}). */
export interface ServerChangesTable {
  id: string;
  server_id: string;
  project_id: string;
  at: string;
  user_id: string | null;
  user_name: string | null;
  /** create, metadata, action, security-group, delete, ... */
  change: string;
  diff: string;
}

// ---- governance: guest agent grants (0015) --------------------------------------------------

/** An admin's grant of guest-exec / guest-file-* on one server, until expiry or revocation. */
export interface GuestAgentGrantsTable {
  id: string;
  server_id: string;
  /** JSON array of command names. */
  commands: string;
  granted_by: string;
  granted_by_name: string;
  reason: string;
  expires_at: string;
  created_at: string;
  revoked_at: string | null;
}

// ---- SIEM forwarding and console recordings (issue 9) ----

export interface SiemCursorsTable {
  /** The destination's name (one per configured SIEM). */
  destination: string;
  /** Last audit sequence number the destination has confirmed. */
  seq: number;
  updated_at: string;
}

export interface ConsoleRecordingsTable {
  id: string;
  server_id: string;
  server_name: string;
  project_id: string;
  user_id: string;
  user_name: string;
  started_at: string;
  ended_at: string | null;
  width: number;
  height: number;
  bytes_in: number;
  bytes_out: number;
  /** The key manager secret (admin project) holding this recording's data key. */
  key_id: string;
  /** File name under the recordings dir. */
  file: string;
  interrupted: number;
}

// ---- backups (issue 6, migration 0040) ----------------------------------------------------------

export interface BackupRepositoriesTable {
  id: string;
  /** `local:/path` */
  target: string;
  /** X25519, base64: what every backup's data key is wrapped for. */
  recipient_public_key: string;
  /** The chunk-id (HMAC) key, in the key manager. */
  id_key_secret_id: string;
  id_key_project_id: string;
  created_by: string;
  created_at: string;
}

export interface BackupsTable {
  id: string;
  project_id: string;
  user_id: string;
  name: string | null;
  description: string | null;
  /** `volume` or `server` (migration 0080) */
  kind: string;
  source_id: string;
  source_type_id: string | null;
  /** GiB, the source's size. */
  size: number;
  status: string;
  fault: string | null;
  is_incremental: number;
  parent_id: string | null;
  seal_sha256: string | null;
  object_count: number;
  read_bytes: number;
  stored_bytes: number;
  duration_ms: number;
  data_timestamp: string | null;
  created_at: string;
  updated_at: string;
  deleted_at: string | null;
  /** The schedule that made it (migration 0041); only those are pruned by retention. */
  schedule_id: string | null;
  /** A server backup's ServerDefinition as JSON (migration 0080); null for volumes. */
  definition: string | null;
}

// ---- disaster-recovery drills (migration 0081, docs/dr.md) ----

export interface DrPoliciesTable {
  server_id: string;
  project_id: string;
  rpo_target_s: number;
  rto_target_s: number;
  /** What the restored guest's console shows once it is up. */
  boot_marker: string;
  set_by: string;
  updated_at: string;
}

export interface DrDrillsTable {
  id: string;
  /** One `bulwark dr drill` covers every protected server: they share a run id. */
  run_id: string;
  server_id: string;
  project_id: string;
  backup_id: string | null;
  /** running, done */
  status: string;
  /** What a running drill is doing (restoring, booting, cleaning up). */
  step: string | null;
  started_at: string;
  finished_at: string | null;
  rpo_s: number | null;
  rto_s: number | null;
  rpo_target_s: number;
  rto_target_s: number;
  /** pass or fail */
  verdict: string | null;
  reason: string | null;
  started_by: string;
}

export interface BackupSchedulesTable {
  id: string;
  project_id: string;
  /** `volume` or `server` (migration 0160; volume schedules came first). */
  kind: string;
  /** The volume or server backed up (`volume_id` before migration 0160). */
  source_id: string;
  name: string | null;
  interval_minutes: number;
  keep_last: number;
  keep_daily: number;
  keep_weekly: number;
  keep_monthly: number;
  next_run_at: string;
  last_run_at: string | null;
  last_error: string | null;
  created_by: string;
  created_at: string;
}
/** A template version: an image pinned by its data's sha256, usable once approved (0051, docs/templates.md). */
export interface TemplatesTable {
  id: string;
  name: string;
  /** 1, 2, ... per name. */
  version: number;
  image_id: string;
  /** The image data's sha256 when the version was made; every boot checks the file against it. */
  sha256: string;
  description: string;
  /** pending (waiting for a second admin), approved; shown as rejected when its approval was rejected. */
  status: string;
  created_by: string;
  approval_id: string | null;
  approved_by: string | null;
  approved_at: string | null;
  created_at: string;
}

// ---- Multi-host (issue 10, migration 0060) ---------------------------------------------------

/** A hypervisor host the scheduler may place on. JSON columns: aggregates, features (string[]), ratios. */
export interface HostsTable {
  name: string;
  zone: string;
  aggregates: string;
  features: string;
  vcpus: number;
  ram_mib: number;
  disk_gib: number;
  ratios: string;
  /** up | down (missed heartbeats) | disabled (by an admin). */
  state: string;
  /** The agent's last health report (JSON). */
  health: string;
  /** 1: this daemon's own machine (the in-process agent). */
  local: number;
  /** SHA-256 of the agent's client certificate (DER, hex); null for the local host. */
  cert_fingerprint: string | null;
  last_heartbeat: string | null;
  created_at: string;
  updated_at: string;
}

/** One claim per placed server: what it takes from its host. Deleted with the server. */
export interface PlacementsTable {
  server_id: string;
  host: string;
  vcpus: number;
  ram_mib: number;
  disk_gib: number;
  created_at: string;
}

/** A server's move between hosts (0090): Nova's os-migrations row, with its progress. */
export interface MigrationsTable {
  id: string;
  server_id: string;
  project_id: string;
  /** Nova's: live-migration, migration (cold). */
  migration_type: string;
  source_host: string;
  dest_host: string | null;
  /**
   * Nova's. Live: preparing, running, completed, error. Cold: pre-migrating,
   * migrating, post-migrating, finished (VERIFY_RESIZE), then confirmed or reverted; error.
   */
  status: string;
  memory_total_bytes: number;
  memory_processed_bytes: number;
  memory_remaining_bytes: number;
  disk_total_bytes: number;
  disk_processed_bytes: number;
  error: string | null;
  /** Cold migrations (0140): `active` or `stopped` before the move, what a revert restores. */
  old_vm_state: string | null;
  created_at: string;
  updated_at: string;
}

/** Cold migration and evacuation (issue 10, 0140): one `bulwark host evacuate` run. */
export interface HostEvacuationsTable {
  id: string;
  host: string;
  /** running, completed (every server moved), failed (some did not). */
  status: string;
  total: number;
  done: number;
  /** JSON: [{server_id, name, action, status, dest_host, error}]. */
  results: string;
  requested_by: string;
  created_at: string;
  updated_at: string;
}

/** A Nova server group. rules: JSON (e.g. {"max_server_per_host": 2}). */
export interface ServerGroupsTable {
  id: string;
  name: string;
  project_id: string;
  user_id: string;
  policy: string;
  rules: string;
  created_at: string;
}

export interface ServerGroupMembersTable {
  server_id: string;
  group_id: string;
  created_at: string;
}

/** A one-time agent join token (its SHA-256 only), for one host name, until it expires or is used. */
export interface HostJoinTokensTable {
  id: string;
  token_hash: string;
  host_name: string;
  created_by: string;
  expires_at: string;
  used_at: string | null;
  created_at: string;
}

// ---- compliance (issue 12; docs/compliance.md) ----

/** One evaluation of the control catalogue; `results` is the JSON array of CheckResult. */
export interface ComplianceRunsTable {
  id: string;
  created_at: string;
  created_by: string;
  created_by_name: string;
  passed: number;
  failed: number;
  not_applicable: number;
  results: string;
}

export interface Schema {
  compliance_runs: ComplianceRunsTable;
  hosts: HostsTable;
  placements: PlacementsTable;
  migrations: MigrationsTable;
  host_evacuations: HostEvacuationsTable;
  server_groups: ServerGroupsTable;
  server_group_members: ServerGroupMembersTable;
  host_join_tokens: HostJoinTokensTable;
  backup_repositories: BackupRepositoriesTable;
  backups: BackupsTable;
  dr_policies: DrPoliciesTable;
  dr_drills: DrDrillsTable;
  backup_schedules: BackupSchedulesTable;
  templates: TemplatesTable;
  snapshots: SnapshotsTable;
  snapshot_policies: SnapshotPoliciesTable;
  guest_agent_grants: GuestAgentGrantsTable;
  metadata_rules: MetadataRulesTable;
  server_changes: ServerChangesTable;
  approvals: ApprovalsTable;
  approval_triggers: ApprovalTriggersTable;
  siem_cursors: SiemCursorsTable;
  console_recordings: ConsoleRecordingsTable;
  quota_projects: QuotaProjectsTable;
  quota_limits: QuotaLimitsTable;
  rate_limit_events: RateLimitEventsTable;
  secrets: SecretsTable;
  volume_types: VolumeTypesTable;
  volume_encryption_types: VolumeEncryptionTypesTable;
  volumes: VolumesTable;
  volume_attachments: VolumeAttachmentsTable;
  networks: NetworksTable;
  subnets: SubnetsTable;
  ports: PortsTable;
  port_ips: PortIpsTable;
  security_groups: SecurityGroupsTable;
  security_group_rules: SecurityGroupRulesTable;
  port_security_groups: PortSecurityGroupsTable;
  zones: ZonesTable;
  zone_rules: ZoneRulesTable;
  routers: RoutersTable;
  router_interfaces: RouterInterfacesTable;
  images: ImagesTable;
  image_members: ImageMembersTable;
  flavors: FlavorsTable;
  servers: ServersTable;
  domains: DomainsTable;
  projects: ProjectsTable;
  users: UsersTable;
  roles: RolesTable;
  role_assignments: RoleAssignmentsTable;
  tokens: TokensTable;
  credentials: CredentialsTable;
  auth_receipts: AuthReceiptsTable;
  password_history: PasswordHistoryTable;
  application_credentials: ApplicationCredentialsTable;
  break_glass_accounts: BreakGlassAccountsTable;
  break_glass_reviews: BreakGlassReviewsTable;
  webauthn_credentials: WebauthnCredentialsTable;
  webauthn_challenges: WebauthnChallengesTable;
  recovery_codes: RecoveryCodesTable;
  audit_events: AuditEventsTable;
  audit_head: AuditHeadTable;
}

export type { Generated };
