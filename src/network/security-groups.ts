import type { Selectable } from 'kysely';
import { badRequest, conflict, notFound } from '../errors.js';
import type { AuthContext } from '../policy/context.js';
import { type QuotaGate, withQuota } from '../quotas/service.js';
import type { Store } from '../store/database.js';
import type { SecurityGroupRulesTable, SecurityGroupsTable } from '../store/schema.js';
import { nowIso, uuid } from '../util/ids.js';
import { normaliseRule, type RuleInput, ruleKey } from './model.js';
import { type DataplaneSync, isUniqueViolation, syncGroups } from './networks.js';

export type SecurityGroup = Selectable<SecurityGroupsTable>;
export type SecurityGroupRule = Selectable<SecurityGroupRulesTable>;

export interface SecurityGroupOptions {
  /** Neutron's default template also lets members of `default` reach each other; the spec says block all ingress. */
  defaultAllowsSameGroup: boolean;
}

/**
 * Neutron security groups: allow-only, stateful by default, the union of a
 * port's groups. Every project has exactly one `default` group, created on
 * first use, which allows all egress and (per the spec) no ingress.
 */
export class SecurityGroupService {
  constructor(
    private readonly store: Store,
    private readonly dataplane: DataplaneSync,
    private readonly options: SecurityGroupOptions,
  ) {}

  /** Quotas (src/quotas); null: none enforced. Set by platform.ts. */
  quotas: QuotaGate | null = null;

  private get db() {
    return this.store.db;
  }

  /** The project's `default` group, created with its rules on first use (race-safe). */
  async ensureDefault(projectId: string): Promise<SecurityGroup> {
    const existing = await this.db
      .selectFrom('security_groups')
      .selectAll()
      .where('project_id', '=', projectId)
      .where('name', '=', 'default')
      .executeTakeFirst();
    if (existing) return existing;
    const now = nowIso();
    const group: SecurityGroup = {
      id: uuid(),
      name: 'default',
      project_id: projectId,
      description: 'Default security group',
      stateful: 1,
      created_at: now,
      updated_at: now,
    };
    try {
      await this.db.transaction().execute(async (tx) => {
        await tx.insertInto('security_groups').values(group).execute();
        const rules: RuleInput[] = [
          { direction: 'egress', ethertype: 'IPv4' },
          { direction: 'egress', ethertype: 'IPv6' },
          ...(this.options.defaultAllowsSameGroup
            ? ([
                { direction: 'ingress', ethertype: 'IPv4', remote_group_id: group.id },
                { direction: 'ingress', ethertype: 'IPv6', remote_group_id: group.id },
              ] as RuleInput[])
            : []),
        ];
        for (const r of rules)
          await tx
            .insertInto('security_group_rules')
            .values(this.ruleRow(group, normaliseRule(r), ''))
            .execute();
      });
      return group;
    } catch (err) {
      if (!isUniqueViolation(err)) throw err;
      return this.ensureDefault(projectId); // another request created it first
    }
  }

  private ruleRow(
    group: SecurityGroup,
    rule: ReturnType<typeof normaliseRule>,
    description: string,
  ): SecurityGroupRule {
    return {
      id: uuid(),
      security_group_id: group.id,
      project_id: group.project_id,
      direction: rule.direction,
      ethertype: rule.ethertype,
      protocol: rule.protocol,
      port_range_min: rule.portRangeMin,
      port_range_max: rule.portRangeMax,
      remote_ip_prefix: rule.remoteIpPrefix,
      remote_group_id: rule.remoteGroupId,
      description,
      rule_key: ruleKey(rule),
      created_at: nowIso(),
    };
  }

  async list(auth: AuthContext, filter: { name?: string | undefined; projectId?: string | undefined }) {
    if (auth.projectId) await this.ensureDefault(auth.projectId);
    let q = this.db.selectFrom('security_groups').selectAll().orderBy('created_at');
    if (!auth.isAdmin) q = q.where('project_id', '=', auth.projectId ?? '');
    else if (filter.projectId) q = q.where('project_id', '=', filter.projectId);
    if (filter.name !== undefined) q = q.where('name', '=', filter.name);
    return q.execute();
  }

