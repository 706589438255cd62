import { resolve } from 'node:path';
import type { Command } from 'commander';
import { SYSCTL_BASELINE } from '../../compliance/host-checks.js';
import type { HostReport } from '../../compute/hosts.js';
import { joinControlPlane, loadIdentity, saveIdentity } from '../../host/agent/client.js';
import { runAgent } from '../../host/agent/run.js';
import { probeCapabilities, probeCapacity } from '../../host/capabilities.js';
import { compactFacts, probeHardening, REAL_ROOTS } from '../../host/hardening.js';
import { withClient, withFormat } from '../common.js';
import { printList, printObject } from '../output.js';
import { waitWithStatus } from '../progress.js';

const EVACUATED = ['server_id', 'name', 'action', 'status', 'dest_host', 'error'];
/** A text progress bar for N of M servers. */
const bar = (done: number, total: number, width = 20) => {
  const n = total ? Math.round((done / total) * width) : width;
  return `[${'#'.repeat(n)}${'-'.repeat(width - n)}]`;
};
const globals = (cmd: Command) =>
  cmd.optsWithGlobals<{ osCloud?: string; format: 'table' | 'json' | 'value' }>();

/**
 * What this machine reports: its size, what it can offer guests (docs/multi-host.md), and its hardening
 * readings for the compliance checks (docs/compliance.md).
 */
async function localReport(dataDir: string): Promise<HostReport> {
  const caps = probeCapabilities();
  return {
    capacity: probeCapacity(dataDir),
    features: [
      ...(caps.uefi ? ['uefi'] : []),
      ...(caps.secureBoot ? ['secure-boot'] : []),
      ...(caps.tpm ? ['tpm'] : []),
    ],
    health: {
      uptime_s: Math.round(process.uptime()),
      hardening: compactFacts(
        await probeHardening(
          REAL_ROOTS,
          SYSCTL_BASELINE.map((x) => x.name),
        ),
      ),
    },
  };
}

