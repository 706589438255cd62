import { BulwarkError, badRequest, conflict, forbidden } from '../errors.js';
import { checkUserMetadata, isPlatformKey } from '../governance/server-metadata.js';
import type { NetworkService } from '../network/networks.js';
import type { ZoneService } from '../network/zones.js';
import type { AuthContext } from '../policy/context.js';
import type { Store } from '../store/database.js';
import { featuresFromQemu } from './cpu-features.js';
import { extraSpecsOf, type Flavor, type FlavorService } from './flavors.js';
import { type Image, type ImageService, propertiesOf } from './images.js';
import {
  flavorCreateCommand,
  MiB,
  type Profile,
  type ProfileFlavor,
  parseProfile,
  profileFlavor,
  sameSpecs,
} from './profile-format.js';
import { type GuestPlan, type HostCapabilities, resolveGuestPlan } from './properties.js';
import type { ServerService } from './servers.js';

/** What an import would make (dry run) or made. */
export interface ImportResult {
  dryRun: boolean;
  server: { id: string; name: string; status: string } | null;
  flavor: { id: string; name: string; created: boolean };
  image: { id: string; name: string };
  network: { id: string; name: string; zone: string } | null;
}

/**
 * Imports Hyper-NixOS profiles as servers and exports servers as profiles
 * (docs/profiles.md). Everything is checked before anything is made: a
 * refused import leaves no server and no flavor behind.
 */
export class ProfileService {
  constructor(
    private readonly store: Store,
    private readonly flavors: FlavorService,
    private readonly images: ImageService,
    private readonly servers: ServerService,
    private readonly networks: NetworkService,
    private readonly zones: ZoneService,
    private readonly host: HostCapabilities,
  ) {}

  async import(
    auth: AuthContext,
    data: unknown,
    opts: { dryRun: boolean; createFlavor: boolean },
  ): Promise<ImportResult> {
    if (!auth.projectId) throw badRequest('A project-scoped token is needed to import a profile.');
    if (opts.createFlavor && !auth.isAdmin)
      throw forbidden('Only administrators let an import create a flavor; ask one, or create_flavor=false.');
    const p = parseProfile(data);
    if (p.metadata) checkUserMetadata(p.metadata);
    const want = profileFlavor(p);
    const image = await this.image(auth, (p.disks[0] as Profile['disks'][number]).image);
    // The platform's own checks of the result (firmware vs image, TPM, host CPU flags, memory floor), before any write.
    resolveGuestPlan(propertiesOf(image), want.extraSpecs, this.host, want.ram);
    const network = p.network ? await this.network(auth, p.network) : null;
    const existing = await this.matchingFlavor(auth, want);
    const flavorName = existing?.name ?? (await this.freeFlavorName(`profile-${p.name}`));
    if (!existing && !opts.createFlavor)
      throw conflict(
        `No flavor has this profile's size and limits. An administrator can create it: ${flavorCreateCommand(flavorName, want)} (or import with create_flavor as an administrator).`,
      );
    const result: ImportResult = {
      dryRun: opts.dryRun,
      server: null,
      flavor: { id: existing?.id ?? '', name: flavorName, created: !existing },
      image: { id: image.id, name: image.name ?? image.id },
      network: network ? { id: network.id, name: network.name, zone: network.zone } : null,
    };
    if (opts.dryRun) return result;
    const flavor = existing ?? (await this.createFlavor(flavorName, want));
    result.flavor.id = flavor.id;
    try {
      const s = await this.servers.create(auth, {
        name: p.name,
        imageRef: image.id,
        flavorRef: flavor.id,
        metadata: p.metadata ?? {},
        hints: {},
        userData: undefined,
        networks: network ? [{ uuid: network.id }] : 'none',
        securityGroups: undefined,
      });
      result.server = { id: s.id, name: s.name, status: s.status };
      return result;
    } catch (err) {
      // Refused (quota, metadata rule, bad network): the flavor made for it goes too. Held for
      // approval (Accepted): kept, the approved create boots on it.
      const held = err instanceof BulwarkError && err.kind === 'Accepted';
      if (!existing && !held) await this.flavors.delete(flavor.id).catch(() => undefined);
      throw err;
    }
  }

