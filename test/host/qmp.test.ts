import { spawn } from 'node:child_process';
import { chownSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { parseQmpMessage, QmpClient, QmpError, type QmpEvent } from '../../src/host/qmp.js';
import { waitFor } from '../helpers/guests.js';

const GREETING = {
  QMP: { version: { qemu: { micro: 0, minor: 2, major: 7 }, package: 'fake' }, capabilities: ['oob'] },
};
const send = (s: Socket, msg: unknown) => s.write(`${JSON.stringify(msg)}\r\n`);

/** A fake QEMU: greets, then answers each command through `reply` (which may stay silent). */
function fakeQemu(
  path: string,
  reply: (cmd: { execute: string; id?: unknown; arguments?: unknown }, sock: Socket) => void,
  greeting: unknown = GREETING,
): Promise<Server> {
  const server = createServer((sock) => {
    send(sock, greeting);
    let buf = '';
    sock.on('data', (d) => {
      buf += d.toString();
      for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        const cmd = JSON.parse(line);
        if (cmd.execute === 'qmp_capabilities') send(sock, { return: {}, id: cmd.id });
        else reply(cmd, sock);
      }
    });
    sock.on('error', () => undefined);
  });
  return new Promise((resolve) => server.listen(path, () => resolve(server)));
}

