import type { AddressInfo } from 'node:net';
import { createServer } from 'node:net';
import { Command } from 'commander';
import { vi } from 'vitest';
import { buildApi } from '../../src/api/server.js';
import type { TestApi } from './api.js';

/**
 * The `bulwark` CLI in-process against the test API listening on loopback:
 * commands parse, log in and print as bin/bulwark.js runs them (minus its
 * catch-all, so a failing command throws here). Logged in as the admin.
 */
export async function startCliHarness(api: TestApi, ...register: ((program: Command) => void)[]) {
  const saved = { ...process.env };
  const port = await new Promise<number>((res) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const p = (s.address() as AddressInfo).port;
      s.close(() => res(p));
    });
  });
  const app = await buildApi({
    store: api.store,
    ...api.platform,
    publicUrl: `http://127.0.0.1:${port}`,
    ...(api.maxListLimit ? { maxListLimit: api.maxListLimit } : {}),
  });
  await app.listen({ port, host: '127.0.0.1' });
  process.env.OS_AUTH_URL = `http://127.0.0.1:${port}/identity/v3`;
  delete process.env.OS_CLOUD;
  const loginAs = (user: string, password: string, project: string) =>
    Object.assign(process.env, { OS_USERNAME: user, OS_PASSWORD: password, OS_PROJECT_NAME: project });
  loginAs('admin', api.adminPassword, 'admin');

  const cli = async (...args: string[]) => {
    const program = new Command('bulwark').option('--os-cloud <name>').exitOverride();
    for (const r of register) r(program);
    const out: string[] = [];
    const spy = vi.spyOn(console, 'log').mockImplementation((...a: unknown[]) => void out.push(a.join(' ')));
    try {
      await program.parseAsync(['node', 'bulwark', ...args]);
    } finally {
      spy.mockRestore();
    }
    return out.join('\n');
  };
  return {
    cli,
    json: async (...args: string[]): Promise<any> => JSON.parse(await cli(...args, '-f', 'json')),
    /** The error a command fails with. */
    failure: async (...args: string[]): Promise<Error> => {
      try {
        await cli(...args);
      } catch (e) {
        return e as Error;
      }
      throw new Error(`bulwark ${args.join(' ')} succeeded`);
    },
    loginAs,
    async close() {
      process.env = saved;
      await app.close();
    },
  };
}
