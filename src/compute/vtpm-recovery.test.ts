import { describe, expect, it } from 'vitest';
import {
  decideVtpmRecovery,
  isVtpmLostFault,
  restartsUsed,
  VTPM_AUDIT,
  VTPM_RESTART_DELAY_MS,
} from './vtpm-recovery.js';

const restart = { action: VTPM_AUDIT.restart };
const exhausted = { action: VTPM_AUDIT.exhausted };

describe('vTPM recovery policy', () => {
  it('counts the automatic restarts since the budget last ran out', () => {
    expect(restartsUsed([])).toBe(0);
    expect(restartsUsed([restart, restart])).toBe(2);
    expect(restartsUsed([restart, restart, exhausted])).toBe(0);
    expect(restartsUsed([restart, restart, exhausted, restart])).toBe(1);
  });

  it('restarts within the budget, each after a longer wait, saying so in the fault', () => {
    const first = decideVtpmRecovery('it ended with signal SIGKILL', 0, 3);
    expect(first).toMatchObject({ restart: true, attempt: 1, delayMs: VTPM_RESTART_DELAY_MS });
    expect(first.fault).toMatch(/exited while the guest was running \(it ended with signal SIGKILL\)/);
    expect(first.fault).toMatch(/automatic restart 1 of 3/);
    const third = decideVtpmRecovery('x', 2, 3);
    expect(third).toMatchObject({ restart: true, attempt: 3, delayMs: 3 * VTPM_RESTART_DELAY_MS });
  });

  it('refuses past the budget (or with none) and says what to do', () => {
    for (const [used, limit] of [
      [3, 3],
      [5, 3],
      [0, 0],
    ] as const) {
      const d = decideVtpmRecovery('it ended with status 1', used, limit);
      expect(d.restart).toBe(false);
      expect(d.fault).toMatch(
        /used up .*TPM state is kept.*swtpm\.log.*openstack server stop.*openstack server start/,
      );
    }
  });

  it('knows its own faults, and nothing else', () => {
    const fault = (message: string) => JSON.stringify({ code: 500, message });
    expect(isVtpmLostFault(fault(decideVtpmRecovery('x', 0, 1).fault))).toBe(true);
    expect(isVtpmLostFault(fault("The server's QEMU process ended"))).toBe(false);
    expect(isVtpmLostFault(null)).toBe(false);
    expect(isVtpmLostFault('not json')).toBe(false);
  });
});
