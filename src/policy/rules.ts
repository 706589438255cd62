/**
 * The one policy table: every API action and who may perform it, in the
 * spirit of oslo.policy. A route that names an action missing here fails at
 * start-up, and an action with no rule is denied.
 *
 * Rule terms (any one suffices):
 * - `public`: no token needed.
 * - `authenticated`: any valid token.
 * - `admin`: the admin role on the cloud's admin project. The admin role on
 *   any other project is only a project role (it implies member), which
 *   closes OpenStack's "admin anywhere is admin everywhere" hole.
 * - `member` / `reader`: that role (or one implying it) on the target's project.
 * - `self`: the target user is the caller.
 * - `backup-operator`: that role on the target's project (it implies reader only): may create
 *   backups, never restore or delete them (docs/backups.md).
 */
export const RULE_TERMS = [
  'public',
  'authenticated',
  'admin',
  'member',
  'reader',
  'self',
  'backup-operator',
] as const;
export type RuleTerm = (typeof RULE_TERMS)[number];

export const POLICY = {
  // Identity (Keystone v3)
  'identity:version': ['public'],
  'identity:issue_token': ['public'],
  'identity:validate_token': ['admin', 'self'],
  'identity:revoke_token': ['admin', 'self'],
  'identity:list_auth_projects': ['authenticated'],
  'identity:get_auth_catalog': ['authenticated'],
  'identity:list_domains': ['admin'],
  'identity:get_domain': ['admin'],
  'identity:create_domain': ['admin'],
  'identity:update_domain': ['admin'],
  'identity:delete_domain': ['admin'],
  'identity:list_projects': ['admin'],
  'identity:get_project': ['admin', 'reader'],
  'identity:create_project': ['admin'],
  'identity:update_project': ['admin'],
  'identity:delete_project': ['admin'],
  // `self`: a user may look themselves up by name (the CLI resolves names so), see docs/identity.md.
  'identity:list_users': ['admin', 'self'],
  'identity:get_user': ['admin', 'self'],
  'identity:create_user': ['admin'],
  // `self`: only the caller's own MFA options (the handler refuses any other field).
  'identity:update_user': ['admin', 'self'],
  'identity:delete_user': ['admin'],
  'identity:change_password': ['self'],
  'identity:list_user_projects': ['admin', 'self'],
  'identity:list_roles': ['admin', 'reader'],
  'identity:get_role': ['admin', 'reader'],
  'identity:create_role': ['admin'],
  'identity:delete_role': ['admin'],
  'identity:check_grant': ['admin'],
  'identity:create_grant': ['admin'],
  'identity:revoke_grant': ['admin'],
  'identity:list_role_assignments': ['admin', 'self'],

  // Compute (Nova v2.1)
  'compute:version': ['public'],
  'compute:flavors:list': ['admin', 'reader'],
  'compute:flavors:show': ['admin', 'reader'],
  'compute:flavors:create': ['admin'],
  'compute:flavors:delete': ['admin'],
  'compute:flavors:extra_specs:index': ['admin', 'reader'],
  'compute:flavors:extra_specs:show': ['admin', 'reader'],
  'compute:flavors:extra_specs:create': ['admin'],
  'compute:flavors:extra_specs:update': ['admin'],
  'compute:flavors:extra_specs:delete': ['admin'],
  'compute:servers:index': ['admin', 'reader'],
  'compute:servers:show': ['admin', 'reader'],
  'compute:servers:create': ['admin', 'member'],
  'compute:servers:delete': ['admin', 'member'],
  'compute:servers:action': ['admin', 'member'],
  'compute:servers:metadata:index': ['admin', 'reader'],
  'compute:servers:metadata:update': ['admin', 'member'],
  'compute:servers:metadata:delete': ['admin', 'member'],
  // Incident response is the cloud admin's alone: quarantining, reading the evidence record, lifting.
  'compute:servers:quarantine:create': ['admin'],
  'compute:servers:quarantine:show': ['admin'],
  'compute:servers:quarantine:delete': ['admin'],
  'compute:os-security-groups:list': ['admin', 'reader'],
  'compute:os-security-groups:show': ['admin', 'reader'],

  // Image (Glance v2)
  'image:version': ['public'],
  'image:get_images': ['admin', 'reader'],
  'image:get_image': ['admin', 'reader'],
  'image:add_image': ['admin', 'member'],
  'image:modify_image': ['admin', 'member'],
  'image:delete_image': ['admin', 'member'],
  'image:upload_image': ['admin', 'member'],
  'image:download_image': ['admin', 'reader'],

  // Network (Neutron v2.0)
  'network:version': ['public'],
  'network:extensions': ['authenticated'],
  'network:get_network': ['admin', 'reader'],
  'network:create_network': ['admin', 'member'],
  'network:update_network': ['admin', 'member'],
  'network:delete_network': ['admin', 'member'],
  'network:get_subnet': ['admin', 'reader'],
  'network:create_subnet': ['admin', 'member'],
  'network:delete_subnet': ['admin', 'member'],
  'network:get_port': ['admin', 'reader'],
  'network:create_port': ['admin', 'member'],
  'network:update_port': ['admin', 'member'],
  'network:delete_port': ['admin', 'member'],
  'network:get_security_group': ['admin', 'reader'],
  'network:create_security_group': ['admin', 'member'],
  'network:update_security_group': ['admin', 'member'],
  'network:delete_security_group': ['admin', 'member'],
  'network:get_security_group_rule': ['admin', 'reader'],
  'network:create_security_group_rule': ['admin', 'member'],
  'network:delete_security_group_rule': ['admin', 'member'],
  // Security zones (Bulwark extension under the network endpoint): anyone may read the policy, only admins change it.
  'network:get_zone': ['authenticated'],
  'network:create_zone': ['admin'],
  'network:update_zone': ['admin'],
  'network:delete_zone': ['admin'],
  'network:get_zone_rule': ['authenticated'],
  'network:create_zone_rule': ['admin'],
  'network:delete_zone_rule': ['admin'],
  'network:get_router': ['admin', 'reader'],
  'network:create_router': ['admin', 'member'],
  'network:update_router': ['admin', 'member'],
  'network:delete_router': ['admin', 'member'],
  'network:add_router_interface': ['admin', 'member'],
  'network:remove_router_interface': ['admin', 'member'],

  // Key manager (Barbican v1). Secrets belong to one project: there is no cloud-admin read of another
  // project's secrets (the handler answers 404). Readers list and see metadata; only members (and
  // roles implying member) read a payload or write. KEK rotation is the cloud admin's alone.
  'key-manager:version': ['public'],
  'secrets:get': ['reader'],
  'secrets:post': ['member'],
  'secret:get': ['reader'],
  'secret:decrypt': ['member'],
  'secret:delete': ['member'],
  'key-manager:rotate_kek': ['admin'],

  // Block storage (Cinder v3) and Nova's volume attachments: types and encryption specs are the cloud admin's.
  'volume:version': ['public'],
  'volume:types:list': ['admin', 'reader'],
  'volume:types:show': ['admin', 'reader'],
  'volume:types:create': ['admin'],
  'volume:types:update': ['admin'],
  'volume:types:delete': ['admin'],
  'volume:encryption:show': ['admin', 'reader'],
  'volume:encryption:create': ['admin'],
  'volume:encryption:update': ['admin'],
  'volume:encryption:delete': ['admin'],
  'volume:volumes:list': ['admin', 'reader'],
  'volume:volumes:show': ['admin', 'reader'],
  'volume:volumes:create': ['admin', 'member'],
  'volume:volumes:update': ['admin', 'member'],
  'volume:volumes:delete': ['admin', 'member'],
  'volume:volumes:extend': ['admin', 'member'],
  'compute:servers:volume_attachments:list': ['admin', 'reader'],
  'compute:servers:volume_attachments:show': ['admin', 'reader'],
  'compute:servers:volume_attachments:create': ['admin', 'member'],
  'compute:servers:volume_attachments:delete': ['admin', 'member'],

  // Quotas (docs/quotas.md), Nova/Cinder/Neutron style: the cloud admin sets them; a project reads its own.
  'compute:os-quota-sets:show': ['admin', 'reader'],
  'compute:os-quota-sets:update': ['admin'],
  'compute:os-quota-sets:delete': ['admin'],
  'compute:limits': ['admin', 'reader'],
  'volume:quotas:show': ['admin', 'reader'],
  'volume:quotas:update': ['admin'],
  'volume:quotas:delete': ['admin'],
  'volume:limits': ['admin', 'reader'],
  'network:get_quota': ['admin', 'reader'],
  'network:update_quota': ['admin'],
  'network:delete_quota': ['admin'],

  // Backups (docs/backups.md). Creating a backup is its own grant (the backup-operator role, or admin);
  // members alone cannot. Restore and delete are the cloud admin's alone; so is everything touching
  // the repository and its recovery key.
  'volume:backups:list': ['admin', 'reader'],
  'volume:backups:show': ['admin', 'reader'],
  'volume:backups:create': ['admin', 'backup-operator'],
  'volume:backups:delete': ['admin'],
  'volume:backups:restore': ['admin'],
  'backup:repository:show': ['admin'],
  'backup:repository:init': ['admin'],
  'backup:repository:unlock': ['admin'],
  'backup:repository:lock': ['admin'],
  'backup:verify': ['admin', 'backup-operator'],
  // Schedules (run as the bulwark-backup identity) are set by the cloud admin; the project reads them.
  'backup:schedules:list': ['admin', 'reader'],
  'backup:schedules:create': ['admin'],
  'backup:schedules:delete': ['admin'],
  // Whole-server backups (docs/backups.md): the same grants as volume backups; restore is admin-only.
  'server:backups:create': ['admin', 'backup-operator'],
  'server:backups:list': ['admin', 'reader'],
  'server:backups:show': ['admin', 'reader'],
  'server:backups:restore': ['admin'],
  // DR drills (docs/dr.md): admins set targets and run drills (they restore backups); the project reads.
  'dr:targets:list': ['admin', 'reader'],
  'dr:targets:set': ['admin'],
  'dr:targets:delete': ['admin'],
  'dr:drills:create': ['admin'],
  'dr:drills:list': ['admin', 'reader'],
  'dr:drills:show': ['admin', 'reader'],
  // Snapshots (docs/snapshots.md): Cinder volume snapshots and Bulwark server snapshots, members write
  // in their own project. Lifecycle policies: a project's is the cloud admin's; a server's or volume's
  // is its members' and can only tighten the project's (snapshots/lifecycle.ts).
  'volume:snapshots:list': ['admin', 'reader'],
  'volume:snapshots:show': ['admin', 'reader'],
  'volume:snapshots:create': ['admin', 'member'],
  'volume:snapshots:delete': ['admin', 'member'],
  'snapshot:list': ['admin', 'reader'],
  'snapshot:show': ['admin', 'reader'],
  'snapshot:server:create': ['admin', 'member'],
  'snapshot:delete': ['admin', 'member'],
  'snapshot:policy:show': ['admin', 'reader'],
  'snapshot:policy:project:update': ['admin'],
  'snapshot:policy:project:delete': ['admin'],
  'snapshot:policy:resource:update': ['admin', 'member'],
  'snapshot:policy:resource:delete': ['admin', 'member'],
  // Templates (docs/templates.md): only cloud admins make template versions (a second admin approves
  // through the approvals API); anyone with a token sees what templates exist.
  'template:create': ['admin'],
  'template:list': ['authenticated'],
  'template:show': ['authenticated'],
  // Server groups and hosts (issue 10, docs/multi-host.md): Nova's defaults; hosts and join tokens are admin only.
  'compute:os-server-groups:index': ['admin', 'reader'],
  'compute:os-server-groups:show': ['admin', 'reader'],
  'compute:os-server-groups:create': ['admin', 'member'],
  'compute:os-server-groups:delete': ['admin', 'member'],
  'bulwark:hosts:list': ['admin'],
  'bulwark:hosts:update': ['admin'],
  'bulwark:hosts:join_token:create': ['admin'],
  // The one-time join token in the body is the credential (compute/host-enrollment.ts).
  'bulwark:agent:join': ['public'],
  // Clones (docs/clones.md): a member asks for a clone of their project's server; it is held for a
  // second admin (approval kind server-clone), who can never be the requester.
  'server:clone': ['admin', 'member'],

  // Bulwark extensions
  'bulwark:version': ['public'],
  'bulwark:openapi': ['public'],
  'audit:list': ['admin'],
  'audit:verify': ['admin'],

  // Governance (issue 7, docs/approvals.md): a project sees its own approvals; only a cloud admin decides,
  // and never one they asked for (checked in governance/approvals.ts). Triggers are the cloud admin's.
  'approval:list': ['admin', 'reader'],
  'approval:show': ['admin', 'reader'],
  'approval:approve': ['admin'],
  'approval:reject': ['admin'],
  'approval:triggers:list': ['authenticated'],
  'approval:triggers:update': ['admin'],
  // VM metadata (docs/metadata.md): a project reads its servers' change history; the cloud admin sets the rules.
  'server:history': ['admin', 'reader'],
  'metadata_rule:list': ['authenticated'],
  'metadata_rule:create': ['admin'],
  'metadata_rule:delete': ['admin'],
  // Storage pools' usage and thresholds (docs/storage-thresholds.md) describe the host: the cloud admin's.
  'storage:pools:list': ['admin'],
  // The guest agent (docs/passthrough-and-agent.md): members send commands through the filter (read-only
  // monitoring unless granted); only the cloud admin grants guest-exec/guest-file-* per server.
  'server:guest_agent:execute': ['admin', 'member'],
  'server:guest_agent:grants:list': ['admin', 'reader'],
  'server:guest_agent:grants:create': ['admin'],
  'server:guest_agent:grants:delete': ['admin'],
  // Host PCI/USB device passthrough (guide 11): the cloud admin's alone (DMA reaches host memory).
  'server:host_devices:show': ['admin'],
  'server:host_devices:attach': ['admin'],
  'server:host_devices:detach': ['admin'],
  // Identity hardening (issue 8, docs/identity.md): Keystone credentials (TOTP secrets) are their owner's.
  'identity:create_credential': ['admin', 'self'],
  'identity:list_credentials': ['authenticated'],
  'identity:get_credential': ['admin', 'self'],
  'identity:delete_credential': ['admin', 'self'],
  // Application credentials are made by their owner alone (Keystone), for the token's project.
  'identity:create_application_credential': ['self'],
  'identity:list_application_credentials': ['admin', 'self'],
  'identity:get_application_credential': ['admin', 'self'],
  'identity:delete_application_credential': ['admin', 'self'],
  // Break-glass (guide 16): opening a session is a login (public; the sealed secret and a reason decide);
  // accounts and reviews are the cloud admin's.
  'break_glass:create_account': ['admin'],
  'break_glass:list_accounts': ['admin'],
  'break_glass:delete_account': ['admin'],
  'break_glass:open_session': ['public'],
  'break_glass:list_reviews': ['admin'],
  'break_glass:get_review': ['admin'],
  'break_glass:close_review': ['admin'],
  // The access review reads every user's roles and credentials: the cloud admin's alone.
  'access_review:get': ['admin'],
  // Security keys and recovery codes are each user's own (handlers act on the caller only); their logins
  // are public, like Keystone's token API. The sign-in page is static.
  'webauthn:registration_options': ['authenticated'],
  'webauthn:register': ['authenticated'],
  'webauthn:list': ['authenticated'],
  'webauthn:delete': ['authenticated'],
  'webauthn:login_options': ['public'],
  'webauthn:login': ['public'],
  'recovery_codes:generate': ['authenticated'],
  'recovery_codes:status': ['authenticated'],
  'recovery_codes:login': ['public'],
  'dashboard:webauthn_page': ['public'],
  // Serial consoles and their recordings (docs/console.md): members open consoles of their project's
  // servers (the service refuses quarantined ones); only the cloud admin lists or replays recordings.
  'console:connect': ['admin', 'member'],
  'console:recordings:list': ['admin'],
  'console:recordings:show': ['admin'],
  'console:recordings:replay': ['admin'],
  // Prometheus metrics on the API listener: the cloud admin's token (`serve --metrics-listen` is the other way).
  'metrics:read': ['admin'],

  // Compliance (docs/compliance.md): the catalogue, runs of its live checks and their reports; cloud admins only,
  // since the evidence names every project's resources.
  'compliance:controls:list': ['admin'],
  'compliance:runs:create': ['admin'],
  'compliance:runs:list': ['admin'],
  'compliance:runs:show': ['admin'],
  'compliance:runs:report': ['admin'],

  // Web dashboard (docs/dashboard.md): the page and its login are public; the page then calls the
  // APIs above under their own rules. A session is the caller's own token.
  'dashboard:page': ['public'],
  'dashboard:session:create': ['public'],
  'dashboard:session:show': ['authenticated'],
  'dashboard:session:delete': ['authenticated'],

  // VM profiles (issue 12 item 5, docs/profiles.md): members import profiles as servers of their project
  // and export their project's servers (another project's: 404); letting an import create a flavor is
  // the cloud admin's (checked in compute/profiles.ts).
  'profile:import': ['admin', 'member'],
  'profile:export': ['admin', 'member'],

  // Dashboard consoles (docs/dashboard.md): a browser WebSocket cannot carry the CSRF header, so the
  // page first trades its CSRF-checked session for a single-use ticket to one server's console.
  'console:ticket': ['admin', 'member'],

  // Live migration between hosts (issue 10, docs/multi-host.md): Nova's defaults, admin only.
  'compute:servers:migrate_live': ['admin'],
  'compute:os-migrations:index': ['admin'],
  'compute:servers:migrations:index': ['admin'],

  // Cold migration and host evacuation (issue 10, docs/multi-host.md): Nova's defaults (migrate admin;
  // confirming or reverting a resize the project's member), evacuation admin only.
  'compute:servers:migrate': ['admin'],
  'compute:servers:confirm_resize': ['admin', 'member'],
  'compute:servers:revert_resize': ['admin', 'member'],
  'bulwark:hosts:evacuate': ['admin'],
  'bulwark:evacuations:show': ['admin'],

  // Whole-server backup schedules (issue 6, docs/backups.md): as volume schedules, the cloud admin
  // sets them (they run as bulwark-backup) and the project reads its own.
  'server:backups:schedules:list': ['admin', 'reader'],
  'server:backups:schedules:create': ['admin'],
  'server:backups:schedules:delete': ['admin'],

  // Other users' second factors (issue 11 gap, docs/identity.md): the cloud admin lists them (never a
  // secret) and revokes one, e.g. a lost key; users manage their own through the routes above.
  'identity:mfa_devices:list': ['admin'],
  'identity:mfa_devices:revoke': ['admin'],
} as const satisfies Record<string, readonly RuleTerm[]>;

