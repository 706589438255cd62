/**
 * The shipped Prometheus rules and Grafana dashboard: Debian's promtool checks
 * and unit-tests the rules, and every metric they name is one Bulwark exports
 * (or, for backups, one the backup service is to export, listed here).
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { startTestApi, type TestApi } from '../helpers/api.js';
import { REPO } from '../helpers/daemon-process.js';

const DIR = join(REPO, 'monitoring');
/** Named by the backup-age rule and panel; the backup service exports them, not this branch. */
const EXPORTED_ELSEWHERE = new Set([
  'bulwark_backup_last_success_timestamp_seconds',
  'bulwark_backup_policy_max_age_seconds',
]);

const metricNames = (expr: string): string[] =>
  [...expr.matchAll(/\bbulwark_[a-z_]+/g)].map((m) => m[0].replace(/_(bucket|count|sum)$/, ''));

describe('monitoring rules and dashboard', () => {
  let api: TestApi;
  beforeAll(async () => {
    api = await startTestApi('sqlite');
  });
  afterAll(async () => api?.close());

  it('pass promtool check rules and the rule unit tests', () => {
    const check = execFileSync('promtool', ['check', 'rules', join(DIR, 'alerts.yml')], { encoding: 'utf8' });
    expect(check).toMatch(/SUCCESS: 10 rules found/);
    const test = execFileSync('promtool', ['test', 'rules', 'alerts.test.yml'], {
      cwd: DIR,
      encoding: 'utf8',
    });
    expect(test).toMatch(/SUCCESS/);
  });

  it('covers the alerts the issue asks for', () => {
    const doc = parse(readFileSync(join(DIR, 'alerts.yml'), 'utf8')) as {
      groups: { rules: { alert: string; expr: string }[] }[];
    };
    const alerts = doc.groups.flatMap((g) => g.rules.map((r) => r.alert));
    for (const a of [
      'BulwarkQuotaViolations',
      'BulwarkStoragePoolFilling',
      'BulwarkStoragePoolCritical',
      'BulwarkBackupTooOld',
      'BulwarkSiemDeliveryFailing',
      'BulwarkBreakGlassUsed',
    ])
      expect(alerts).toContain(a);
  });

  it('names only metrics the platform exports', async () => {
    const exported = new Set(
      (await api.platform.metrics.registry.getMetricsAsJSON()).map((m) => m.name.replace(/_total$/, '')),
    );
    const known = (n: string) => exported.has(n.replace(/_total$/, '')) || EXPORTED_ELSEWHERE.has(n);
    const doc = parse(readFileSync(join(DIR, 'alerts.yml'), 'utf8')) as {
      groups: { rules: { expr: string }[] }[];
    };
    const dash = JSON.parse(readFileSync(join(DIR, 'grafana-dashboard.json'), 'utf8')) as {
      panels: { targets: { expr: string }[] }[];
    };
    const exprs = [
      ...doc.groups.flatMap((g) => g.rules.map((r) => r.expr)),
      ...dash.panels.flatMap((p) => p.targets.map((t) => t.expr)),
    ];
    const unknown = exprs.flatMap(metricNames).filter((n) => !known(n));
    expect(unknown).toEqual([]);
    expect(dash.panels.length).toBeGreaterThanOrEqual(10);
  });
});
