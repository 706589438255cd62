import { mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectGuestSocket } from './instance-files.js';

describe('connectGuestSocket (the console socket in a guest-writable dir)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'bw-sock-'));
  const path = join(dir, 'console.sock');
  const uid = process.getuid?.() ?? 0;
  let server: Server;
  beforeAll(async () => {
    server = createServer((s) => s.end('guest says hi'));
    await new Promise<void>((r) => server.listen(path, r));
  });
  afterAll(async () => {
    await new Promise((r) => server.close(r));
    rmSync(dir, { recursive: true, force: true });
  });

  it('connects to a socket of the guest’s user', async () => {
    const s = await connectGuestSocket(path, uid);
    const got = await new Promise<string>((r) => s.once('data', (b: Buffer) => r(b.toString())));
    expect(got).toBe('guest says hi');
    s.destroy();
  });

  it('refuses a link (a swapped-in path to another socket), another owner, a non-socket, nothing', async () => {
    const link = join(dir, 'link.sock');
    symlinkSync(path, link);
    // O_PATH|O_NOFOLLOW opens the link itself, which is no socket.
    await expect(connectGuestSocket(link, uid)).rejects.toThrow(/not a socket of the guest/);
    await expect(connectGuestSocket(path, uid + 4242)).rejects.toThrow(/not a socket of the guest/);
    const file = join(dir, 'plain');
    writeFileSync(file, 'x');
    await expect(connectGuestSocket(file, uid)).rejects.toThrow(/not a socket of the guest/);
    await expect(connectGuestSocket(join(dir, 'missing'), uid)).rejects.toThrow(/ENOENT/);
  });
});
