import { chmodSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { HostReport } from '../../compute/hosts.js';
import { createQemuDriver } from '../qemu-driver.js';
import { type AgentIdentity, openChannel, sendHeartbeat } from './client.js';
import { AgentFirewall, serveHost } from './host-service.js';
import { migrationCalls } from './migration-calls.js';

/**
 * The running agent: reports every `intervalMs`, and keeps its driver
 * channel to the control plane open (reconnecting when it drops), serving
 * its own QemuDriver (guests under `<dir>/instances`) and firewall on it.
 */
export async function runAgent(opts: {
  dir: string;
  endpoint: string;
  id: AgentIdentity;
  intervalMs: number;
  /** What the host reports (capacity, health, hardening readings): read afresh for every heartbeat. */
  report: () => Promise<HostReport>;
  log: (line: string) => void;
}): Promise<{ stop(): Promise<void> }> {
  // Traversable, not listable: each guest's user reaches only its own 0700 dir under instances/.
  process.umask(0o077);
  mkdirSync(opts.dir, { recursive: true, mode: 0o711 });
  chmodSync(opts.dir, 0o711);
  const driver = await createQemuDriver({
    baseDir: join(opts.dir, 'instances'),
    cgroupParent: `bulwark-agent-${opts.id.name}`,
  });
  const firewall = new AgentFirewall();
  let stopped = false;
  let channel: { close(): void } | null = null;
  const beat = () =>
    opts
      .report()
      .then((report) => sendHeartbeat(opts.endpoint, opts.id, report))
      .catch((err: Error) => opts.log(`report failed: ${err.message}`));
  const connect = async (): Promise<void> => {
    if (stopped) return;
    try {
      const io = await openChannel(opts.endpoint, opts.id);
      const peer = serveHost(io, driver, firewall, migrationCalls(driver, opts.id), () =>
        opts.log(`attached: the control plane drives host ${opts.id.name}`),
      );
      channel = peer;
      opts.log(`driver channel open to ${opts.endpoint}`);
      peer.onClose(() => {
        channel = null;
        if (!stopped) setTimeout(() => void connect(), 1000).unref();
      });
    } catch (err) {
      opts.log(`driver channel failed: ${(err as Error).message}; retrying`);
      setTimeout(() => void connect(), 2000).unref();
    }
  };
  await beat();
  await connect();
  const timer = setInterval(() => void beat(), opts.intervalMs);
  return {
    async stop() {
      stopped = true;
      clearInterval(timer);
      channel?.close();
      firewall.dataplane.close();
      // Guests keep running, as with `bulwark serve`: only the QMP connections close.
      await driver.close();
    },
  };
}
