import { Command } from 'commander';
import { ApiError } from './client.js';
import { registerAuditCommands } from './commands/audit.js';
import { registerComputeCommands } from './commands/compute.js';
import { registerHostCommands } from './commands/hosts.js';
import { registerIdentityCommands } from './commands/identity.js';
import { registerKeyManagerCommands } from './commands/keys.js';
import { registerNetworkCommands } from './commands/network.js';
import { registerServeCommand } from './commands/serve.js';
import { registerZoneCommands } from './commands/zones.js';

const program = new Command('bulwark')
  .description('Bulwark: a security-first virtual machine platform')
  .option('--os-cloud <name>', 'cloud from clouds.yaml (default $OS_CLOUD)')
  .showHelpAfterError();

registerServeCommand(program);
registerIdentityCommands(program);
registerComputeCommands(program);
registerAuditCommands(program);
registerKeyManagerCommands(program);
registerZoneCommands(program);
registerNetworkCommands(program);
registerHostCommands(program);

program.parseAsync(process.argv).catch((err: unknown) => {
  const status = err instanceof ApiError ? ` (HTTP ${err.status})` : '';
  console.error(`bulwark: ${err instanceof Error ? err.message : String(err)}${status}`);
  process.exit(1);
});
