import { describe, expect, it } from 'vitest';
import { makeConfig, parseListen } from './config.js';

describe('config', () => {
  it('parses listen addresses', () => {
    expect(parseListen('127.0.0.1:8443')).toEqual({ host: '127.0.0.1', port: 8443 });
    expect(parseListen('[::1]:9000')).toEqual({ host: '::1', port: 9000 });
    expect(parseListen('8443')).toEqual({ host: '127.0.0.1', port: 8443 });
  });

  it('refuses a bad listen address with a fix', () => {
    expect(() => parseListen('localhost')).toThrow(/try --listen 127.0.0.1:8443/);
    expect(() => parseListen('1.2.3.4:99999')).toThrow(/HOST:PORT/);
  });

  it('defaults to SQLite in the data dir and an https public URL', () => {
    const c = makeConfig({ dataDir: '/tmp/x', listen: '[::1]:8443' });
    expect(c.databaseUrl).toBe('/tmp/x/bulwark.db');
    expect(c.publicUrl).toBe('https://[::1]:8443');
  });
});
