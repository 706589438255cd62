import { describe, expect, it } from 'vitest';
import { makeConfig, parseListen, parseSiem } from './config.js';

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

describe('SIEM flags', () => {
  it('builds a target and refuses half a configuration with a fix', () => {
    const c = makeConfig({ dataDir: '/tmp/x', siemTarget: 'siem.example.com:6514', siemCa: 'ca.pem' });
    expect(c.siem).toMatchObject({
      host: 'siem.example.com',
      port: 6514,
      format: 'rfc5424',
      certFile: undefined,
    });
    expect(makeConfig({ dataDir: '/tmp/x' }).siem).toBeUndefined();
    expect(() => parseSiem({ siemCa: 'ca.pem' })).toThrow(/need --siem-target/);
    expect(() => parseSiem({ siemTarget: 'siem:6514' })).toThrow(/--siem-ca/);
    expect(() => parseSiem({ siemTarget: 'siem', siemCa: 'c' })).toThrow(/HOST:PORT/);
    expect(() => parseSiem({ siemTarget: 'siem:6514', siemCa: 'c', siemClientCert: 'x' })).toThrow(
      /both --siem-client-cert/,
    );
    expect(() => parseSiem({ siemTarget: 'siem:6514', siemCa: 'c', siemFormat: 'xml' })).toThrow(
      /rfc5424, cef, json/,
    );
  });
});

describe('console retention and the metrics listener', () => {
  it('defaults to 90 days and no separate listener; refuses nonsense with a fix', () => {
    const c = makeConfig({ dataDir: '/tmp/x' });
    expect(c.consoleRetentionDays).toBe(90);
    expect(c.metricsListen).toBeUndefined();
    expect(makeConfig({ dataDir: '/tmp/x', consoleRetentionDays: '365' }).consoleRetentionDays).toBe(365);
    expect(() => makeConfig({ dataDir: '/tmp/x', consoleRetentionDays: '0' })).toThrow(/at least 1/);
    expect(() => makeConfig({ dataDir: '/tmp/x', consoleRetentionDays: 'forever' })).toThrow(/whole number/);
    expect(makeConfig({ dataDir: '/tmp/x', metricsListen: '127.0.0.1:9464' }).metricsListen).toEqual({
      host: '127.0.0.1',
      port: 9464,
    });
    expect(() => makeConfig({ dataDir: '/tmp/x', metricsListen: 'nope' })).toThrow(/HOST:PORT/);
  });
});
