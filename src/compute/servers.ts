import { createHash } from 'node:crypto';
import type { Kysely, Selectable } from 'kysely';
import { type AuditWriter, systemEvent } from '../audit/writer.js';
import { BulwarkError, badRequest, conflict, notFound } from '../errors.js';
import type { ApprovalService } from '../governance/approvals.js';
import type { MetadataRuleService } from '../governance/metadata-rules.js';
import type { ServerHistory } from '../governance/server-history.js';
import {
  checkUserMetadata,
  type Diff,
  isPlatformKey,
  mapDiff,
  platformPart,
} from '../governance/server-metadata.js';
import type { StorageGate } from '../governance/storage-thresholds.js';
import type { GuestSpec, GuestState, HypervisorDriver } from '../host/hypervisor.js';
import type { MigrationProgress } from '../host/live-migration.js';
import type { KeyService } from '../keys/contract.js';
import type { RequestedNic, ServerPorts } from '../network/server-ports.js';
import type { AuthContext } from '../policy/context.js';
import { type QuotaGate, withQuota } from '../quotas/service.js';
import type { Store } from '../store/database.js';
import type { Schema, ServersTable } from '../store/schema.js';
import { nowIso, uuid } from '../util/ids.js';
import { TaskTracker } from '../util/tasks.js';
import { extraSpecsOf, type FlavorService } from './flavors.js';
import { type ImageService, propertiesOf } from './images.js';
import type { PassthroughPlan } from './passthrough-policy.js';
import { claimMove, claimPlacement, releasePlacement } from './placement.js';
import { type GuestPlan, type HostCapabilities, resolveGuestPlan } from './properties.js';
import { NO_VALID_HOST } from './scheduler/index.js';
import type { ServerGroupService } from './server-groups.js';
import { POWER, type ServerAction, STATUS_OF, TRANSITIONS, type VmState } from './server-states.js';
import {
  DEFAULT_VTPM_RESTARTS,
  decideVtpmRecovery,
  isVtpmLostFault,
  restartsUsed,
  VTPM_AUDIT,
  VTPM_RESTART_DELAY_MS,
  VTPM_RESTART_WINDOW_MS,
} from './vtpm-recovery.js';

export type Server = Selectable<ServersTable>;

/** The columns the API's server views read: a list selects these and nothing else. */
export const SERVER_VIEW_COLUMNS = [
  'id',
  'name',
  'project_id',
  'user_id',
  'image_id',
  'flavor',
  'status',
  'task_state',
  'power_state',
  'vm_state',
  'host',
  'fault',
  'metadata',
  'key_name',
  'created_at',
  'updated_at',
  'launched_at',
  'quarantine',
  'deleted_at',
] as const;
export type ServerRow = Pick<Server, (typeof SERVER_VIEW_COLUMNS)[number]>;

export interface ServerListFilter {
  allProjects?: boolean;
  name?: string | undefined;
  status?: string | undefined;
  projectId?: string | undefined;
  limit?: number | undefined;
  /** The id of the last server of the page before. */
  marker?: string | undefined;
}

export interface CreateServerInput {
  name: string;
  imageRef: string;
  flavorRef: string;
  metadata: Record<string, string>;
  hints: Record<string, unknown>;
  /** base64 user data, delivered to the guest over QEMU fw_cfg. */
  userData: string | undefined;
  networks: 'none' | 'auto' | RequestedNic[] | undefined;
  /** Security group names or ids for the server's new ports (default: the project's `default`). */
  securityGroups: string[] | undefined;
}

/** A limit on server creations (`governance/rate-limits.ts`): checks and counts, then runs the insert. */
export interface CreateLimit {
  within<T>(subject: string, work: (db: Kysely<Schema>) => Promise<T>): Promise<T>;
}
type CreateGate = (userId: string, insert: (db: Kysely<Schema>) => Promise<unknown>) => Promise<unknown>;

/** What the server row's `guest` column holds: everything needed to (re)start it. */
interface StoredGuest {
  plan: GuestPlan;
  imagePath: string;
  imageFormat: 'raw' | 'qcow2';
  userData: string | null;
}

/** What a guest plan makes of a guest: machine, firmware, limits (cgroup, throttle), CPU features, vTPM. */
export const planSpec = (
  plan: GuestPlan,
): Pick<GuestSpec, 'machine' | 'firmware' | 'cpu' | 'io' | 'memoryMaxMiB' | 'tpm'> => ({
  machine: plan.machine,
  firmware: plan.firmware,
  cpu: plan.cpu,
  io: plan.io,
  ...(plan.memoryMaxMiB !== undefined ? { memoryMaxMiB: plan.memoryMaxMiB } : {}),
  ...(plan.tpm ? { tpm: { version: plan.tpm.version, model: plan.tpm.model } } : {}),
});

/** What moves a running guest between hosts (host/agent/hub.ts implements it). */
export interface LiveMigrator {
  /** Whether `host` can take part (an agent host whose channel is open). */
  canHost(host: string): boolean;
  live(o: {
    serverId: string;
    spec: GuestSpec;
    from: string;
    to: string;
    onProgress: (p: MigrationProgress) => Promise<void>;
  }): Promise<void>;
  /** After the server's record names its new host: the old host lets go of what was its (its firewall rules). */
  moved(from: string): Promise<void>;
}

/** The host features a guest plan needs (the scheduler's FeatureFilter). */
export const featuresOf = (plan: GuestPlan): string[] => [
  ...(plan.firmware.type === 'uefi' ? ['uefi'] : []),
  ...(plan.firmware.type === 'uefi' && plan.firmware.secureBoot ? ['secure-boot'] : []),
  ...(plan.tpm ? ['tpm'] : []),
];

/** Fault messages the user can act on, by what went wrong. */
const faultOf = (err: unknown) => ({
  code: err instanceof BulwarkError ? err.status : 500,
  message:
    err instanceof BulwarkError
      ? err.message
      : 'The guest could not be started; see the console log and the daemon log.',
  created: nowIso(),
});

/**
 * Nova-compatible servers. Decides what may happen and records it; the
 * hypervisor driver (host/) makes it happen. Every query is scoped to the
 * caller's project unless the caller is a cloud admin.
 */
export class ServerService {
  private readonly tasks = new TaskTracker();

  constructor(
    private readonly store: Store,
    private readonly images: ImageService,
    private readonly flavors: FlavorService,
    private readonly driver: HypervisorDriver,
    private readonly host: { name: string; capabilities: HostCapabilities },
    readonly ports: ServerPorts,
    /** Acts for the platform itself (e.g. releasing a deleted server's ports). */
    private readonly system: AuthContext,
    /** The key manager, for vTPM state keys; null: vTPM servers go to ERROR (never an unencrypted TPM). */
    private readonly keys: KeyService | null = null,
  ) {
    this.attachHost(host.name, driver);
  }

  /** Quotas (src/quotas); null: none enforced. Set by platform.ts. */
  quotas: QuotaGate | null = null;
  /** Server groups, for `--hint group=<id>` (src/compute/server-groups.ts); null: hints refused. Set by platform.ts. */
  groups: ServerGroupService | null = null;
  /** Automatic restarts of a server whose vTPM emulator died, per hour (`serve --vtpm-restarts`). */
  vtpmRestarts = DEFAULT_VTPM_RESTARTS;
  /** Runs before the first placement (the platform registers the local host); set by platform.ts. */
  beforePlacement: () => Promise<unknown> = async () => undefined;

  /** The hypervisor driver of each host this control plane can act on (the local one first). */
  private readonly drivers = new Map<string, HypervisorDriver>();