  /** The server as a profile; Conflict naming what a profile cannot express (never a lossy export). */
  async export(auth: AuthContext, serverId: string): Promise<Profile> {
    const s = await this.servers.get(auth, serverId);
    const flavor = JSON.parse(s.flavor) as { vcpus: number; ram: number; disk: number };
    const plan = (JSON.parse(s.guest) as { plan: GuestPlan }).plan;
    const cannot: string[] = [];
    if (plan.cpu.pinning?.length) cannot.push('CPU pinning (hw:cpu_policy=dedicated)');
    if (plan.guestAgent) cannot.push('a guest agent channel');
    const { totalBytesSec, ...otherIo } = plan.io;
    if (Object.values(otherIo).some((v) => v)) cannot.push('per-direction or IOPS disk limits');
    if (totalBytesSec && totalBytesSec % MiB !== 0) cannot.push('a disk bandwidth that is not whole MiB/s');
    if (plan.firmware.type === 'uefi' && plan.firmware.secureBoot && plan.machine !== 'q35')
      cannot.push('Secure Boot on a non-q35 machine');
    const nets = await this.serverNetworks(s.id);
    if (nets.length > 1) cannot.push(`${nets.length} networks (a profile has one)`);
    if (cannot.length)
      throw conflict(`Server ${s.name} cannot be exported as a profile: it has ${cannot.join(', ')}.`);
    const image = await this.images.get(auth, s.image_id).catch(() => null);
    const md = Object.fromEntries(
      Object.entries(JSON.parse(s.metadata) as Record<string, string>).filter(([k]) => !isPlatformKey(k)),
    );
    const limits = {
      ...(plan.cpu.quotaPercent !== undefined ? { cpu_quota_percent: plan.cpu.quotaPercent } : {}),
      ...(plan.memoryMaxMiB !== undefined ? { memory_max_mb: plan.memoryMaxMiB } : {}),
      ...(totalBytesSec ? { io_bandwidth_mb: totalBytesSec / MiB } : {}),
    };
    const net = nets[0];
    return {
      name: s.name,
      cpus: flavor.vcpus,
      memory: flavor.ram,
      disks: [{ name: 'root', size_gb: flavor.disk, image: image?.name ?? s.image_id }],
      ...(net ? { network: { zone: net.zone, name: net.name } } : {}),
      ...(Object.keys(limits).length ? { limits } : {}),
      firmware: {
        type: plan.firmware.type,
        secure_boot: plan.firmware.type === 'uefi' && plan.firmware.secureBoot,
      },
      ...(plan.tpm ? { tpm: { version: plan.tpm.version, model: plan.tpm.model } } : {}),
      ...(plan.cpu.features?.length ? { cpu_features: featuresFromQemu(plan.cpu.features) } : {}),
      ...(Object.keys(md).length ? { metadata: md } : {}),
    };
  }

  /** The project's image by id or name; ambiguous or missing: 400. */
  private async image(auth: AuthContext, ref: string): Promise<Image> {
    const byId = await this.images.get(auth, ref).catch(() => null);
    if (byId) return byId;
    const named = await this.images.list(auth, { name: ref });
    if (named.length > 1)
      throw badRequest(
        `Profile field /disks/0/image: ${named.length} images are named '${ref}'; give its ID.`,
      );
    if (!named[0])
      throw badRequest(`Profile field /disks/0/image: no image '${ref}' is visible to this project.`);
    return named[0];
  }

  /** The network in the profile's zone (by name if given) the project may use. */
  private async network(auth: AuthContext, want: { zone: string; name?: string | undefined }) {
    await this.zones.get(want.zone).catch((err: unknown) => {
      throw err instanceof BulwarkError && err.kind === 'NotFound'
        ? badRequest(`Profile field /network/zone: there is no security zone '${want.zone}'.`)
        : err;
    });
    const inZone = (await this.networks.listNetworks(auth, { name: want.name })).filter(
      (n) =>
        n.zone === want.zone && (auth.isAdmin ? n.project_id === auth.projectId || n.shared === 1 : true),
    );
    if (inZone.length === 0)
      throw badRequest(
        `Profile field /network: no network${want.name ? ` named '${want.name}'` : ''} in zone '${want.zone}' is available to this project.`,
      );
    if (inZone.length > 1)
      throw badRequest(
        `Profile field /network: ${inZone.length} networks are in zone '${want.zone}'; name one with network.name.`,
      );
    return inZone[0] as (typeof inZone)[number];
  }

  /** An existing flavor the caller may use with exactly the profile's size and extra specs (first by name). */
  private async matchingFlavor(auth: AuthContext, want: ProfileFlavor): Promise<Flavor | undefined> {
    const all = await this.flavors.list({ includePrivate: auth.isAdmin });
    return all
      .filter(
        (f) =>
          f.vcpus === want.vcpus &&
          f.ram === want.ram &&
          f.disk === want.disk &&
          sameSpecs(extraSpecsOf(f), want.extraSpecs),
      )
      .sort((a, b) => (a.name < b.name ? -1 : 1))[0];
  }

  /** `name`, or with a suffix when a flavor already has it. */
  private async freeFlavorName(name: string): Promise<string> {
    const taken = new Set((await this.flavors.list({ includePrivate: true })).map((f) => f.name));
    let unique = name;
    for (let i = 2; taken.has(unique); i++) unique = `${name}-${i}`;
    return unique;
  }

  /** A private flavor for the profile (administrators only). */
  private async createFlavor(name: string, want: ProfileFlavor): Promise<Flavor> {
    const f = await this.flavors.create({
      name,
      vcpus: want.vcpus,
      ram: want.ram,
      disk: want.disk,
      isPublic: false,
      description: 'Made by a profile import (docs/profiles.md)',
    });
    try {
      await this.flavors.setExtraSpecs(f.id, want.extraSpecs);
    } catch (err) {
      await this.flavors.delete(f.id);
      throw err;
    }
    return { ...f, extra_specs: JSON.stringify(want.extraSpecs) };
  }

  private serverNetworks(serverId: string) {
    return this.store.db
      .selectFrom('ports')
      .innerJoin('networks', 'networks.id', 'ports.network_id')
      .select(['networks.id', 'networks.name', 'networks.zone'])
      .where('ports.device_id', '=', serverId)
      .orderBy('ports.created_at')
      .execute();
  }
}