  async get(auth: AuthContext, id: string): Promise<SecurityGroup> {
    let q = this.db.selectFrom('security_groups').selectAll().where('id', '=', id);
    if (!auth.isAdmin) q = q.where('project_id', '=', auth.projectId ?? '');
    const g = await q.executeTakeFirst();
    if (!g) throw notFound('security group', id);
    return g;
  }

  rules(groupIds: readonly string[]) {
    if (groupIds.length === 0) return Promise.resolve([] as SecurityGroupRule[]);
    return this.db
      .selectFrom('security_group_rules')
      .selectAll()
      .where('security_group_id', 'in', groupIds)
      .orderBy('created_at')
      .execute();
  }

  async create(
    auth: AuthContext,
    input: { name: string; description?: string | undefined; stateful?: boolean | undefined },
  ): Promise<SecurityGroup> {
    if (!auth.projectId) throw badRequest('A project-scoped token is needed to create a security group.');
    if (input.name === 'default') {
      await this.ensureDefault(auth.projectId);
      throw conflict('Default security group already exists.');
    }
    const now = nowIso();
    const group: SecurityGroup = {
      id: uuid(),
      name: input.name,
      project_id: auth.projectId,
      description: input.description ?? '',
      stateful: input.stateful === false ? 0 : 1,
      created_at: now,
      updated_at: now,
    };
    // Quota (src/quotas): the group and its two egress rules count, checked in the inserting transaction.
    await withQuota(
      this.quotas,
      this.db,
      { projectId: auth.projectId },
      { security_groups: 1, security_group_rules: 2 },
      'neutron',
      async (tx) => {
        await tx.insertInto('security_groups').values(group).execute();
        // Neutron's template: a new group may send anywhere, and receives nothing until a rule says so.
        for (const ethertype of ['IPv4', 'IPv6'] as const) {
          await tx
            .insertInto('security_group_rules')
            .values(this.ruleRow(group, normaliseRule({ direction: 'egress', ethertype }), ''))
            .execute();
        }
      },
    );
    return group;
  }

  async update(
    auth: AuthContext,
    id: string,
    patch: { name?: string | undefined; description?: string | undefined; stateful?: boolean | undefined },
  ) {
    const g = await this.get(auth, id);
    if (g.name === 'default' && patch.name !== undefined && patch.name !== 'default')
      throw conflict('The default security group cannot be renamed.');
    if (patch.name === 'default' && g.name !== 'default')
      throw conflict('Only one security group per project may be named default.');
    if (patch.stateful !== undefined && (patch.stateful ? 1 : 0) !== g.stateful && (await this.inUse(id))) {
      throw conflict(
        `Security group ${id} is in use; its statefulness can change only while no port uses it.`,
      );
    }
    await this.db
      .updateTable('security_groups')
      .set({
        ...(patch.name !== undefined ? { name: patch.name } : {}),
        ...(patch.description !== undefined ? { description: patch.description } : {}),
        ...(patch.stateful !== undefined ? { stateful: patch.stateful ? 1 : 0 } : {}),
        updated_at: nowIso(),
      })
      .where('id', '=', id)
      .execute();
    return this.get(auth, id);
  }

  private async inUse(id: string): Promise<boolean> {
    return (
      (await this.db
        .selectFrom('port_security_groups')
        .select('port_id')
        .where('security_group_id', '=', id)
        .executeTakeFirst()) !== undefined
    );
  }