describe('QMP client against a fake QEMU', () => {
  const dir = mkdtempSync(join(tmpdir(), 'bw-qmp-'));
  let n = 0;
  const servers: Server[] = [];
  const clients: QmpClient[] = [];
  const sockPath = () => join(dir, `q${n++}.sock`);
  const start = async (reply: Parameters<typeof fakeQemu>[1], greeting?: unknown) => {
    const path = sockPath();
    servers.push(await fakeQemu(path, reply, greeting));
    return path;
  };
  const connect = async (path: string, opts = {}) => {
    const c = await QmpClient.connect(path, opts);
    clients.push(c);
    return c;
  };
  afterEach(() => {
    for (const c of clients.splice(0)) c.close();
    for (const s of servers.splice(0)) s.close();
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('negotiates capabilities and matches replies to commands by id, out of order too', async () => {
    const held: { id: unknown; sock: Socket }[] = [];
    const path = await start((cmd, sock) => {
      if (cmd.execute === 'slow') held.push({ id: cmd.id, sock });
      else send(sock, { return: { echo: cmd.execute, args: cmd.arguments ?? null }, id: cmd.id });
      if (cmd.execute === 'fast')
        for (const h of held.splice(0)) send(h.sock, { return: 'slow-done', id: h.id });
    });
    const qmp = await connect(path);
    expect(qmp.greeting.version.qemu).toEqual({ major: 7, minor: 2, micro: 0 });
    const slow = qmp.execute('slow');
    const fast = qmp.execute('fast', { a: 1 });
    expect(await fast).toEqual({ echo: 'fast', args: { a: 1 } });
    expect(await slow).toBe('slow-done');
  });

  it('rejects error replies with the QMP error class', async () => {
    const path = await start((cmd, sock) =>
      send(sock, {
        error: { class: 'CommandNotFound', desc: `The command ${cmd.execute} has not been found` },
        id: cmd.id,
      }),
    );
    const qmp = await connect(path);
    const err = await qmp.execute('nope').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(QmpError);
    expect(err).toMatchObject({ errorClass: 'CommandNotFound', command: 'nope' });
    expect((err as Error).message).toMatch(/has not been found/);
  });

  it('delivers events to listeners', async () => {
    const path = await start((cmd, sock) => {
      send(sock, { event: 'STOP', timestamp: { seconds: 1, microseconds: 2 } });
      send(sock, { return: {}, id: cmd.id });
      send(sock, {
        event: 'SHUTDOWN',
        data: { guest: true, reason: 'guest-shutdown' },
        timestamp: { seconds: 3, microseconds: 4 },
      });
    });
    const qmp = await connect(path);
    const seen: QmpEvent[] = [];
    const off = qmp.onEvent((e) => seen.push(e));
    await qmp.execute('stop');
    await waitFor('events', async () => seen.length === 2);
    expect(seen.map((e) => e.event)).toEqual(['STOP', 'SHUTDOWN']);
    expect(seen[0]?.data).toEqual({});
    expect(seen[1]?.data).toEqual({ guest: true, reason: 'guest-shutdown' });
    off();
  });

  it('times out a command that gets no reply, and ignores the late reply', async () => {
    let late: (() => void) | undefined;
    const path = await start((cmd, sock) => {
      if (cmd.execute === 'hang') late = () => send(sock, { return: 'late', id: cmd.id });
      else send(sock, { return: 'ok', id: cmd.id });
    });
    const qmp = await connect(path);
    await expect(qmp.execute('hang', undefined, { timeoutMs: 100 })).rejects.toMatchObject({
      errorClass: 'Timeout',
    });
    late?.();
    expect(await qmp.execute('next')).toBe('ok');
  });

  it('times out a server that never greets', async () => {
    const path = sockPath();
    const server = createServer(() => undefined);
    servers.push(server);
    await new Promise<void>((r) => server.listen(path, () => r()));
    await expect(QmpClient.connect(path, { connectTimeoutMs: 150 })).rejects.toMatchObject({
      errorClass: 'Timeout',
    });
  });

  it('drops the connection on malformed messages and fails pending commands', async () => {
    const path = await start((_cmd, sock) => sock.write('{"return": 1, "id": \n'));
    const qmp = await connect(path);
    const closed = new Promise<Error | undefined>((r) => qmp.onClose(r));
    await expect(qmp.execute('x')).rejects.toMatchObject({ errorClass: 'Closed' });
    expect((await closed)?.message).toMatch(/bad message/);
    expect(qmp.closed).toBe(true);
    await expect(qmp.execute('y')).rejects.toMatchObject({ errorClass: 'Closed' });
  });

  it('refuses a bad greeting and over-long lines', async () => {
    const bad = await start(() => undefined, { QMP: { version: 'seven' } });
    await expect(QmpClient.connect(bad)).rejects.toThrow(/malformed greeting/);
    const flood = await start((_c, sock) => sock.write('x'.repeat(4096)));
    const qmp = await connect(flood, { maxLineBytes: 1024 });
    await expect(qmp.execute('go')).rejects.toThrow(/longer than 1024/);
  });

  it('reports the server going away', async () => {
    const path = await start((_cmd, sock) => sock.destroy());
    const qmp = await connect(path);
    await expect(qmp.execute('quit')).rejects.toMatchObject({ errorClass: 'Closed' });
    expect(await qmp.waitClosed(1000)).toBe(true);
  });

  it('validates every message shape', () => {
    expect(parseQmpMessage('{"return":{},"id":"a"}')).toEqual({ kind: 'return', id: 'a', value: {} });
    expect(() => parseQmpMessage('[1]')).toThrow(/not a JSON object/);
    expect(() => parseQmpMessage('{"error":{"class":1}}')).toThrow(/malformed error/);
    expect(() => parseQmpMessage('{"event":"X"}')).toThrow(/malformed event/);
    expect(() =>
      parseQmpMessage('{"event":"X","timestamp":{"seconds":1,"microseconds":1},"data":[1]}'),
    ).toThrow(/event data/);
    expect(() => parseQmpMessage('{"hello":1}')).toThrow(/unknown message/);
  });
});

describe.runIf(process.getuid?.() === 0)('QMP client against real QEMU', () => {
  it('talks to QEMU: version, status, stop/cont events, errors, quit', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'bw-qmp-real-'));
    chownSync(dir, 65534, 65534);
    const path = join(dir, 'qmp.sock');
    const child = spawn(
      'qemu-system-x86_64',
      [
        '-machine',
        'none',
        '-nodefaults',
        '-display',
        'none',
        '-S',
        '-qmp',
        `unix:${path},server=on,wait=off`,
      ],
      { uid: 65534, gid: 65534, stdio: 'ignore' },
    );
    const exited = new Promise((r) => child.once('exit', r));
    try {
      const qmp = await waitFor(
        'QMP socket',
        () => QmpClient.connect(path).catch(() => undefined),
        15_000,
        50,
      );
      expect(qmp.greeting.version.qemu.major).toBeGreaterThanOrEqual(7);
      expect(await qmp.queryStatus()).toEqual({ status: 'prelaunch', running: false });
      const events: string[] = [];
      qmp.onEvent((e) => events.push(e.event));
      await qmp.execute('cont');
      expect((await qmp.queryStatus()).running).toBe(true);
      await qmp.execute('stop');
      expect(await qmp.queryStatus()).toEqual({ status: 'paused', running: false });
      await waitFor('RESUME and STOP', async () => events.includes('RESUME') && events.includes('STOP'));
      await expect(qmp.execute('no-such-command')).rejects.toMatchObject({ errorClass: 'CommandNotFound' });
      await expect(qmp.execute('stop', { bogus: 1 })).rejects.toMatchObject({ errorClass: 'GenericError' });
      await qmp.execute('quit');
      expect(await qmp.waitClosed(5000)).toBe(true);
      expect(events).toContain('SHUTDOWN');
      await exited;
    } finally {
      child.kill('SIGKILL');
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