/** `bulwark host ...` (admin) and `bulwark agent` (runs on each hypervisor host). */
export function registerHostCommands(program: Command): void {
  const host = program.command('host').description('Hypervisor hosts and agent enrollment (admin)');
  withFormat(host.command('list').description('List hosts, their capacity, state and last report')).action(
    async (_o, cmd: Command) => {
      const g = globals(cmd);
      await withClient(g, async (c) => {
        const { hosts } = await c.request<{ hosts: Record<string, unknown>[] }>('bulwark', 'GET', '/hosts');
        printList(
          g.format,
          ['name', 'state', 'zone', 'local', 'capacity', 'features', 'last_heartbeat'],
          hosts,
        );
      });
    },
  );
  for (const [verb, state, what] of [
    ['disable', 'disabled', 'Take a host out of scheduling (its servers keep running)'],
    ['enable', 'up', 'Put a disabled host back into scheduling'],
  ] as const) {
    withFormat(host.command(`${verb} <name>`).description(what)).action(
      async (name: string, _o: unknown, cmd: Command) => {
        const g = globals(cmd);
        await withClient(g, async (c) => {
          const r = await c.request<{ host: Record<string, unknown> }>(
            'bulwark',
            'PATCH',
            `/hosts/${encodeURIComponent(name)}`,
            { host: { state } },
          );
          printObject(g.format, r.host, ['name', 'state', 'zone', 'last_heartbeat']);
        });
      },
    );
  }
  withFormat(
    host
      .command('evacuate <name>')
      .description(
        'Disable a host, then move every server off it: running ones live, stopped ones cold (docs/multi-host.md)',
      )
      .option('--no-wait', 'return once started; poll with `bulwark host evacuation show ID`'),
  ).action(async (name: string, o: { wait: boolean }, cmd: Command) => {
    const g = globals(cmd);
    await withClient(g, async (c) => {
      type Ev = {
        id: string;
        status: string;
        total: number;
        done: number;
        servers: Record<string, unknown>[];
      };
      const started = (
        await c.request<{ evacuation: Ev }>(
          'bulwark',
          'POST',
          `/hosts/${encodeURIComponent(name)}/evacuate`,
          {},
        )
      ).evacuation;
      const e = o.wait
        ? await waitWithStatus(
            `evacuate ${name}`,
            async () =>
              (await c.request<{ evacuation: Ev }>('bulwark', 'GET', `/evacuations/${started.id}`))
                .evacuation,
            (v) => (v.status === 'running' ? null : ''),
            (v) => `${v.done}/${v.total} servers ${bar(v.done, v.total)} ${v.status}`,
            3_600_000,
          )
        : started;
      if (g.format === 'table') console.error(`evacuation ${e.id}: ${e.status}`);
      printList(g.format, EVACUATED, e.servers);
      if (e.status === 'failed') process.exitCode = 1;
    });
  });
  withFormat(
    host
      .command('evacuation')
      .command('show <id>')
      .description("An evacuation's progress and each server's result"),
  ).action(async (id: string, _o: unknown, cmd: Command) => {
    const g = globals(cmd);
    await withClient(g, async (c) => {
      const { evacuation } = await c.request<{
        evacuation: Record<string, unknown> & { servers: Record<string, unknown>[] };
      }>('bulwark', 'GET', `/evacuations/${encodeURIComponent(id)}`);
      if (g.format === 'json') return printObject(g.format, evacuation, Object.keys(evacuation));
      printObject(g.format, evacuation, ['id', 'host', 'status', 'done', 'total', 'updated_at']);
      printList(g.format, EVACUATED, evacuation.servers);
    });
  });
  const tokens = host.command('join-token').description('One-time tokens agents join with');
  withFormat(
    tokens
      .command('create')
      .description('Create a one-time, expiring join token for one host name')
      .requiredOption('--host <name>', 'the name the host will have')
      .option('--ttl <seconds>', 'seconds until the token expires (at most 86400)', '3600'),
  ).action(async (o: { host: string; ttl: string }, cmd: Command) => {
    const g = globals(cmd);
    const ttl = Number(o.ttl);
    if (!Number.isSafeInteger(ttl)) throw new Error(`--ttl ${o.ttl} is not a whole number of seconds`);
    await withClient(g, async (c) => {
      const r = await c.request<{ join_token: Record<string, unknown> }>(
        'bulwark',
        'POST',
        '/host-join-tokens',
        {
          join_token: { host: o.host, ttl },
        },
      );
      printObject(g.format, r.join_token, ['host', 'token', 'expires_at', 'ca_hash']);
      if (g.format === 'table')
        console.error(
          `On the host: bulwark agent --control-plane URL --endpoint AGENT_URL --data-dir DIR --token ${String(r.join_token.token)} --ca-hash ${String(r.join_token.ca_hash)}`,
        );
    });
  });

  program
    .command('agent')
    .description('Run the host agent: join once with a token, then report over mutual TLS')
    .requiredOption('--data-dir <dir>', "the agent's directory (its key 0600 and certificates)")
    .requiredOption(
      '--control-plane <url>',
      'the control plane API, e.g. https://cp.example:8443 (join only)',
    )
    .requiredOption('--endpoint <url>', "the control plane's agent endpoint (bulwark serve --agent-listen)")
    .option('--token <token>', 'one-time join token (bulwark host join-token create); first start only')
    .option('--ca-hash <sha256:hex>', "the platform CA's hash printed with the token; first start only")
    .option('--interval <seconds>', 'seconds between reports', '10')
    .action(
      async (o: {
        dataDir: string;
        controlPlane: string;
        endpoint: string;
        token?: string;
        caHash?: string;
        interval: string;
      }) => {
        const dir = resolve(o.dataDir);
        let id = loadIdentity(dir);
        if (!id) {
          if (!o.token || !o.caHash)
            throw new Error(
              `no agent identity in ${dir}: pass --token and --ca-hash from \`bulwark host join-token create\``,
            );
          id = await joinControlPlane({
            controlPlane: o.controlPlane,
            token: o.token,
            caHash: o.caHash,
            report: await localReport(dir),
          });
          saveIdentity(dir, id);
          console.log(`joined as host ${id.name}; certificate in ${dir}/agent.crt`);
        }
        const every = Math.max(1, Number(o.interval) || 10) * 1000;
        const agent = await runAgent({
          dir,
          endpoint: o.endpoint,
          id,
          intervalMs: every,
          report: () => localReport(dir),
          log: (line) => console.error(line),
        });
        console.log(`Bulwark agent ${id.name} reporting to ${o.endpoint} every ${every / 1000} s`);
        const stop = () => void agent.stop().finally(() => process.exit(0));
        process.once('SIGINT', stop);
        process.once('SIGTERM', stop);
      },
    );
}