  async delete(auth: AuthContext, id: string) {
    const g = await this.get(auth, id);
    if (g.name === 'default' && !auth.isAdmin) throw conflict('Removing default security group not allowed.');
    if (await this.inUse(id)) throw conflict(`Security Group ${id} in use.`);
    const referenced = await this.db
      .selectFrom('security_group_rules')
      .select('id')
      .where('remote_group_id', '=', id)
      .where('security_group_id', '!=', id)
      .executeTakeFirst();
    if (referenced)
      throw conflict(
        `Security group ${id} is the remote group of a rule in another group; delete that rule first.`,
      );
    await this.db.deleteFrom('security_groups').where('id', '=', id).execute();
    // Its chain and sets leave the kernel too (in place: no port used it).
    await syncGroups(this.dataplane, [id], `security group ${id} deleted`);
  }

  async getRule(auth: AuthContext, id: string): Promise<SecurityGroupRule> {
    let q = this.db.selectFrom('security_group_rules').selectAll().where('id', '=', id);
    if (!auth.isAdmin) q = q.where('project_id', '=', auth.projectId ?? '');
    const r = await q.executeTakeFirst();
    if (!r) throw notFound('security group rule', id);
    return r;
  }

  async listRules(auth: AuthContext, filter: { groupId?: string | undefined }) {
    let q = this.db.selectFrom('security_group_rules').selectAll().orderBy('created_at');
    if (!auth.isAdmin) q = q.where('project_id', '=', auth.projectId ?? '');
    if (filter.groupId !== undefined) q = q.where('security_group_id', '=', filter.groupId);
    return q.execute();
  }

  async createRule(
    auth: AuthContext,
    groupId: string,
    input: RuleInput & { description?: string | undefined },
  ): Promise<SecurityGroupRule> {
    const group = await this.get(auth, groupId);
    const rule = normaliseRule(input);
    // A remote group must be one the caller can see: no referencing another tenant's group.
    if (rule.remoteGroupId !== null)
      await this.get(auth, rule.remoteGroupId).catch(() => {
        throw notFound('security group', rule.remoteGroupId ?? '');
      });
    const row = this.ruleRow(group, rule, input.description ?? '');
    try {
      await withQuota(
        this.quotas,
        this.db,
        { projectId: group.project_id },
        { security_group_rules: 1 },
        'neutron',
        (tx) => tx.insertInto('security_group_rules').values(row).execute(),
      );
    } catch (err) {
      if (isUniqueViolation(err))
        throw conflict(
          `Security group rule already exists. Rule id is ${(await this.db.selectFrom('security_group_rules').select('id').where('security_group_id', '=', group.id).where('rule_key', '=', row.rule_key).executeTakeFirst())?.id ?? '?'}.`,
        );
      throw err;
    }
    await syncGroups(this.dataplane, [group.id], `rule added to ${group.id}`);
    return row;
  }

  async deleteRule(auth: AuthContext, id: string) {
    const r = await this.getRule(auth, id);
    await this.db.deleteFrom('security_group_rules').where('id', '=', r.id).execute();
    await syncGroups(this.dataplane, [r.security_group_id], `rule removed from ${r.security_group_id}`);
  }

  /** The groups a new or changed port gets: the caller's, or the project's `default`; no mixing stateful and stateless. */
  async resolveForPort(auth: AuthContext, ids: string[] | undefined): Promise<string[]> {
    const groups =
      ids === undefined
        ? [await this.ensureDefault(auth.projectId ?? '')]
        : await Promise.all(ids.map((id) => this.get(auth, id)));
    if (new Set(groups.map((g) => g.stateful)).size > 1) {
      throw conflict('A port may not mix stateful and stateless security groups.');
    }
    return groups.map((g) => g.id);
  }

  /** Looks a group up by id or unique name within the caller's project (Nova's addSecurityGroup passes names). */
  async findByNameOrId(auth: AuthContext, ref: string): Promise<SecurityGroup> {
    const byId = await this.get(auth, ref).catch(() => undefined);
    if (byId) return byId;
    const named = (await this.list(auth, { name: ref })).filter(
      (g) => g.project_id === auth.projectId || auth.isAdmin,
    );
    if (named.length === 1 && named[0]) return named[0];
    if (named.length > 1) throw conflict(`More than one security group is named ${ref}; use its id.`);
    throw notFound('security group', ref);
  }
}