  private readonly unsubscribe = new Map<string, () => void>();

  /** Makes `name`'s servers run on `driver` (the local host, or a connected agent's host). */
  attachHost(name: string, driver: HypervisorDriver): void {
    this.detachHost(name);
    this.unsubscribe.set(
      name,
      driver.onEvent((id, event, data) => void this.onGuestEvent(name, id, event, data)),
    );
    driver.setTpmKeySource((id) => this.tpmKey(id));
    driver.setDiskKeySource((id) => this.rootDiskKey(id));
    this.drivers.set(name, driver);
  }

  /** An agent's channel closed: its host gets no new servers until it is attached again. */
  detachHost(name: string): void {
    this.unsubscribe.get(name)?.();
    this.unsubscribe.delete(name);
    this.drivers.delete(name);
  }

  /** The driver of the host the server is placed on; none connected: a clear error, never another host. */
  private driverOf(s: Pick<Server, 'id' | 'host'>): HypervisorDriver {
    const d = s.host ? this.drivers.get(s.host) : undefined;
    if (!d)
      throw new BulwarkError(
        'Unavailable',
        s.host
          ? `Server ${s.id} is on host ${s.host}, which has no hypervisor connected to this control plane.`
          : `Server ${s.id} is not placed on any host.`,
      );
    return d;
  }

  /** Approvals (governance/approvals.ts): large flavors are held for a second admin. Set by platform.ts. */
  approvals: ApprovalService | null = null;
  /**
   * Checked before a server is made from an image and before every boot
   * (templates: approved, file still matches its pinned sha256; docs/templates.md).
   * Throws to refuse. Set by platform.ts.
   */
  bootGate: ((imageId: string, imagePath: string) => Promise<void>) | null = null;

  private async checkBoot(s: Server): Promise<void> {
    await this.bootGate?.(s.image_id, (JSON.parse(s.guest) as StoredGuest).imagePath);
  }

  /** Storage thresholds for server disks (governance/storage-thresholds.ts). Set by platform.ts. */
  storage: StorageGate | null = null;

  /** Required-field metadata rules and the per-server change history (docs/metadata.md). Set by platform.ts. */
  metadataRules: MetadataRuleService | null = null;
  history: ServerHistory | null = null;

  /** Where a guest's crash is recorded as a security-relevant event (docs/reliability.md). Set by platform.ts. */
  audit: AuditWriter | null = null;

  /** Refuses metadata the rules do not allow, with every reason. */
  private async checkRules(md: Record<string, string>): Promise<void> {
    const broken = (await this.metadataRules?.violations(md)) ?? [];
    if (broken.length) throw badRequest(broken.join(' '));
  }

  private record(db: Kysely<Schema>, s: Server, auth: AuthContext | null, change: string, diff: Diff) {
    return this.history?.record(db, s, auth, change, diff);
  }

  /** A change made to a server by another service (e.g. host devices), in its history. */
  async recordChange(s: Server, auth: AuthContext, change: string, diff: Diff): Promise<void> {
    await this.record(this.db, s, auth, change, diff);
  }

  private get db() {
    return this.store.db;
  }

  /** Runs the new server's insert; a creation rate limit (`limitCreates`) wraps it in its own check. */
  private insertGate: CreateGate = (_userId, insert) => insert(this.db);

  /** Counts every server created against `limit`, per user, in the insert's transaction (docs/rate-limits.md). */
  limitCreates(limit: CreateLimit): void {
    this.insertGate = (userId, insert) => limit.within(userId, insert);
  }

  /** Whether the server's guest was planned with an agent channel (docs/passthrough-and-agent.md). */
  hasGuestAgent(s: Server): boolean {
    return (JSON.parse(s.guest) as StoredGuest).plan.guestAgent === true;
  }

  hostId(s: Pick<Server, 'project_id' | 'host'>): string {
    return s.host ? createHash('sha224').update(`${s.project_id}${s.host}`).digest('hex') : '';
  }

  /**
   * One page of the caller's servers, newest first (Nova's default sort:
   * `created_at` then `id`, both descending), with only the columns the API's
   * views read (never the stored guest spec). `marker` is the id of the last
   * server of the page before; one that is not in the list is a 400, as in Nova.
   */
  async list(auth: AuthContext, filter: ServerListFilter): Promise<ServerRow[]>;
  /** `brief`: ids and names only (Nova's `GET /servers`). */
  async list(
    auth: AuthContext,
    filter: ServerListFilter,
    brief: 'brief',
  ): Promise<Pick<Server, 'id' | 'name'>[]>;
  async list(
    auth: AuthContext,
    filter: ServerListFilter,
    brief?: 'brief',
  ): Promise<Pick<Server, 'id' | 'name'>[]> {
    let q = this.db.selectFrom('servers').where('deleted_at', 'is', null);
    if (!(auth.isAdmin && filter.allProjects)) q = q.where('project_id', '=', auth.projectId ?? '');
    else if (filter.projectId) q = q.where('project_id', '=', filter.projectId);
    if (filter.name !== undefined) {
      // Nova treats the name filter as a regular expression; we match it as a plain substring for safety.
      q = q.where('name', 'like', `%${filter.name.replace(/[%_\\]/g, (c) => `\\${c}`)}%`);
    }
    if (filter.status !== undefined) q = q.where('status', '=', filter.status.toUpperCase());
    if (filter.marker !== undefined) {
      // Looked up with the same scope and filters: a marker the caller could not list is not found.
      const m = await q.select(['id', 'created_at']).where('id', '=', filter.marker).executeTakeFirst();
      if (!m) throw badRequest(`marker [${filter.marker}] not found`);
      const { created_at: at, id } = m;
      q = q.where((w) =>
        w.or([w('created_at', '<', at), w.and([w('created_at', '=', at), w('id', '<', id)])]),
      );
    }
    let rows = q
      .select(brief ? ['id', 'name'] : SERVER_VIEW_COLUMNS)
      .orderBy('created_at', 'desc')
      .orderBy('id', 'desc');
    if (filter.limit !== undefined) rows = rows.limit(filter.limit);
    return rows.execute();
  }

  /** A quarantined server is evidence: only an administrator may act on it until it is lifted. */
  async getUnquarantined(auth: AuthContext, id: string): Promise<Server> {
    const s = await this.get(auth, id);
    if (s.quarantine !== null && !auth.isAdmin) {
      const why = (JSON.parse(s.quarantine) as { reason?: string }).reason ?? '';
      throw conflict(
        `Server ${s.id} is quarantined (${why}); only an administrator can act on it or lift the quarantine.`,
      );
    }
    return s;
  }

  /** Records what the host says the guest is doing now (after work done outside a Nova action). */
  async refreshState(id: string): Promise<void> {
    const s = await this.db
      .selectFrom('servers')
      .select(['id', 'host'])
      .where('id', '=', id)
      .executeTakeFirst();
    const state = s
      ? await this.driverOf(s)
          .state(id)
          .catch((): GuestState => 'missing')
      : 'missing';
    await this.setState(id, { vm_state: vmStateOf(state), task_state: null });
  }

  async get(auth: AuthContext, id: string): Promise<Server> {
    let q = this.db.selectFrom('servers').selectAll().where('id', '=', id).where('deleted_at', 'is', null);
    if (!auth.isAdmin) q = q.where('project_id', '=', auth.projectId ?? '');
    const s = await q.executeTakeFirst();
    if (!s) throw notFound('server', id);
    return s;
  }

