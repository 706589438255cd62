import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';

/** A network namespace of the bench's own (unique name), so nft tables never touch the host's. */
export function makeNetns(prefix: string): {
  name: string;
  exec(cmd: string, args: string[]): string;
  remove(): void;
} {
  const name = `${prefix}-${randomBytes(3).toString('hex')}`;
  execFileSync('ip', ['netns', 'add', name]);
  return {
    name,
    exec: (cmd, args) =>
      execFileSync('ip', ['netns', 'exec', name, cmd, ...args], { maxBuffer: 1 << 28 }).toString(),
    remove: () => {
      try {
        execFileSync('ip', ['netns', 'del', name]);
      } catch {
        // already gone
      }
    },
  };
}
