/**
 * What the control plane does when a guest's vTPM emulator (swtpm) dies
 * under it (docs/compute.md, "vTPM emulator dying"). Pure: the budget of
 * automatic restarts and the faults that say what happened. The host has
 * already stopped the guest (a guest never runs with its TPM gone);
 * servers.ts restarts it from the saved, encrypted TPM state, up to
 * `limit` times an hour, then leaves it ERROR for an operator.
 */

/** Automatic restarts per server within `VTPM_RESTART_WINDOW_MS` (`serve --vtpm-restarts`). */
export const DEFAULT_VTPM_RESTARTS = 3;
export const VTPM_RESTART_WINDOW_MS = 3_600_000;
/** The wait before restart n (1-based) is n times this: a swtpm that dies at once is not spun. */
export const VTPM_RESTART_DELAY_MS = 5000;

/** Audit actions (security events: audit/security-events.ts). */
export const VTPM_AUDIT = {
  lost: 'server:vtpm_lost',
  restart: 'server:vtpm_restart',
  recovered: 'server:vtpm_recovered',
  exhausted: 'server:vtpm_restarts_exhausted',
} as const;

/** The fault's first words: how reconcile knows a restart was pending when the daemon stopped. */
export const VTPM_LOST_PREFIX = "The server's vTPM emulator (swtpm) exited";

/** A stored fault (JSON) that is a vTPM loss's. */
export function isVtpmLostFault(fault: string | null): boolean {
  if (!fault) return false;
  try {
    const message = (JSON.parse(fault) as { message?: unknown }).message;
    return typeof message === 'string' && message.startsWith(VTPM_LOST_PREFIX);
  } catch {
    return false;
  }
}

/**
 * Restarts already spent, from this server's audit records of the last hour
 * (oldest first): those after the last time the budget ran out, since an
 * operator's start after that gives a fresh budget.
 */
export function restartsUsed(events: readonly { action: string }[]): number {
  let used = 0;
  for (const e of events) {
    if (e.action === VTPM_AUDIT.exhausted) used = 0;
    else if (e.action === VTPM_AUDIT.restart) used++;
  }
  return used;
}

export type VtpmDecision =
  | { restart: true; attempt: number; delayMs: number; fault: string }
  | { restart: false; fault: string };

/** Restart (attempt `used + 1`, after a growing wait) or stop trying, with the fault to show. */
export function decideVtpmRecovery(why: string, used: number, limit: number): VtpmDecision {
  const what = `${VTPM_LOST_PREFIX} while the guest was running (${why}), so the guest was stopped: it must not run with its TPM gone (measured boot and sealed secrets would silently break).`;
  if (used >= limit)
    return {
      restart: false,
      fault: `${what} Automatic restarts are used up (${limit} an hour), so the server is ERROR and was not restarted. Its TPM state is kept. Look at the host's swtpm log (instances/.host/<server id>/swtpm.log in the data dir) for why it ends, then run \`openstack server stop\` and \`openstack server start\` on it.`,
    };
  const attempt = used + 1;
  const delayMs = attempt * VTPM_RESTART_DELAY_MS;
  return {
    restart: true,
    attempt,
    delayMs,
    fault: `${what} Bulwark restarts the vTPM from its saved (encrypted) state and the guest in ${Math.round(delayMs / 1000)} s (automatic restart ${attempt} of ${limit} an hour).`,
  };
}