  /**
   * Creates a server. `approval` is set when an approved request runs
   * (the `server-create` executor): triggers are not asked again.
   */
  async create(
    auth: AuthContext,
    input: CreateServerInput,
    approval?: { id: string; approvedBy: string },
    /** clone(): the stopped server whose disk the new one starts from. */
    cloneOf?: Server,
    /** A server restore (backups/service.ts): writes the new, defined root disk before the first start. */
    prepareRoot?: (driver: HypervisorDriver, serverId: string) => Promise<void>,
  ): Promise<Server> {
    if (!auth.projectId) throw badRequest('A project-scoped token is needed to create a server.');
    if (input.networks === 'auto') {
      throw badRequest(
        "networks 'auto' needs a default network, which this platform does not allocate; pass --network NAME or --nic none.",
      );
    }
    const groupId = await this.groupOf(auth, input.hints.group);
    const flavor = await this.flavors.get(input.flavorRef, { includePrivate: auth.isAdmin }).catch(() => {
      throw badRequest(`Flavor ${input.flavorRef} could not be found.`);
    });
    const source = await this.images.bootSource(auth, input.imageRef).catch((err: unknown) => {
      throw err instanceof BulwarkError && err.kind === 'NotFound'
        ? badRequest(`Image ${input.imageRef} could not be found.`)
        : err;
    });
    const img = source.image;
    await this.bootGate?.(img.id, source.path);
    if (flavor.ram < img.min_ram)
      throw badRequest(`Flavor's memory is too small for requested image (needs ${img.min_ram} MiB).`);
    const virtualGiB = Math.ceil((img.virtual_size ?? 0) / 2 ** 30);
    if (flavor.disk > 0 && flavor.disk < Math.max(virtualGiB, img.min_disk)) {
      throw badRequest(
        `Flavor's disk is too small for requested image (needs ${Math.max(virtualGiB, img.min_disk)} GiB).`,
      );
    }
    const plan = resolveGuestPlan(
      propertiesOf(img),
      extraSpecsOf(flavor),
      this.host.capabilities,
      flavor.ram,
    );
    if (input.userData !== undefined) {
      if (!/^[A-Za-z0-9+/]*={0,2}$/.test(input.userData)) throw badRequest('user_data must be base64.');
      if (Buffer.from(input.userData, 'base64').length > 65535)
        throw badRequest('user_data is larger than 64 KiB.');
    }
    checkUserMetadata(input.metadata);
    await this.storage?.check('instances', 'server', auth);
    if (!approval) {
      // Every reason to hold it goes into one approval; with none of them on, a broken metadata rule is a 400.
      const held: string[] = [];
      const broken = (await this.metadataRules?.violations(input.metadata)) ?? [];
      if (broken.length && !(await this.approvals?.applies('production-without-ticket')))
        throw badRequest(broken.join(' '));
      held.push(...broken);
      const big = await this.approvals?.flavorNeedsApproval(flavor);
      if (big) held.push(big);
      if (held.length)
        await this.approvals?.hold(
          auth,
          'server-create',
          input,
          `create server ${input.name}: ${held.join('; ')}`,
        );
    }
    const guest: StoredGuest = {
      plan,
      imagePath: source.path,
      imageFormat: source.format,
      userData: input.userData ?? null,
    };
    const now = nowIso();
    const row: Server = {
      id: uuid(),
      name: input.name,
      project_id: auth.projectId,
      user_id: auth.userId,
      flavor_id: flavor.id,
      image_id: img.id,
      flavor: JSON.stringify({
        id: flavor.id,
        name: flavor.name,
        vcpus: flavor.vcpus,
        ram: flavor.ram,
        disk: flavor.disk,
        extra_specs: extraSpecsOf(flavor),
      }),
      status: 'BUILD',
      task_state: 'scheduling',
      power_state: POWER.NOSTATE,
      vm_state: 'building',
      host: null,
      fault: null,
      // Who made it and when (and who approved it) are the platform's to say, not the caller's (guide 14).
      metadata: JSON.stringify({
        ...input.metadata,
        created_by: auth.userName,
        created_at: now,
        ...(approval ? { approved_by: approval.approvedBy } : {}),
        ...(cloneOf ? { cloned_from: cloneOf.id } : {}),
      }),
      hints: JSON.stringify(input.hints),
      guest: JSON.stringify(guest),
      key_name: null,
      quarantine: null,
      root_key_secret_id: null,
      tpm_secret_id: null,
      host_devices: null,
      created_at: now,
      updated_at: now,
      launched_at: null,
      deleted_at: null,
    };
    const projectId = auth.projectId;
    await this.beforePlacement();
    await this.insertGate(auth.userId, (db) =>
      // Quota (src/quotas): checked and inserted in one transaction under the project's lock.
      withQuota(
        this.quotas,
        db,
        { projectId, userId: auth.userId },
        { instances: 1, cores: flavor.vcpus, ram: flavor.ram },
        'nova',
        async (tx) => {
          await this.insertPlaced(tx, row, plan, groupId);
          await this.record(tx, row, auth, 'create', {
            ...mapDiff({}, { name: row.name, flavor: flavor.name, image: img.id }),
            ...mapDiff({}, JSON.parse(row.metadata) as Record<string, string>, 'metadata.'),
            ...(approval ? { approval: { from: null, to: approval.id } } : {}),
          });
        },
      ),
    );
    if (Array.isArray(input.networks) && input.networks.length > 0) {
      try {
        await this.ports.attach(auth, row.id, input.networks, input.securityGroups);
      } catch (err) {
        // Bad network input changes nothing: the record goes too.
        await this.unrecord(row.id);
        throw err;
      }
    } else if (input.securityGroups?.length) {
      await this.unrecord(row.id);
      throw badRequest('Security groups apply to network ports; give the server a --network.');
    }
    if (row.host) this.tasks.track(row.id, this.build(row, cloneOf?.id, prepareRoot));
    return row;
  }

  /**
   * Clones a stopped server (docs/clones.md): always held for a second admin
   * (approval kind `server-clone`) unless that trigger is off. The clone is a
   * new server from the source's image and flavor with a copy of its disk,
   * re-encrypted under its own new key; nothing else is copied: no user data,
   * ports, metadata, vTPM state or UEFI variables. Its NoCloud instance-id is
   * its own UUID, so the guest makes a new machine-id and host keys.
   */
  async clone(
    auth: AuthContext,
    sourceId: string,
    name: string,
    approval?: { id: string; approvedBy: string },
  ): Promise<Server> {
    const src = await this.getUnquarantined(auth, sourceId);
    if (!approval && (await this.approvals?.applies('server-clone')))
      await this.approvals?.hold(
        auth,
        'server-clone',
        { sourceId: src.id, name },
        `clone ${src.name} as ${name}`,
      );
    if (src.vm_state !== 'stopped')
      throw conflict(`Server ${src.name} is ${src.status}; stop it first, so its disk is copied at rest.`);
    return this.create(
      auth,
      {
        name,
        imageRef: src.image_id,
        flavorRef: src.flavor_id,
        metadata: {},
        hints: {},
        userData: undefined,
        networks: 'none',
        securityGroups: undefined,
      },
      approval,
      src,
    );
  }

  /** Takes back a server that was refused after its insert: its row, history and host claim (capacity, group). */
  private async unrecord(id: string): Promise<void> {
    await this.db.transaction().execute(async (tx) => {
      await releasePlacement(tx, id);
      await tx.deleteFrom('server_changes').where('server_id', '=', id).execute();
      await tx.deleteFrom('servers').where('id', '=', id).execute();
    });
  }

