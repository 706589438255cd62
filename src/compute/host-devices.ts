import { type AuditWriter, systemEvent } from '../audit/writer.js';
import { conflict } from '../errors.js';
import type { ApprovalService } from '../governance/approvals.js';
import type { AuthContext } from '../policy/context.js';
import type { Store } from '../store/database.js';
import { nowIso } from '../util/ids.js';
import {
  assertMayPassThrough,
  type PassthroughCaller,
  type PassthroughConfig,
  type PassthroughPlan,
  type PassthroughRequest,
} from './passthrough-policy.js';
import type { Server, ServerService } from './servers.js';

/** Reads the host (sysfs) and decides: host/passthrough.ts#planPassthrough. */
export type PlanPassthrough = (
  caller: PassthroughCaller,
  request: PassthroughRequest,
  config: PassthroughConfig,
) => Promise<PassthroughPlan>;

export interface HostDeviceRequest {
  pci: string[];
  usb: { vendorId: string; productId: string }[];
}

/**
 * Host device passthrough to a server (guide 11, docs/passthrough-and-agent.md):
 * the cloud admin only, devices from the site allow-list only, whole IOMMU
 * groups only (the policy in passthrough-policy.ts, read from sysfs), held for
 * a second admin's approval while the `device-passthrough` trigger is on, and
 * every attach and detach audited. The server must be stopped: the devices
 * are in its QEMU command line from its next start.
 */
export class HostDeviceService {
  constructor(
    private readonly store: Store,
    private readonly servers: ServerService,
    private readonly audit: AuditWriter,
    private readonly approvals: ApprovalService,
    private readonly config: PassthroughConfig,
    private readonly plan: PlanPassthrough,
  ) {
    approvals.register('device-passthrough', async (requester, payload, approval) => {
      const p = payload as HostDeviceRequest & { serverId: string };
      return { host_devices: await this.attach(requester, p.serverId, p, approval) };
    });
  }

  private stopped(s: Server, verb: string): void {
    if (s.vm_state !== 'stopped')
      throw conflict(
        `Stop server ${s.id} first (it is ${s.status}): host devices are ${verb} while it is off.`,
      );
  }

  async show(auth: AuthContext, serverId: string): Promise<PassthroughPlan | null> {
    assertMayPassThrough(auth);
    const s = await this.servers.get(auth, serverId);
    return s.host_devices ? (JSON.parse(s.host_devices) as PassthroughPlan) : null;
  }

  /** Decides against the host now (again at approval time) and records the plan; a pending approval throws. */
  async attach(
    auth: AuthContext,
    serverId: string,
    req: HostDeviceRequest,
    approval?: { id: string; approvedBy: string },
  ): Promise<PassthroughPlan> {
    assertMayPassThrough(auth); // before anything about the server or the host is looked at
    const s = await this.servers.get(auth, serverId);
    this.stopped(s, 'attached');
    const plan = await this.plan(auth, { serverId: s.id, pci: req.pci, usb: req.usb }, this.config);
    if (!approval && (await this.approvals.applies('device-passthrough')))
      await this.approvals.hold(
        auth,
        'device-passthrough',
        { serverId: s.id, ...req },
        `pass ${plan.summary} through to server ${s.name} (${s.id})`,
      );
    const r = await this.store.db
      .updateTable('servers')
      .set({ host_devices: JSON.stringify(plan), updated_at: nowIso() })
      .where('id', '=', s.id)
      .where('vm_state', '=', 'stopped')
      .where('task_state', 'is', null)
      .executeTakeFirst();
    if (Number(r.numUpdatedRows) !== 1)
      throw conflict(`Server ${s.id} changed state; stop it and try again.`);
    await this.servers.recordChange(s, auth, 'host-devices', {
      host_devices: {
        from: s.host_devices ? (JSON.parse(s.host_devices) as PassthroughPlan).summary : null,
        to: plan.summary,
      },
    });
    await this.audit.append(
      systemEvent({
        action: 'compute:host_device:attach',
        reason: `${plan.summary}${approval ? ` (approved by ${approval.approvedBy}, approval ${approval.id})` : ''}`,
        target: { type: 'server', id: s.id },
        actor: auth,
      }),
    );
    return plan;
  }

  async detach(auth: AuthContext, serverId: string): Promise<void> {
    assertMayPassThrough(auth);
    const s = await this.servers.get(auth, serverId);
    this.stopped(s, 'detached');
    if (!s.host_devices) return;
    const was = (JSON.parse(s.host_devices) as PassthroughPlan).summary;
    await this.store.db
      .updateTable('servers')
      .set({ host_devices: null, updated_at: nowIso() })
      .where('id', '=', s.id)
      .execute();
    await this.servers.recordChange(s, auth, 'host-devices', { host_devices: { from: was, to: null } });
    await this.audit.append(
      systemEvent({
        action: 'compute:host_device:detach',
        reason: was,
        target: { type: 'server', id: s.id },
        actor: auth,
      }),
    );
  }
}
