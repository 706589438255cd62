/**
 * Prometheus /metrics on the API listener: admin only, the metrics
 * with real values, and output Debian's `promtool check metrics` accepts.
 */
import { spawnSync } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestApi, type TestApi } from '../helpers/api.js';
import { dialects } from '../helpers/store.js';

describe.each(dialects())('metrics on %s', (dialect) => {
  let api: TestApi;
  let member: { token: string; projectId: string };
  beforeAll(async () => {
    api = await startTestApi(dialect);
    member = await api.persona('m-proj', 'm-member', 'member');
    const { flavorId, imageId } = await api.bootable(member.token, 'm');
    const r = await api.call('POST', '/compute/v2.1/servers', member.token, {
      server: { name: 'm-vm', imageRef: imageId, flavorRef: flavorId },
    });
    await api.platform.compute.servers.settled(r.json.server.id);
    // A refused admin action: a privilege escalation attempt.
    await api.call('POST', '/compute/v2.1/flavors', member.token, {
      flavor: { name: 'x', vcpus: 1, ram: 1, disk: 1 },
    });
  });
  afterAll(async () => api?.close());

  const scrape = async () => {
    const r = await api.call('GET', '/metrics');
    expect(r.status).toBe(200);
    return String(r.json);
  };
  const sample = (text: string, name: string, labels: Record<string, string>) => {
    const line = text
      .split('\n')
      .find(
        (l) =>
          l.startsWith(`${name}{`) && Object.entries(labels).every(([k, v]) => l.includes(`${k}="${v}"`)),
      );
    return line === undefined ? undefined : Number(line.split(' ').at(-1));
  };

  it('is the cloud admin’s only', async () => {
    expect((await api.call('GET', '/metrics', null)).status).toBe(401);
    expect((await api.call('GET', '/metrics', member.token)).status).toBe(403);
  });

  it('reports servers, quotas, latency by route, security events, pools, audit queue', async () => {
    const text = await scrape();
    expect(sample(text, 'bulwark_servers', { status: 'ACTIVE' })).toBe(1);
    expect(sample(text, 'bulwark_quota_used', { project: 'm-proj', resource: 'instances' })).toBe(1);
    expect(sample(text, 'bulwark_quota_limit', { project: 'm-proj', resource: 'instances' })).toBeGreaterThan(
      0,
    );
    // Latency is labelled by route pattern, never by a concrete id.
    expect(
      sample(text, 'bulwark_api_request_duration_seconds_count', {
        method: 'POST',
        route: '/compute/v2.1/servers',
        status: '202',
      }),
    ).toBe(1);
    expect(text).not.toMatch(/route="\/compute\/v2\.1\/servers\/[0-9a-f]/);
    const escalations = (t: string) =>
      sample(t, 'bulwark_security_events_total', {
        category: 'privilege_escalation.attempt',
        severity: 'high',
      }) ?? 0;
    const before = escalations(text);
    expect(before).toBeGreaterThanOrEqual(1);
    await api.call('DELETE', '/compute/v2.1/flavors/none', member.token);
    expect(escalations(await scrape())).toBe(before + 1);
    expect(sample(text, 'bulwark_storage_pool_used_ratio', { pool: 'images' })).toBeGreaterThan(0);
    expect(text).toMatch(/^bulwark_audit_queue_depth 0$/m);
    expect(text).toMatch(/^bulwark_console_sessions_open 0$/m);
  });

  it('reports each backup schedule: its newest successful backup and the age it allows', async () => {
    const now = new Date();
    const ago = (min: number) => new Date(now.getTime() - min * 60_000).toISOString();
    await api.store.db
      .insertInto('backup_schedules')
      .values({
        id: 'sched-metrics',
        project_id: member.projectId,
        kind: 'volume',
        source_id: 'vol-metrics',
        name: 'nightly',
        interval_minutes: 60,
        keep_last: 3,
        keep_daily: 0,
        keep_weekly: 0,
        keep_monthly: 0,
        next_run_at: now.toISOString(),
        last_run_at: ago(30),
        last_error: null,
        created_by: 'test',
        created_at: ago(300),
      })
      .execute();
    const backup = (id: string, status: string, createdMin: number) => ({
      id,
      project_id: member.projectId,
      user_id: 'u',
      name: null,
      description: null,
      kind: 'volume',
      source_id: 'vol-metrics',
      source_type_id: null,
      size: 1,
      status,
      fault: null,
      is_incremental: 0,
      parent_id: null,
      seal_sha256: null,
      object_count: 0,
      read_bytes: 0,
      stored_bytes: 0,
      duration_ms: 0,
      data_timestamp: ago(createdMin),
      created_at: ago(createdMin),
      updated_at: ago(createdMin),
      deleted_at: null,
      schedule_id: 'sched-metrics',
    });
    // The newest one failed: the metric must report the newest *successful* backup.
    await api.store.db
      .insertInto('backups')
      .values([
        backup('b-old', 'available', 120),
        backup('b-new', 'available', 90),
        backup('b-bad', 'error', 10),
      ])
      .execute();
    const text = await scrape();
    const last = sample(text, 'bulwark_backup_last_success_timestamp_seconds', { policy: 'sched-metrics' });
    expect(last).toBe(Math.floor(Date.parse(ago(90)) / 1000));
    // Twice the interval: one missed run is tolerated, the second raises BulwarkBackupTooOld.
    expect(sample(text, 'bulwark_backup_policy_max_age_seconds', { policy: 'sched-metrics' })).toBe(7200);
  });

  it('passes promtool check metrics', async () => {
    const text = await scrape();
    const r = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' });
    expect(r.stdout + r.stderr).toBe('');
    expect(r.status).toBe(0);
  });
});