  /** The group a `--hint group=<id>` names: the caller's own, else 400 (another project's is not found). */
  private async groupOf(auth: AuthContext, hint: unknown): Promise<string | undefined> {
    if (hint === undefined) return undefined;
    const id = Array.isArray(hint) && hint.length === 1 ? hint[0] : hint;
    if (typeof id !== 'string' || !this.groups)
      throw badRequest(`Invalid server group hint ${JSON.stringify(hint)}.`);
    const g = await this.groups.get(auth, id).catch(() => {
      throw badRequest(`Server group ${id} not found.`);
    });
    return g.id;
  }

  /**
   * Inserts the server and claims its host in one transaction
   * (compute/placement.ts). No host: the record is ERROR with Nova's fault
   * and nothing is built (the create still answers 202, as Nova's does).
   */
  private insertPlaced(db: Kysely<Schema>, row: Server, plan: GuestPlan, groupId: string | undefined) {
    const flavor = JSON.parse(row.flavor) as { vcpus: number; ram: number; disk: number };
    const secureBoot = plan.firmware.type === 'uefi' && plan.firmware.secureBoot;
    const features = featuresOf(plan);
    const work = async (tx: Kysely<Schema>) => {
      await tx.insertInto('servers').values(row).execute();
      const placed = await claimPlacement(tx, this.store.dialect, {
        serverId: row.id,
        resources: { vcpus: flavor.vcpus, ramMiB: flavor.ram, diskGiB: flavor.disk },
        features,
        ...(groupId ? { groupId } : {}),
        eligible: new Set(this.drivers.keys()),
      });
      if (placed.ok) {
        row.host = placed.ranked[0] as string;
        await tx.updateTable('servers').set({ host: row.host }).where('id', '=', row.id).execute();
        return;
      }
      const noSecureBoot = secureBoot && (placed.rejected.FeatureFilter ?? 0) > 0;
      Object.assign(row, {
        status: 'ERROR',
        vm_state: 'error',
        task_state: null,
        fault: JSON.stringify({
          code: noSecureBoot ? 400 : 500,
          message: noSecureBoot ? SECURE_BOOT_MISSING : NO_VALID_HOST,
          created: nowIso(),
        }),
      });
      await tx
        .updateTable('servers')
        .set({ status: row.status, vm_state: row.vm_state, task_state: null, fault: row.fault })
        .where('id', '=', row.id)
        .execute();
    };
    return db.isTransaction ? work(db) : db.transaction().execute(work);
  }

  /** What the server's guest is, as its host's driver defines it. */
  async specFor(s: Server): Promise<GuestSpec> {
    const g = JSON.parse(s.guest) as StoredGuest;
    const nics = (await this.ports.nics(s.id)).map((n) => ({
      tap: n.tap,
      mac: n.mac,
      ips: n.ips,
      gateways: n.gateways,
    }));
    const flavor = JSON.parse(s.flavor) as { vcpus: number; ram: number; disk: number };
    return {
      id: s.id,
      name: s.name,
      vcpus: flavor.vcpus,
      memoryMiB: flavor.ram,
      ...planSpec(g.plan),
      bootDisk: {
        imagePath: g.imagePath,
        imageFormat: g.imageFormat,
        sizeGiB: flavor.disk,
        ...(s.root_key_secret_id ? { encrypted: true } : {}),
      },
      ...(g.userData
        ? { fwCfg: { 'opt/org.bulwark/run': Buffer.from(g.userData, 'base64').toString('utf8') } }
        : {}),
      ...(nics.length ? { nics } : {}),
      cloudInit: true,
      ...(g.plan.guestAgent ? { guestAgent: true } : {}),
      ...(s.host_devices ? { hostDevices: JSON.parse(s.host_devices) as PassthroughPlan } : {}),
    };
  }

  private async build(
    s: Server,
    cloneOf?: string,
    prepareRoot?: (driver: HypervisorDriver, serverId: string) => Promise<void>,
  ): Promise<void> {
    try {
      await this.setState(s.id, { task_state: 'spawning' });
      const plan = (JSON.parse(s.guest) as StoredGuest).plan;
      this.checkSecureBootHost(plan);
      await this.createTpmKey(s, plan);
      await this.createRootDiskKey(s);
      await this.checkBoot(s);
      const driver = this.driverOf(s);
      await driver.define(await this.specFor(s));
      if (cloneOf) await driver.copyRootDisk(cloneOf, s.id);
      await prepareRoot?.(driver, s.id);
      await driver.start(s.id);
      await this.setState(s.id, { vm_state: 'active', task_state: null, launched_at: nowIso() });
    } catch (err) {
      if (s.host)
        await this.drivers
          .get(s.host)
          ?.undefine(s.id)
          .catch(() => undefined);
      await this.setState(s.id, { vm_state: 'error', task_state: null, fault: JSON.stringify(faultOf(err)) });
    }
  }

  private async setState(
    id: string,
    change: { vm_state?: VmState; task_state?: string | null; fault?: string | null; launched_at?: string },
  ) {
    const set: Partial<Server> = { updated_at: nowIso(), ...change };
    if (change.vm_state) {
      set.status = STATUS_OF[change.vm_state].status;
      set.power_state = STATUS_OF[change.vm_state].power;
      if (change.vm_state !== 'error') set.fault = change.fault ?? null;
    }
    await this.db.updateTable('servers').set(set).where('id', '=', id).execute();
  }

  /** Resolves when the server's current background task (build, action, delete) has finished. */
  settled(id?: string): Promise<void> {
    return this.tasks.settled(id);
  }

  /** Starts a Nova server action; answers at once (202) while the host does the work. */
  async action(auth: AuthContext, id: string, action: ServerAction): Promise<void> {
    const s = await this.getUnquarantined(auth, id);
    const t = TRANSITIONS[action];
    const claimed = await this.db
      .updateTable('servers')
      .set({ task_state: t.task, status: t.busyStatus, updated_at: nowIso() })
      .where('id', '=', s.id)
      .where('vm_state', 'in', [...t.from])
      .where('task_state', 'is', null)
      .where('deleted_at', 'is', null)
      .executeTakeFirst();
    if (Number(claimed.numUpdatedRows) !== 1) {
      throw conflict(
        `Cannot '${action}' instance ${s.id} while it is in vm_state ${s.vm_state}${s.task_state ? ` and task_state ${s.task_state}` : ''}.`,
      );
    }
    await this.record(this.db, s, auth, `action:${action}`, { vm_state: { from: s.vm_state, to: t.to } });
    this.tasks.track(s.id, this.runAction(s, action, t.to));
  }

  private async runAction(s: Server, action: ServerAction, to: VmState): Promise<void> {
    // Never another host's driver: with its agent gone, the action fails and the state is unknown.
    const driver = s.host ? this.drivers.get(s.host) : this.driver;
    try {
      const d = driver ?? this.driverOf(s);
      switch (action) {
        case 'start':
          await this.checkBoot(s);
          await d.define(await this.specFor(s));
          await d.start(s.id);
          break;
        case 'stop':
          await d.shutdown(s.id, { timeoutMs: 10_000 });
          break;
        case 'reboot':
          await d.reboot(s.id);
          break;
        case 'pause':
          await d.pause(s.id);
          break;
        case 'unpause':
          await d.unpause(s.id);
          break;
        case 'suspend':
          await d.suspend(s.id);
          break;
        case 'resume':
          await this.checkBoot(s);
          await d.resume(s.id);
          break;
      }
      await this.setState(s.id, { vm_state: to, task_state: null });
    } catch (err) {
      const state = driver ? await driver.state(s.id).catch((): GuestState => 'missing') : null;
      await this.setState(
        s.id,
        state ? { vm_state: vmStateOf(state), task_state: null } : { task_state: null },
      );
      await this.db
        .updateTable('servers')
        .set({ fault: JSON.stringify(faultOf(err)) })
        .where('id', '=', s.id)
        .execute();
    }
  }

