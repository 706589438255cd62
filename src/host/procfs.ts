import { readdir, readFile } from 'node:fs/promises';
import { basename } from 'node:path';
import { sleep } from './run.js';

/** What /proc says about a process. */
export interface ProcInfo {
  pid: number;
  /** One-letter state (R, S, D, Z, ...). */
  state: string;
  /** Start time in clock ticks since boot: with the pid, it names one process (pids are reused). */
  startTime: number;
  uid: number;
  argv: string[];
}

/** Reads /proc/<pid>; null when there is no such process. */
export async function procInfo(pid: number): Promise<ProcInfo | null> {
  if (!Number.isSafeInteger(pid) || pid <= 0) return null;
  try {
    const [stat, status, cmdline] = await Promise.all([
      readFile(`/proc/${pid}/stat`, 'utf8'),
      readFile(`/proc/${pid}/status`, 'utf8'),
      readFile(`/proc/${pid}/cmdline`, 'utf8'),
    ]);
    // The command name (field 2) may hold spaces and parentheses: fields restart after the last ')'.
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const state = rest[0] ?? '?';
    const startTime = Number(rest[19]);
    const uid = Number(/^Uid:\s+(\d+)/m.exec(status)?.[1]);
    if (!Number.isSafeInteger(startTime) || !Number.isSafeInteger(uid)) return null;
    return {
      pid,
      state,
      startTime,
      uid,
      argv: cmdline.split('\0').filter((a, i, all) => a || i < all.length - 1),
    };
  } catch {
    return null;
  }
}

/** True while the process exists and is not a zombie. */
export const isLive = (p: ProcInfo | null): p is ProcInfo => p !== null && p.state !== 'Z' && p.state !== 'X';

/** The process if it is still the one we started (same start time), alive. */
export async function sameProcess(pid: number, startTime: number): Promise<ProcInfo | null> {
  const p = await procInfo(pid);
  return isLive(p) && p.startTime === startTime ? p : null;
}

/** Waits until the process is gone (or a zombie); true if it went in time. */
export async function waitGone(pid: number, startTime: number, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (!(await sameProcess(pid, startTime))) return true;
    await sleep(50);
  }
  return !(await sameProcess(pid, startTime));
}

/** Every live process on the host that `keep` selects. */
async function liveProcesses(keep: (p: ProcInfo) => boolean): Promise<ProcInfo[]> {
  const out: ProcInfo[] = [];
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const p = await procInfo(Number(entry));
    if (isLive(p) && keep(p)) out.push(p);
  }
  return out;
}

/** Every live QEMU (qemu-system-*) process on the host. */
export const qemuProcesses = (): Promise<ProcInfo[]> =>
  liveProcesses((p) => !!p.argv[0] && basename(p.argv[0]).startsWith('qemu-system-'));

/** Every live process running as `uid` on the host. */
export const processesOf = (uid: number): Promise<ProcInfo[]> => liveProcesses((p) => p.uid === uid);
