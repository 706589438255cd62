import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import { classify } from '../audit/security-events.js';
import type { SiemStatus } from '../audit/siem.js';
import type { AuditWriter } from '../audit/writer.js';
import type { ConsoleService } from '../console/recordings.js';
import type { PoolStatus, StoragePools } from '../governance/storage-thresholds.js';
import type { PortDrops } from '../network/counters.js';
import { QUOTA_RESOURCES, type QuotaService } from '../quotas/service.js';
import type { Store } from '../store/database.js';

/** What the metrics read; the daemon adds what only it has (SIEM, firewall counters). */
export interface MetricSources {
  store: Store;
  audit: AuditWriter;
  quotas: QuotaService;
  consoles: ConsoleService;
  /** The storage pools the thresholds guard (docs/storage-thresholds.md); a scrape that sees one cross a threshold audits it. */
  storage: StoragePools;
}

/**
 * The platform's Prometheus metrics (prom-client 15, docs/metrics.md). Most
 * are read from the store when scraped, so every replica reports the same
 * truth; request latency and security events are counted as they happen.
 */
export class PlatformMetrics {
  readonly registry = new Registry();
  private readonly latency: Histogram<'method' | 'route' | 'status'>;
  private siem: (() => Promise<SiemStatus>) | null = null;
  private drops: (() => ReadonlyMap<string, PortDrops>) | null = null;