  async delete(auth: AuthContext, id: string): Promise<void> {
    const s = await this.getUnquarantined(auth, id);
    await this.db
      .updateTable('servers')
      .set({ task_state: 'deleting', updated_at: nowIso() })
      .where('id', '=', s.id)
      .execute();
    await this.record(this.db, s, auth, 'delete', { status: { from: s.status, to: 'DELETED' } });
    // Wait for any running task so the host is never left half-built behind a deleted record.
    const running = this.tasks.running(s.id);
    this.tasks.track(
      s.id,
      (running ?? Promise.resolve()).then(() => this.destroy(s.id)),
    );
  }

  private async destroy(id: string): Promise<void> {
    const placed = await this.db
      .selectFrom('servers')
      .select(['id', 'host'])
      .where('id', '=', id)
      .executeTakeFirst();
    await this.beforeDestroy(id);
    // A server that never got a host (no valid host) has nothing to undefine.
    if (placed?.host) await this.driverOf(placed).undefine(id);
    await releasePlacement(this.db, id);
    await this.deleteTpmKey(id);
    await this.deleteRootDiskKey(id);
    await this.ports.detachAll(id, this.system);
    await this.db
      .updateTable('servers')
      .set({
        vm_state: 'deleted',
        status: 'DELETED',
        task_state: null,
        power_state: POWER.NOSTATE,
        deleted_at: nowIso(),
        updated_at: nowIso(),
      })
      .where('id', '=', id)
      .execute();
  }

  async changeSecurityGroup(auth: AuthContext, id: string, group: string, add: boolean): Promise<void> {
    const s = await this.getUnquarantined(auth, id);
    await this.ports.changeGroup(auth, s.id, group, add);
    await this.record(this.db, s, auth, 'security-group', {
      security_group: add ? { from: null, to: group } : { from: group, to: null },
    });
  }

  async consoleOutput(auth: AuthContext, id: string, lines: number | undefined): Promise<string> {
    const s = await this.get(auth, id);
    return this.driverOf(s).consoleLog(s.id, lines);
  }

  /** Nova's metadata update (merge) or replace; platform keys stay as they are; the rules must hold after. */
  async setMetadata(auth: AuthContext, id: string, metadata: Record<string, string>, replace: boolean) {
    const s = await this.getUnquarantined(auth, id);
    checkUserMetadata(metadata);
    const current = JSON.parse(s.metadata) as Record<string, string>;
    const merged = replace ? { ...metadata, ...platformPart(current) } : { ...current, ...metadata };
    if (Object.keys(merged).length > 128)
      throw new BulwarkError('Forbidden', 'Maximum number of metadata items exceeds 128');
    await this.checkRules(merged);
    await this.writeMetadata(auth, s, current, merged);
    return merged;
  }

  async deleteMetadata(auth: AuthContext, id: string, key: string) {
    const s = await this.getUnquarantined(auth, id);
    if (isPlatformKey(key))
      throw badRequest(`Server metadata ${key} is set by the platform and cannot be removed.`);
    const current = JSON.parse(s.metadata) as Record<string, string>;
    if (!Object.hasOwn(current, key)) throw notFound('metadata item', key);
    const { [key]: _gone, ...rest } = current;
    await this.checkRules(rest);
    await this.writeMetadata(auth, s, current, rest);
  }

  /** The new metadata and its history row, in one transaction. */
  private async writeMetadata(
    auth: AuthContext,
    s: Server,
    before: Record<string, string>,
    after: Record<string, string>,
  ): Promise<void> {
    const diff = mapDiff(before, after, 'metadata.');
    if (Object.keys(diff).length === 0) return;
    await this.db.transaction().execute(async (tx) => {
      await tx
        .updateTable('servers')
        .set({ metadata: JSON.stringify(after), updated_at: nowIso() })
        .where('id', '=', s.id)
        .execute();
      await this.record(tx, s, auth, 'metadata', diff);
    });
  }

  async imageInUse(imageId: string): Promise<boolean> {
    return (
      (await this.db
        .selectFrom('servers')
        .select('id')
        .where('image_id', '=', imageId)
        .where('deleted_at', 'is', null)
        .executeTakeFirst()) !== undefined
    );
  }

  /** A guest powered off or crashed on its own: record it, as Nova's power sync does. */
  /** A guest event from host `from`'s driver: only the server's current host speaks for it (not a migration's source). */
  private async onGuestEvent(from: string, id: string, event: string, data?: unknown): Promise<void> {
    if (event === 'SECURE_BOOT_DENIED') return this.onSecureBootDenied(id, data);
    if (event === 'TPM_LOST') {
      const reason = (data as { reason?: unknown } | undefined)?.reason;
      // The guest is already stopped (fail closed); a store that is away must not end the daemon.
      return this.onTpmLost(id, typeof reason === 'string' ? reason : 'it ended', from).catch(
        () => undefined,
      );
    }
    if (event !== 'SHUTDOWN' && event !== 'EXITED') return;
    if (this.tasks.running(id)) return;
    // QEMU gone while the guest should run (crashed, killed, OOM): SHUTOFF as Nova's power sync has it,
    // but with a fault saying so, and audited; `server start` brings it back.
    const crashed = event === 'EXITED' && (data as { expected?: boolean } | undefined)?.expected === false;
    const fault = crashed
      ? JSON.stringify({
          code: 500,
          message:
            "The server's QEMU process ended without being asked to (it crashed or was killed); the server is SHUTOFF. Start it again with `openstack server start`; the host's log says why it ended.",
          created: nowIso(),
        })
      : null;
    const r = await this.db
      .updateTable('servers')
      .set({
        vm_state: 'stopped',
        status: 'SHUTOFF',
        power_state: POWER.SHUTDOWN,
        updated_at: nowIso(),
        ...(fault ? { fault } : {}),
      })
      .where('id', '=', id)
      .where('vm_state', '=', 'active')
      .where('task_state', 'is', null)
      .where((eb) => eb.or([eb('host', '=', from), eb('host', 'is', null)]))
      .executeTakeFirst()
      .catch(() => undefined);
    if (crashed && Number(r?.numUpdatedRows ?? 0) === 1)
      await this.audit
        ?.append(
          systemEvent({
            action: 'server:crashed',
            reason: 'the QEMU process ended unexpectedly',
            target: { type: 'server', id },
            outcome: 'failure',
          }),
        )
        .catch(() => undefined);
  }

  // ---- vTPM emulator dying (docs/compute.md, compute/vtpm-recovery.ts) -------------------------

