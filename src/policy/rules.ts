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
 */
export const RULE_TERMS = ['public', 'authenticated', 'admin', 'member', 'reader', 'self'] as const;
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
  'identity:list_users': ['admin'],
  'identity:get_user': ['admin', 'self'],
  'identity:create_user': ['admin'],
  'identity:update_user': ['admin'],
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

  // Bulwark extensions
  'bulwark:version': ['public'],
  'bulwark:openapi': ['public'],
  'audit:list': ['admin'],
  'audit:verify': ['admin'],
} as const satisfies Record<string, readonly RuleTerm[]>;

export type Action = keyof typeof POLICY;

export const isAction = (s: string): s is Action => Object.hasOwn(POLICY, s);
