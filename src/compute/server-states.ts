/**
 * Nova's server state model: API status, vm_state, task_state and power_state,
 * and which actions each state allows. Pure data, used by servers.ts.
 */
export const POWER = { NOSTATE: 0, RUNNING: 1, PAUSED: 3, SHUTDOWN: 4, CRASHED: 6, SUSPENDED: 7 } as const;

export type VmState =
  | 'building'
  | 'active'
  | 'stopped'
  | 'paused'
  | 'suspended'
  | 'resized'
  | 'error'
  | 'deleted';

export type ServerAction = 'start' | 'stop' | 'reboot' | 'pause' | 'unpause' | 'suspend' | 'resume';

interface Transition {
  from: readonly VmState[];
  task: string;
  /** API status while the task runs. */
  busyStatus: string;
  to: VmState;
}

export const TRANSITIONS: Record<ServerAction, Transition> = {
  start: { from: ['stopped'], task: 'powering-on', busyStatus: 'SHUTOFF', to: 'active' },
  stop: { from: ['active', 'error'], task: 'powering-off', busyStatus: 'ACTIVE', to: 'stopped' },
  reboot: { from: ['active'], task: 'rebooting', busyStatus: 'REBOOT', to: 'active' },
  pause: { from: ['active'], task: 'pausing', busyStatus: 'ACTIVE', to: 'paused' },
  unpause: { from: ['paused'], task: 'unpausing', busyStatus: 'PAUSED', to: 'active' },
  suspend: { from: ['active'], task: 'suspending', busyStatus: 'ACTIVE', to: 'suspended' },
  resume: { from: ['suspended'], task: 'resuming', busyStatus: 'SUSPENDED', to: 'active' },
};

export const STATUS_OF: Record<VmState, { status: string; power: number }> = {
  building: { status: 'BUILD', power: POWER.NOSTATE },
  active: { status: 'ACTIVE', power: POWER.RUNNING },
  stopped: { status: 'SHUTOFF', power: POWER.SHUTDOWN },
  paused: { status: 'PAUSED', power: POWER.PAUSED },
  suspended: { status: 'SUSPENDED', power: POWER.SUSPENDED },
  // A cold migration waiting for confirmResize/revertResize; its power is what the guest does there.
  resized: { status: 'VERIFY_RESIZE', power: POWER.RUNNING },
  error: { status: 'ERROR', power: POWER.NOSTATE },
  deleted: { status: 'DELETED', power: POWER.NOSTATE },
};