  /**
   * The host stopped the guest because its swtpm ended (fail closed). Record
   * it (fault, security event), then restart it from its saved TPM state
   * after a short wait, within the hourly budget; past it, ERROR saying what
   * to do.
   */
  private async onTpmLost(id: string, why: string, from?: string): Promise<void> {
    // A running action (the restart's own audit tail included) ends first: the claim below then acts
    // only if it left the server ACTIVE and idle. Dropping the loss instead left a stopped guest ACTIVE.
    await this.tasks.running(id)?.catch(() => undefined);
    const since = new Date(Date.now() - VTPM_RESTART_WINDOW_MS).toISOString();
    const history = await this.db
      .selectFrom('audit_events')
      .select('action')
      .where('target_id', '=', id)
      .where('action', 'in', [VTPM_AUDIT.restart, VTPM_AUDIT.exhausted])
      .where('time', '>', since)
      .orderBy('seq')
      .execute();
    const decision = decideVtpmRecovery(why, restartsUsed(history), this.vtpmRestarts);
    const vm: VmState = decision.restart ? 'stopped' : 'error';
    const claimed = await this.db
      .updateTable('servers')
      .set({
        vm_state: vm,
        status: STATUS_OF[vm].status,
        power_state: POWER.SHUTDOWN,
        task_state: decision.restart ? 'powering-on' : null,
        fault: JSON.stringify({ code: 500, message: decision.fault, created: nowIso() }),
        updated_at: nowIso(),
      })
      .where('id', '=', id)
      .where('deleted_at', 'is', null)
      .where('vm_state', '=', 'active')
      .where('task_state', 'is', null)
      .$if(from !== undefined, (q) =>
        q.where((eb) => eb.or([eb('host', '=', from as string), eb('host', 'is', null)])),
      )
      .executeTakeFirst();
    if (Number(claimed.numUpdatedRows) !== 1) return;
    await this.vtpmAudit(id, VTPM_AUDIT.lost, `vTPM emulator exited (${why}); the guest was stopped`, false);
    if (!decision.restart) {
      const reason = `automatic restarts used up (${this.vtpmRestarts} an hour)`;
      await this.vtpmAudit(id, VTPM_AUDIT.exhausted, reason, false);
      return;
    }
    const reason = `automatic restart ${decision.attempt} of ${this.vtpmRestarts}`;
    await this.vtpmAudit(id, VTPM_AUDIT.restart, reason, true);
    this.restartAfterTpmLoss(id, decision.delayMs);
  }

  /** The restart itself (the row holds task_state powering-on): the `start` action, then audited. */
  private restartAfterTpmLoss(id: string, delayMs: number): void {
    this.tasks.track(
      id,
      (async () => {
        await new Promise((r) => setTimeout(r, delayMs));
        const s = await this.db.selectFrom('servers').selectAll().where('id', '=', id).executeTakeFirst();
        if (!s || s.deleted_at || s.task_state !== 'powering-on') return;
        await this.runAction(s, 'start', 'active');
        const after = await this.db
          .selectFrom('servers')
          .select(['status', 'fault'])
          .where('id', '=', id)
          .executeTakeFirst();
        const ok = after?.status === 'ACTIVE';
        const reason = ok
          ? 'the vTPM was restarted from its saved state and the guest runs again'
          : `the restart failed: ${after?.fault ?? 'the server is gone'}`;
        await this.vtpmAudit(id, VTPM_AUDIT.recovered, reason, ok);
      })(),
    );
  }

  private async vtpmAudit(id: string, action: string, reason: string, ok: boolean): Promise<void> {
    await this.audit
      ?.append(
        systemEvent({ action, reason, target: { type: 'server', id }, outcome: ok ? 'success' : 'failure' }),
      )
      .catch(() => undefined);
  }

  // ---- vTPM keys and Secure Boot (docs/compute.md) --------------------------------------------

  /** Secure Boot the plan relies on must be there: otherwise ERROR, never a boot without it. */
  private checkSecureBootHost(plan: GuestPlan): void {
    if (plan.firmware.type === 'uefi' && plan.firmware.secureBoot && !this.host.capabilities.secureBoot)
      throw new BulwarkError('Unavailable', SECURE_BOOT_MISSING);
  }

  /** A vTPM server's state key: made once, at build, by the key manager, owned by the server's project. */
  private async createTpmKey(s: Server, plan: GuestPlan): Promise<void> {
    if (!plan.tpm) return;
    const row = await this.db
      .selectFrom('servers')
      .select('tpm_secret_id')
      .where('id', '=', s.id)
      .executeTakeFirst();
    if (row?.tpm_secret_id) return;
    if (!this.keys)
      throw new BulwarkError(
        'Unavailable',
        'The server asks for a vTPM, whose state must be encrypted, but no key manager is enabled; it was not built.',
      );
    let secretId: string;
    try {
      secretId = await this.keys.createKey(s.project_id, {
        name: `vtpm-${s.id}`,
        bits: 256,
        purpose: 'vtpm-state',
      });
    } catch (err) {
      throw new BulwarkError(
        'Unavailable',
        `The key for the server's vTPM state could not be created in the key manager: ${(err as Error).message}`,
        { cause: err },
      );
    }
    await this.db.updateTable('servers').set({ tpm_secret_id: secretId }).where('id', '=', s.id).execute();
  }

  /** The driver asks for it each time the guest's swtpm starts; read for the owner, in memory only. */
  private async tpmKey(id: string): Promise<Buffer> {
    const row = await this.db
      .selectFrom('servers')
      .select(['project_id', 'tpm_secret_id'])
      .where('id', '=', id)
      .executeTakeFirst();
    if (!row?.tpm_secret_id) throw new BulwarkError('Unavailable', `Server ${id} has no vTPM key.`);
    if (!this.keys) throw new BulwarkError('Unavailable', 'No key manager is enabled.');
    return this.keys.readKeyFor(row.project_id, row.tpm_secret_id);
  }

  /** After the guest (and its TPM state) is gone: the key goes too. */
  private async deleteTpmKey(id: string): Promise<void> {
    const row = await this.db
      .selectFrom('servers')
      .select(['project_id', 'tpm_secret_id'])
      .where('id', '=', id)
      .executeTakeFirst();
    if (!row?.tpm_secret_id || !this.keys) return;
    await this.keys.deleteKeyFor(row.project_id, row.tpm_secret_id);
    await this.db.updateTable('servers').set({ tpm_secret_id: null }).where('id', '=', id).execute();
  }

  /** The firmware refused the boot loader under Secure Boot (the driver ended the guest): ERROR, saying so. */
  private async onSecureBootDenied(id: string, data: unknown): Promise<void> {
    await this.tasks.running(id)?.catch(() => undefined);
    const said =
      typeof data === 'object' &&
      data !== null &&
      typeof (data as { firmware?: unknown }).firmware === 'string'
        ? ` (firmware: ${(data as { firmware: string }).firmware})`
        : '';
    await this.db
      .updateTable('servers')
      .set({
        vm_state: 'error',
        status: 'ERROR',
        power_state: POWER.SHUTDOWN,
        task_state: null,
        fault: JSON.stringify({
          code: 400,
          message: `Secure Boot refused the image's boot loader${said}: it is not signed by a key this host's firmware trusts. The server was not booted.`,
          created: nowIso(),
        }),
        updated_at: nowIso(),
      })
      .where('id', '=', id)
      .where('deleted_at', 'is', null)
      .where((eb) => eb.or([eb('task_state', 'is', null), eb('task_state', '!=', 'deleting')]))
      .execute()
      .catch(() => undefined);
  }