  constructor(src: MetricSources) {
    const r = [this.registry];
    this.latency = new Histogram({
      name: 'bulwark_api_request_duration_seconds',
      help: 'API request latency by route (the route pattern, not the URL) and status',
      labelNames: ['method', 'route', 'status'],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers: r,
    });
    const events = new Counter({
      name: 'bulwark_security_events_total',
      help: 'Audit records by security category and severity (docs/siem.md)',
      labelNames: ['category', 'severity'],
      registers: r,
    });
    src.audit.onAppend((row) => {
      const c = classify(row);
      events.inc({ category: c.category, severity: c.severity });
    });
    const { store } = src;
    new Gauge({
      name: 'bulwark_servers',
      help: 'Servers by status',
      labelNames: ['status'],
      registers: r,
      async collect() {
        this.reset();
        const rows = await store.db
          .selectFrom('servers')
          .select(['status', (eb) => eb.fn.countAll<number | string>().as('n')])
          .where('deleted_at', 'is', null)
          .groupBy('status')
          .execute();
        for (const row of rows) this.set({ status: row.status }, Number(row.n));
      },
    });
    const quotaRows = async () => {
      const projects = await store.db.selectFrom('projects').select(['id', 'name']).execute();
      const out: { project: string; project_id: string; resource: string; used: number; limit: number }[] =
        [];
      for (const p of projects) {
        const [used, limits] = await Promise.all([src.quotas.usage(p.id), src.quotas.limits(p.id)]);
        for (const res of QUOTA_RESOURCES)
          out.push({ project: p.name, project_id: p.id, resource: res, used: used[res], limit: limits[res] });
      }
      return out;
    };
    new Gauge({
      name: 'bulwark_quota_used',
      help: 'Quota usage per project and resource',
      labelNames: ['project', 'project_id', 'resource'],
      registers: r,
      async collect() {
        this.reset();
        for (const q of await quotaRows())
          this.set({ project: q.project, project_id: q.project_id, resource: q.resource }, q.used);
      },
    });
    new Gauge({
      name: 'bulwark_quota_limit',
      help: 'Quota limit per project and resource (-1: unlimited)',
      labelNames: ['project', 'project_id', 'resource'],
      registers: r,
      async collect() {
        this.reset();
        for (const q of await quotaRows())
          this.set({ project: q.project, project_id: q.project_id, resource: q.resource }, q.limit);
      },
    });
    const poolGauge = (name: string, help: string, pick: (p: PoolStatus) => number | null) =>
      new Gauge({
        name,
        help,
        labelNames: ['pool'],
        registers: r,
        async collect() {
          this.reset();
          for (const p of await src.storage.list()) {
            const v = pick(p);
            if (v !== null) this.set({ pool: p.name }, v);
          }
        },
      });
    poolGauge(
      'bulwark_storage_pool_size_bytes',
      'Size of the filesystem each storage pool lives on',
      (p) => p.total_bytes,
    );
    poolGauge(
      'bulwark_storage_pool_free_bytes',
      'Bytes still available to the daemon on each storage pool',
      (p) => p.available_bytes,
    );
    poolGauge(
      'bulwark_storage_pool_used_ratio',
      'Fill of each storage pool, 0-1 (alerts at 0.80 and 0.95)',
      (p) => {
        const usable = p.used_bytes + p.available_bytes;
        return usable > 0 ? p.used_bytes / usable : null;
      },
    );
    // Backups per schedule (docs/backups.md): the newest successful one, and the age the schedule allows.
    const schedules = () =>
      store.db
        .selectFrom('backup_schedules as s')
        .leftJoin('backups as b', (j) =>
          j
            .onRef('b.schedule_id', '=', 's.id')
            .on('b.status', '=', 'available')
            .on('b.deleted_at', 'is', null),
        )
        .select(['s.id', 's.interval_minutes', (eb) => eb.fn.max('b.created_at').as('last')])
        .groupBy(['s.id', 's.interval_minutes'])
        .execute();
    new Gauge({
      name: 'bulwark_backup_last_success_timestamp_seconds',
      help: "Unix time of each backup schedule's newest successful backup",
      labelNames: ['policy'],
      registers: r,
      async collect() {
        this.reset();
        for (const s of await schedules())
          if (s.last) this.set({ policy: s.id }, Math.floor(Date.parse(String(s.last)) / 1000));
      },
    });
    new Gauge({
      name: 'bulwark_backup_policy_max_age_seconds',
      help: "The age a schedule's newest backup may reach: twice its interval (one missed run tolerated)",
      labelNames: ['policy'],
      registers: r,
      async collect() {
        this.reset();
        for (const s of await schedules()) this.set({ policy: s.id }, 2 * s.interval_minutes * 60);
      },
    });
    new Gauge({
      name: 'bulwark_audit_queue_depth',
      help: 'Audit appends waiting behind the one being written',
      registers: r,
      collect() {
        this.set(src.audit.pending);
      },
    });
    new Gauge({
      name: 'bulwark_console_sessions_open',
      help: 'Console sessions open now (each is being recorded)',
      registers: r,
      collect() {
        this.set(src.consoles.openSessions);
      },
    });
    const self = this;
    const siemGauge = (name: string, help: string, pick: (s: SiemStatus) => number) =>
      new Gauge({
        name,
        help,
        labelNames: ['destination'],
        registers: r,
        async collect() {
          this.reset();
          if (!self.siem) return;
          const s = await self.siem();
          this.set({ destination: s.destination }, pick(s));
        },
      });
    siemGauge(
      'bulwark_siem_lag_events',
      'Audit events not yet confirmed delivered to the SIEM',
      (s) => s.lag,
    );
    siemGauge(
      'bulwark_siem_lag_seconds',
      'Age of the oldest audit event not yet delivered to the SIEM (0: caught up)',
      (s) => s.lagSeconds,
    );
    siemGauge('bulwark_siem_connected', '1 while the TLS connection to the SIEM is up', (s) =>
      s.connected ? 1 : 0,
    );
    siemGauge(
      'bulwark_siem_connect_failures',
      'Failed or dropped SIEM connections since start',
      (s) => s.connectFailures,
    );
    new Gauge({
      name: 'bulwark_firewall_dropped_packets',
      help: 'Packets the nftables rules dropped per port and cause, as last read from the counters',
      labelNames: ['port', 'cause'],
      registers: r,
      collect() {
        this.reset();
        for (const [port, d] of self.drops?.() ?? [])
          for (const [cause, n] of Object.entries(d)) this.set({ port, cause }, n);
      },
    });
  }

  /** The daemon's SIEM forwarder, when one is configured. */
  attachSiem(status: () => Promise<SiemStatus>): void {
    this.siem = status;
  }

  /** The firewall drop monitor's last reading. */
  attachDrops(latest: () => ReadonlyMap<string, PortDrops>): void {
    this.drops = latest;
  }

  observeRequest(method: string, route: string, status: number, seconds: number): void {
    this.latency.observe({ method, route, status: String(status) }, seconds);
  }

  text(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}
