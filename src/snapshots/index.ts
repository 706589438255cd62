export { effectivePolicy, type LifecyclePolicy, planCreate, planPrune } from './lifecycle.js';
export { purposeOf, requiredDescription, snapshotName, utcStamp } from './naming.js';
export { type PolicyInput, type PolicyScope, SnapshotPolicyService } from './policies.js';
export { SnapshotScheduler } from './scheduler.js';
export { type CreateSnapshotInput, type Snapshot, type SnapshotKind, SnapshotService } from './snapshots.js';