  /**
   * After a daemon restart: adopt guests still running, mark those whose
   * process vanished, finish interrupted deletes, fail interrupted builds,
   * and let the driver kill any QEMU it does not know (no orphans).
   */
  async reconcile(): Promise<{
    adopted: string[];
    vanished: string[];
    orphansKilled: string[];
    /** This host's undeleted servers afterwards. */
    local: string[];
  }> {
    // This machine's servers, and those no host took (nothing runs for them; only deletes to finish).
    const rows = await this.db
      .selectFrom('servers')
      .selectAll()
      .where('deleted_at', 'is', null)
      .where((eb) => eb.or([eb('host', '=', this.host.name), eb('host', 'is', null)]))
      .execute();
    const result = await this.driver.reconcile(rows.filter((r) => r.host).map((r) => r.id));
    const tpmLost = new Set(result.tpmLost ?? []);
    for (const r of rows) {
      if (r.host && (await this.recoverTpm(r, tpmLost, 'it was gone when the daemon restarted'))) continue;
      if (r.task_state === 'deleting') {
        // A delete that cannot finish now must not stop the daemon: ERROR, saying so, deletable again.
        await this.destroy(r.id).catch((err: Error) =>
          this.setState(r.id, {
            vm_state: 'error',
            task_state: null,
            fault: JSON.stringify({
              code: 500,
              message: `The daemon restarted while this server was being deleted and finishing the delete failed (${err.message}); delete it again.`,
              created: nowIso(),
            }),
          }),
        );
        continue;
      }
      if (!r.host) continue;
      if (r.vm_state === 'building') {
        await this.driver.undefine(r.id).catch(() => undefined);
        await this.setState(r.id, {
          vm_state: 'error',
          task_state: null,
          fault: JSON.stringify({
            code: 500,
            message: 'The daemon restarted while this server was being built; delete it and create it again.',
            created: nowIso(),
          }),
        });
        continue;
      }
      const state = await this.driver.state(r.id).catch((): GuestState => 'missing');
      const vm = vmStateOf(state);
      // Its QEMU ended while the daemon was away, unasked: say so, as a crash seen live does (onGuestEvent).
      const lost = r.vm_state === 'active' && vm === 'stopped' && result.vanished.includes(r.id);
      if (vm !== r.vm_state || r.task_state !== null)
        await this.setState(r.id, {
          vm_state: vm === 'error' && r.vm_state === 'stopped' ? 'stopped' : vm,
          task_state: null,
          ...(lost ? { fault: qemuGoneFault('the daemon restarted') } : {}),
        });
    }
    const local = rows.filter((r) => r.host && r.task_state !== 'deleting').map((r) => r.id);
    return { ...result, local };
  }

  /**
   * An agent host's reconcile on (re)connect (host/agent/hub.ts), acted on as
   * the local one is: its guests found running without their swtpm were
   * stopped there (fail closed) and get the fault, audit and restart budget
   * a local one gets, and a restart that a lost channel or a control-plane
   * restart cut short is carried out; a guest whose QEMU ended while the
   * agent was away is SHUTOFF with a fault saying so, not left ACTIVE.
   */
  async reconcileHost(
    host: string,
    found: { vanished: readonly string[]; tpmLost?: readonly string[] | undefined },
  ): Promise<void> {
    const rows = await this.db
      .selectFrom('servers')
      .selectAll()
      .where('host', '=', host)
      .where('deleted_at', 'is', null)
      .execute();
    const lost = new Set(found.tpmLost ?? []);
    const vanished = new Set(found.vanished);
    for (const r of rows) {
      if (await this.recoverTpm(r, lost, `it was gone when host ${host}'s agent connected`, host)) continue;
      if (vanished.has(r.id) && r.vm_state === 'active' && r.task_state === null)
        await this.setState(r.id, {
          vm_state: 'stopped',
          task_state: null,
          fault: qemuGoneFault(`host ${host}'s agent connected`),
        });
    }
  }

  /** True when `r` was a vTPM loss to act on (now recorded, restarting or out of budget). */
  private async recoverTpm(
    r: Server,
    tpmLost: ReadonlySet<string>,
    why: string,
    from?: string,
  ): Promise<boolean> {
    if (tpmLost.has(r.id) && r.vm_state === 'active' && r.task_state === null) {
      await this.onTpmLost(r.id, why, from);
      return true;
    }
    // A restart after a vTPM loss that a stop of the control plane (or of the channel) cut short: carry it out now.
    if (r.task_state === 'powering-on' && r.vm_state === 'stopped' && isVtpmLostFault(r.fault)) {
      if (!this.tasks.running(r.id)) this.restartAfterTpmLoss(r.id, VTPM_RESTART_DELAY_MS);
      return true;
    }
    return false;
  }

  // ---- moves between hosts: shared by live and cold migration (compute/cold-migration.ts) ---------

  /** The connected host's driver (none: undefined, never another host's). */
  driverOn(host: string): HypervisorDriver | undefined {
    return this.drivers.get(host);
  }

  /** Hosts a mover can take part in a move with (connected here, and able to by the mover's say). */
  movableHosts(mover: { canHost(host: string): boolean } | null): Set<string> {
    return new Set([...this.drivers.keys()].filter((h) => mover?.canHost(h)));
  }

  /** What the scheduler is asked for when the server moves: its flavor's resources and its plan's features. */
  moveRequest(s: Server) {
    const flavor = JSON.parse(s.flavor) as { vcpus: number; ram: number; disk: number };
    return {
      features: featuresOf((JSON.parse(s.guest) as StoredGuest).plan),
      resources: { vcpus: flavor.vcpus, ramMiB: flavor.ram, diskGiB: flavor.disk },
    };
  }

  /**
   * One transaction for a move's start (live or cold): the server marked busy
   * (only as it was read, with no task), a destination claimed with claimMove
   * (none: 400 "No valid host", nothing changed), its `migrations` row, and
   * `also` (a cold move's hold on the source). Resolves with the destination.
   */
  async claimMoveOf(
    s: Server,
    o: {
      host?: string | null | undefined;
      mover: { canHost(host: string): boolean } | null;
      busy: { task: string; status: string };
      migration: {
        id: string;
        type: 'live-migration' | 'migration';
        status: string;
        oldVmState: string | null;
      };
      also?: (
        tx: Kysely<Schema>,
        resources: ReturnType<ServerService['moveRequest']>['resources'],
      ) => Promise<void>;
    },
  ): Promise<string> {
    const from = s.host as string;
    const { features, resources } = this.moveRequest(s);
    const now = nowIso();
    return this.db.transaction().execute(async (tx) => {
      const claimed = await tx
        .updateTable('servers')
        .set({ task_state: o.busy.task, status: o.busy.status, updated_at: now })
        .where('id', '=', s.id)
        .where('vm_state', '=', s.vm_state)
        .where('task_state', 'is', null)
        .executeTakeFirst();
      if (Number(claimed.numUpdatedRows) !== 1)
        throw conflict(`Server ${s.id} is busy; try again when its task is done.`);
      const placed = await claimMove(tx, this.store.dialect, {
        serverId: s.id,
        from,
        ...(o.host ? { host: o.host } : {}),
        resources,
        features,
        eligible: this.movableHosts(o.mover),
      });
      if (!placed.ok)
        throw badRequest(
          o.host
            ? `Host ${o.host} cannot take server ${s.id}: ${NO_VALID_HOST}`
            : `No host can take server ${s.id}: ${NO_VALID_HOST}`,
        );
      const dest = placed.ranked[0] as string;
      await o.also?.(tx, resources);
      await tx
        .insertInto('migrations')
        .values({
          id: o.migration.id,
          server_id: s.id,
          project_id: s.project_id,
          migration_type: o.migration.type,
          source_host: from,
          dest_host: dest,
          status: o.migration.status,
          memory_total_bytes: 0,
          memory_processed_bytes: 0,
          memory_remaining_bytes: 0,
          disk_total_bytes: 0,
          disk_processed_bytes: 0,
          error: null,
          old_vm_state: o.migration.oldVmState,
          created_at: now,
          updated_at: now,
        })
        .execute();
      return dest;
    });
  }

  /** Runs a server's background work under its task (deletes wait for it; guest events are not taken as news). */
  track(id: string, work: Promise<void>): void {
    this.tasks.track(id, work);
  }

  /** Runs before a server's guest is removed on delete (a pending cold migration's source copy goes too). */
  beforeDestroy: (id: string) => Promise<void> = async () => undefined;

