import { describe, expect, it } from 'vitest';
import { swtpmArgs, swtpmPaths } from './swtpm.js';

describe('swtpm command line', () => {
  const paths = swtpmPaths({ dir: '/var/lib/bw/instances/x', hostDir: '/var/lib/bw/instances/.host/x' });

  it('encrypts the state with a key read from inherited fds, never a file or a value on argv', () => {
    const args = swtpmArgs('2.0', paths, { keyFd: 3, migrationKeyFd: 4 });
    expect(args.slice(0, 2)).toEqual(['socket', '--tpm2']);
    expect(args[args.indexOf('--key') + 1]).toBe('fd=3,mode=aes-256-cbc,format=binary');
    expect(args[args.indexOf('--migration-key') + 1]).toBe('fd=4,mode=aes-256-cbc,format=binary');
    expect(args[args.indexOf('--tpmstate') + 1]).toBe('dir=/var/lib/bw/instances/x/tpm,mode=0600');
    expect(args[args.indexOf('--ctrl') + 1]).toBe(
      'type=unixio,path=/var/lib/bw/instances/x/swtpm.sock,mode=0600',
    );
    expect(args).toContain('--terminate');
    expect(args.join(' ')).not.toMatch(/file=|pwdfile=/);
    expect(swtpmArgs('1.2', paths, { keyFd: 3, migrationKeyFd: 4 })).not.toContain('--tpm2');
  });

  it('refuses paths swtpm could not parse', () => {
    const bad = { ...paths, stateDir: '/tmp/a,b/tpm' };
    expect(() => swtpmArgs('2.0', bad, { keyFd: 3, migrationKeyFd: 4 })).toThrow(/comma/);
    expect(() =>
      swtpmArgs('2.0', { ...paths, ctrlSocket: 'rel.sock' }, { keyFd: 3, migrationKeyFd: 4 }),
    ).toThrow(/absolute/);
  });
});
