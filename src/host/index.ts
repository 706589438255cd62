/** The host room's public surface: what runs guests on this machine. */
export {
  type CgroupLimits,
  type CgroupState,
  cgroupLimitsFor,
  detectCgroups,
  memoryLimitBytes,
  type VmCgroups,
} from './cgroups.js';
export { FakeHypervisor } from './fake-hypervisor.js';
export type { GuestSpec, GuestState, HypervisorDriver } from './hypervisor.js';
export { type AccelChoice, chooseAccel, probeAccel } from './kvm-probe.js';
export { type Accel, buildQemuArgs, validateGuestSpec } from './qemu-args.js';
export { createQemuDriver, QemuDriver, type QemuDriverOptions } from './qemu-driver.js';
export { QmpClient, QmpError, type QmpEvent } from './qmp.js';
export { ensureVmUser, removeVmUser, type VmUser, vmUserName } from './users.js';
