/** What the scheduler knows about one hypervisor host (a row of `hosts` plus its current claims). */
export interface HostView {
  name: string;
  /** Availability zone (Nova's `nova` by default). */
  zone: string;
  /** Host aggregates the host belongs to. */
  aggregates: readonly string[];
  /** What the host can offer guests: `tpm`, `secure-boot`, `uefi`, ... */
  features: readonly string[];
  /** Only `up` hosts receive servers; `down` (missed heartbeats) and `disabled` (by an admin) do not. */
  state: 'up' | 'down' | 'disabled';
  capacity: Resources;
  used: Resources;
  /** Overcommit ratios (Nova's cpu/ram/disk_allocation_ratio). */
  ratios: Resources;
}

export interface Resources {
  vcpus: number;
  ramMiB: number;
  diskGiB: number;
}

export const GROUP_POLICIES = ['affinity', 'anti-affinity', 'soft-affinity', 'soft-anti-affinity'] as const;
export type GroupPolicy = (typeof GROUP_POLICIES)[number];

/** The server group a request belongs to, with where its members already are. */
export interface GroupView {
  id: string;
  policy: GroupPolicy;
  /** anti-affinity only: at most this many members per host (Nova's rule; default 1). */
  maxServerPerHost?: number;
  /** One entry per placed member: the host it is on. */
  memberHosts: readonly string[];
}

export interface PlacementRequest {
  resources: Resources;
  /** Required availability zone, if the user asked for one. */
  zone?: string;
  /** Aggregates the host must be in (all of them), e.g. from the flavor's `aggregate_instance_extra_specs`. */
  aggregates?: readonly string[];
  /** Features the guest needs (its vTPM, Secure Boot). */
  features?: readonly string[];
  group?: GroupView;
}

/** Why no host was chosen: how many hosts each filter removed (for logs; the user sees Nova's message). */
export interface NoValidHost {
  ok: false;
  rejected: Record<string, number>;
}
export interface Placed {
  ok: true;
  /** Every host that passed the filters, best first (the claim tries them in order). */
  ranked: string[];
}
export type ScheduleResult = Placed | NoValidHost;

/** Nova's fault text, word for word: clients and runbooks match on it. */
export const NO_VALID_HOST = 'No valid host was found. There are not enough hosts available.';