export type Action = keyof typeof POLICY;

/**
 * What a token from a restricted application credential may not do (Keystone:
 * it cannot make credentials): anything that would let automation outlive or
 * widen the credential it was given.
 */
export const APP_CRED_REFUSED_ACTIONS: ReadonlySet<Action> = new Set<Action>([
  'identity:create_application_credential',
  'identity:delete_application_credential',
  'identity:create_credential',
  'identity:delete_credential',
  'identity:change_password',
  'identity:update_user',
  'webauthn:registration_options',
  'webauthn:register',
  'webauthn:delete',
  'recovery_codes:generate',
]);

/**
 * What an admin-scoped token without a second factor may still do while
 * admins must use MFA: look itself up and enroll or manage its own factors
 * (each action's own rule still applies), nothing else.
 */
export const MFA_ENROLLMENT_ACTIONS: ReadonlySet<Action> = new Set<Action>([
  'identity:version',
  'identity:issue_token',
  'identity:validate_token',
  'identity:revoke_token',
  'identity:list_auth_projects',
  'identity:get_auth_catalog',
  'identity:get_user',
  'identity:list_users',
  'identity:update_user',
  'identity:change_password',
  'identity:create_credential',
  'identity:list_credentials',
  'identity:get_credential',
  'identity:delete_credential',
  'webauthn:registration_options',
  'webauthn:register',
  'webauthn:list',
  'recovery_codes:generate',
  'recovery_codes:status',
  // The dashboard's restricted session: it can load the page's own session and log out, so the
  // bootstrap admin can enroll a factor in the browser (docs/dashboard.md).
  'dashboard:session:show',
  'dashboard:session:delete',
]);

export const isAction = (s: string): s is Action => Object.hasOwn(POLICY, s);