  // ---- live migration between hosts (docs/multi-host.md) ----------------------------------------

  /** Moves a running guest between agent hosts (host/agent/hub.ts); set by the daemon. Null: refused. */
  migrator: LiveMigrator | null = null;

  /**
   * Nova's os-migrateLive (admin): picks the destination with the scheduler
   * (its server group's policy kept, never its current host; `host` when
   * asked, still filtered), claims it in one transaction with the same host
   * locks as a create, and moves the running guest in the background
   * (status MIGRATING, task_state `migrating`, progress in `migrations`).
   * A failure leaves it running on the source, ACTIVE, the migration `error`.
   */
  async liveMigrate(auth: AuthContext, id: string, opts: { host?: string | null }): Promise<string> {
    const s = await this.getUnquarantined(auth, id);
    if (!this.migrator)
      throw new BulwarkError(
        'Unavailable',
        'Live migration needs agent hosts (bulwark serve --agent-listen).',
      );
    if (s.vm_state !== 'active' || s.task_state !== null)
      throw conflict(
        `Cannot 'os-migrateLive' instance ${s.id} while it is in vm_state ${s.vm_state}${s.task_state ? ` and task_state ${s.task_state}` : ''}.`,
      );
    this.driverOf(s); // its host must be connected
    const from = s.host as string;
    if (opts.host && opts.host === from)
      throw badRequest(`The server is already on host ${from}; choose another host.`);
    const migrationId = uuid();
    const to = await this.claimMoveOf(s, {
      host: opts.host,
      mover: this.migrator,
      busy: { task: 'migrating', status: 'MIGRATING' },
      migration: { id: migrationId, type: 'live-migration', status: 'preparing', oldVmState: null },
    });
    await this.record(this.db, s, auth, 'action:live-migrate', { host: { from, to } });
    this.tasks.track(s.id, this.runLiveMigration(s, from, to, migrationId));
    return migrationId;
  }

  private async runLiveMigration(s: Server, from: string, to: string, migrationId: string): Promise<void> {
    const mark = (set: Partial<Schema['migrations']>) =>
      this.db
        .updateTable('migrations')
        .set({ ...set, updated_at: nowIso() })
        .where('id', '=', migrationId)
        .execute();
    try {
      if (!this.migrator) throw new BulwarkError('Unavailable', 'no migrator');
      await this.migrator.live({
        serverId: s.id,
        spec: await this.specFor(s),
        from,
        to,
        onProgress: async (p) => {
          await mark({
            status: 'running',
            memory_total_bytes: p.memoryTotal,
            memory_processed_bytes: p.memoryProcessed,
            memory_remaining_bytes: p.memoryRemaining,
            disk_total_bytes: p.diskTotal,
            disk_processed_bytes: p.diskProcessed,
          });
        },
      });
      await this.db
        .updateTable('servers')
        .set({ host: to, task_state: null, status: 'ACTIVE', updated_at: nowIso() })
        .where('id', '=', s.id)
        .execute();
      await mark({ status: 'completed' });
      await this.migrator.moved(from).catch(() => undefined);
    } catch (err) {
      // Still on the source: its claim goes back there.
      await this.db.updateTable('placements').set({ host: from }).where('server_id', '=', s.id).execute();
      await this.db
        .updateTable('servers')
        .set({ task_state: null, status: 'ACTIVE', updated_at: nowIso() })
        .where('id', '=', s.id)
        .execute();
      // QEMU's words may hold bytes a text column refuses.
      const why = (err instanceof Error ? err.message : String(err)).replace(/[^\x20-\x7e\n]/g, '?');
      await mark({ status: 'error', error: why.slice(0, 2000) });
    }
  }

  /** Nova's os-migrations rows (admin: every project's), newest first; `serverId` narrows to one server's. */
  async listMigrations(auth: AuthContext, serverId?: string): Promise<Selectable<Schema['migrations']>[]> {
    if (serverId) await this.get(auth, serverId);
    return this.db
      .selectFrom('migrations')
      .selectAll()
      .$if(!!serverId, (q) => q.where('server_id', '=', serverId as string))
      .$if(!auth.isAdmin, (q) => q.where('project_id', '=', auth.projectId ?? ''))
      .orderBy('created_at', 'desc')
      .execute();
  }

  // ---- encrypted root disks (docs/volumes.md) ---------------------------------------------------

  /**
   * Every new server's root overlay is LUKS-encrypted with its own key from
   * the key manager (owned by the server's project), made once at build. With
   * a key manager that fails, the build fails (ERROR), never unencrypted.
   */
  private async createRootDiskKey(s: Server): Promise<void> {
    if (!this.keys || s.root_key_secret_id) return;
    const row = await this.db
      .selectFrom('servers')
      .select('root_key_secret_id')
      .where('id', '=', s.id)
      .executeTakeFirst();
    if (row?.root_key_secret_id) {
      s.root_key_secret_id = row.root_key_secret_id;
      return;
    }
    let secretId: string;
    try {
      secretId = await this.keys.createKey(s.project_id, {
        name: `root-disk-${s.id}`,
        bits: 256,
        purpose: 'root-disk-encryption',
      });
    } catch (err) {
      throw new BulwarkError(
        'Unavailable',
        `The key for the server's encrypted disk could not be created in the key manager: ${(err as Error).message}`,
        { cause: err },
      );
    }
    await this.db
      .updateTable('servers')
      .set({ root_key_secret_id: secretId })
      .where('id', '=', s.id)
      .execute();
    s.root_key_secret_id = secretId;
  }

  /** The driver asks for it when it creates the overlay and at every start; read for the owner, in memory only. */
  private async rootDiskKey(id: string): Promise<Buffer> {
    const row = await this.db
      .selectFrom('servers')
      .select(['project_id', 'root_key_secret_id'])
      .where('id', '=', id)
      .executeTakeFirst();
    if (!row?.root_key_secret_id) throw new BulwarkError('Unavailable', `Server ${id} has no disk key.`);
    if (!this.keys) throw new BulwarkError('Unavailable', 'No key manager is enabled.');
    return this.keys.readKeyFor(row.project_id, row.root_key_secret_id);
  }

  /** After the guest and its disk are gone, the key goes too. */
  private async deleteRootDiskKey(id: string): Promise<void> {
    const row = await this.db
      .selectFrom('servers')
      .select(['project_id', 'root_key_secret_id'])
      .where('id', '=', id)
      .executeTakeFirst();
    if (!row?.root_key_secret_id || !this.keys) return;
    await this.keys.deleteKeyFor(row.project_id, row.root_key_secret_id);
    await this.db.updateTable('servers').set({ root_key_secret_id: null }).where('id', '=', id).execute();
  }
}

const SECURE_BOOT_MISSING =
  'Secure Boot is not supported by host: the image requires it (os_secure_boot=required) and this host has no Secure Boot firmware (OVMF_CODE_4M.secboot.fd). The server was not booted without it.';

/** What the record should say given what the host sees. */
function vmStateOf(state: GuestState): VmState {
  switch (state) {
    case 'running':
      return 'active';
    case 'paused':
      return 'paused';
    case 'suspended':
      return 'suspended';
    case 'shutoff':
    case 'missing':
      return 'stopped';
    case 'crashed':
      return 'error';
  }
}

/** The fault of a server whose QEMU ended unasked while no one watched (`when`: what found it gone). */
function qemuGoneFault(when: string): string {
  return JSON.stringify({
    code: 500,
    message: `The server's QEMU process was gone when ${when} (it crashed or was killed, or the host rebooted); the server is SHUTOFF. Start it again with \`openstack server start\`.`,
    created: nowIso(),
  });
}
