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

export interface Schema {
  hosts: HostsTable;
  placements: PlacementsTable;
  server_groups: ServerGroupsTable;
  server_group_members: ServerGroupMembersTable;
  host_join_tokens: HostJoinTokensTable;
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
  audit_events: AuditEventsTable;
  audit_head: AuditHeadTable;
}

export type { Generated };
