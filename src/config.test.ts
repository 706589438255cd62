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

  it('takes storage thresholds, and refuses ones that cannot work', () => {
    expect(makeConfig({ dataDir: '/tmp/x' }).storageThresholds).toEqual({
      warnPercent: 80,
      refusePercent: 95,
    });
    expect(
      makeConfig({ dataDir: '/tmp/x', storageWarnPercent: '70', storageRefusePercent: '90' })
        .storageThresholds,
    ).toEqual({ warnPercent: 70, refusePercent: 90 });
    expect(() => makeConfig({ dataDir: '/tmp/x', storageWarnPercent: '96' })).toThrow(
      /0 < warn < refuse <= 100/,
    );
    expect(() => makeConfig({ dataDir: '/tmp/x', storageRefusePercent: '101' })).toThrow(
      /percentage from 1 to 100/,
    );
    expect(() => makeConfig({ dataDir: '/tmp/x', storageWarnPercent: 'lots' })).toThrow(/not a whole number/);
  });
});
