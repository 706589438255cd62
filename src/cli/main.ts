import { Command } from 'commander';
import { ApiError } from './client.js';
import { registerApprovalCommands } from './commands/approvals.js';
import { registerAuditCommands } from './commands/audit.js';
import { registerBackupCommands } from './commands/backups.js';
import { registerBreakGlassCommands } from './commands/break-glass.js';
import { registerComplianceCommands } from './commands/compliance.js';
import { registerComputeCommands } from './commands/compute.js';
import { registerConsoleCommands } from './commands/console.js';
import { registerDrCommands } from './commands/dr.js';
import { registerHostCommands } from './commands/hosts.js';
import { registerIdentityCommands } from './commands/identity.js';
import { registerKeyManagerCommands } from './commands/keys.js';
import { registerMetadataRuleCommands } from './commands/metadata-rules.js';
import { registerNetworkCommands } from './commands/network.js';
import { registerProfileCommands } from './commands/profiles.js';
import { registerServeCommand } from './commands/serve.js';
import { registerSnapshotCommands } from './commands/snapshots.js';
import { registerTemplateCommands } from './commands/templates.js';
import { registerZoneCommands } from './commands/zones.js';

const program = new Command('bulwark')
  .description('Bulwark: a security-first virtual machine platform')
  .option('--os-cloud <name>', 'cloud from clouds.yaml (default $OS_CLOUD)')
  .showHelpAfterError();

registerServeCommand(program);
registerIdentityCommands(program);
registerComputeCommands(program);
registerAuditCommands(program);
registerApprovalCommands(program);
registerMetadataRuleCommands(program);
registerBreakGlassCommands(program);
registerConsoleCommands(program);
registerKeyManagerCommands(program);
registerBackupCommands(program);
registerDrCommands(program);
registerZoneCommands(program);
registerNetworkCommands(program);
registerSnapshotCommands(program);
registerTemplateCommands(program);
registerHostCommands(program);
registerProfileCommands(program);
registerComplianceCommands(program);

program.parseAsync(process.argv).catch((err: unknown) => {
  const status = err instanceof ApiError ? ` (HTTP ${err.status})` : '';
  console.error(`bulwark: ${err instanceof Error ? err.message : String(err)}${status}`);
  process.exit(1);
});
