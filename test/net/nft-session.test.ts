import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MARKER_LINE, NftSession } from '../../src/host/net/nft-session.js';
import { hasTools, isRoot } from './topology.js';

/**
 * The long-lived `nft -i` behind in-place group changes, against the real
 * nft in a network namespace of its own: a line commits as one transaction
 * or not at all, a refusal is reported with nft's words and leaves the
 * session usable, and a change by another process is seen.
 */
describe.skipIf(!(isRoot() && hasTools()))('NftSession (real nft -i)', () => {
  const netns = `bwt-nfts-${randomBytes(3).toString('hex')}`;
  const nft = (...args: string[]) => execFileSync('ip', ['netns', 'exec', netns, 'nft', ...args]).toString();
  let session: NftSession;

  beforeAll(() => {
    execFileSync('ip', ['netns', 'add', netns]);
    nft('add', 'table', 'inet', 't');
    nft('add', 'set', 'inet', 't', 's', '{ type ipv4_addr . inet_proto . inet_service; flags interval; }');
    session = new NftSession({ netns, timeoutMs: 5_000 });
  });
  afterAll(() => {
    session?.close();
    execFileSync('ip', ['netns', 'del', netns]);
  });

  it('the end marker is what the installed nft prints for it', () => {
    expect(nft('describe', 'meta', 'mark')).toBe(MARKER_LINE);
  });

  it('commits a line as one transaction', async () => {
    await session.run(
      'add element inet t s { 10.0.0.0/8 . 6 . 80 }; add element inet t s { 10.1.0.0/16 . 17 . 53 }',
    );
    const pid = session.pid;
    await session.run('delete element inet t s { 10.1.0.0/16 . 17 . 53 }');
    expect(session.pid).toBe(pid);
    const set = nft('list', 'set', 'inet', 't', 's');
    expect(set).toContain('10.0.0.0/8 . tcp . 80');
    expect(set).not.toContain('10.1.0.0/16');
  });

  it('a refused line changes nothing, says why, and the next line still works', async () => {
    const before = nft('list', 'table', 'inet', 't');
    await expect(
      session.run(
        'add element inet t s { 10.2.0.0/16 . 6 . 443 }; add element inet t nosuch { 10.3.0.0/16 . 6 . 1 }',
      ),
    ).rejects.toThrow(/No such file or directory/);
    await expect(session.run('add element inet t s { 10.4.0.0/16 . 6 }')).rejects.toThrow(/Error/);
    expect(nft('list', 'table', 'inet', 't')).toBe(before);
    await session.run('add element inet t s { 10.5.0.0/16 . 6 . 22 }');
    expect(nft('list', 'set', 'inet', 't', 's')).toContain('10.5.0.0/16 . tcp . 22');
  });

  it('refuses more than one line, or an over-long one, without sending anything', async () => {
    const before = nft('list', 'table', 'inet', 't');
    await expect(
      session.run('add element inet t s { 10.6.0.0/16 . 6 . 1 }\nflush set inet t s'),
    ).rejects.toThrow(/one non-empty line/);
    await expect(
      session.run(`add element inet t s { ${'10.6.0.0/16 . 6 . 1, '.repeat(60_000)}10.6.0.0/16 . 6 . 2 }`),
    ).rejects.toThrow(/at most/);
    expect(nft('list', 'table', 'inet', 't')).toBe(before);
  });

  it('sees a change another process made (its cache follows the kernel)', async () => {
    await session.run('add element inet t s { 10.7.0.0/16 . 6 . 7 }');
    nft('delete', 'set', 'inet', 't', 's');
    await expect(session.run('add element inet t s { 10.8.0.0/16 . 6 . 8 }')).rejects.toThrow(/No such file/);
    nft('add', 'set', 'inet', 't', 's', '{ type ipv4_addr . inet_service; flags interval; }');
    await session.run('add element inet t s { 10.9.0.0/16 . 9 }');
    expect(nft('list', 'set', 'inet', 't', 's')).toContain('10.9.0.0/16 . 9');
  });

  it('a killed process: the next batch starts a new one', async () => {
    const pid = session.pid as number;
    expect(pid).toBeGreaterThan(0);
    process.kill(pid, 'SIGKILL');
    for (let i = 0; i < 100 && session.pid === pid; i++) await new Promise((r) => setTimeout(r, 20));
    await session.run('add element inet t s { 10.10.0.0/16 . 10 }');
    expect(session.pid).not.toBe(pid);
    expect(nft('list', 'set', 'inet', 't', 's')).toContain('10.10.0.0/16 . 10');
  });
});
