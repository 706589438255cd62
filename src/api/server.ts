import swagger from '@fastify/swagger';
import websocket from '@fastify/websocket';
import { Ajv } from 'ajv';
import addFormats from 'ajv-formats';
import Fastify, { type FastifyInstance, type FastifyRequest } from 'fastify';
import type { AuditWriter } from '../audit/writer.js';
import type { DrService } from '../backups/dr.js';
import type { BackupScheduler } from '../backups/scheduler.js';
import type { BackupService } from '../backups/service.js';
import type { ComplianceService } from '../compliance/service.js';
import type { ColdMigrationService } from '../compute/cold-migration.js';
import type { EvacuationService } from '../compute/evacuation.js';
import type { FlavorService } from '../compute/flavors.js';
import type { GuestAgentService } from '../compute/guest-agent-service.js';
import type { HostDeviceService } from '../compute/host-devices.js';
import type { HostEnrollment } from '../compute/host-enrollment.js';
import type { HostService } from '../compute/hosts.js';
import type { ImageService } from '../compute/images.js';
import type { ProfileService } from '../compute/profiles.js';
import type { QuarantineService } from '../compute/quarantine.js';
import type { ServerGroupService } from '../compute/server-groups.js';
import type { ServerService } from '../compute/servers.js';
import type { ConsoleService } from '../console/recordings.js';
import { DEFAULT_WEB_DIR } from '../dashboard/assets.js';
import { sessionToken } from '../dashboard/session.js';
import { BulwarkError, forbidden } from '../errors.js';
import type { ApprovalService } from '../governance/approvals.js';
import type { MetadataRuleService } from '../governance/metadata-rules.js';
import type { ServerHistory } from '../governance/server-history.js';
import type { StoragePools } from '../governance/storage-thresholds.js';
import { ruleMatches, serviceOf } from '../identity/access-rules.js';
import type { ApplicationCredentialService } from '../identity/application-credentials.js';
import type { BreakGlassService } from '../identity/break-glass.js';
import type { CredentialService } from '../identity/credentials.js';
import type { LoginService } from '../identity/login.js';
import type { IdentityService } from '../identity/service.js';
import type { KeyManager } from '../keys/manager.js';
import type { PlatformMetrics } from '../metrics/registry.js';
import type { NetworkService } from '../network/networks.js';
import type { RouterService } from '../network/routers.js';
import type { SecurityGroupService } from '../network/security-groups.js';
import type { ZoneService } from '../network/zones.js';
import { enforce, isPublic } from '../policy/enforcer.js';
import { isAction } from '../policy/rules.js';
import type { QuotaService } from '../quotas/service.js';
import type { SnapshotPolicyService } from '../snapshots/policies.js';
import type { SnapshotScheduler } from '../snapshots/scheduler.js';
import type { SnapshotService } from '../snapshots/snapshots.js';
import type { Store } from '../store/database.js';
import type { TemplateService } from '../templates/templates.js';
import { uuid } from '../util/ids.js';
import type { VolumeTypeService } from '../volumes/types.js';
import type { VolumeService } from '../volumes/volumes.js';
import { registerApprovalApi } from './approvals.js';
import { registerBackupApi } from './backups.js';
import { registerBreakGlassApi } from './break-glass.js';
import { registerBulwarkApi } from './bulwark.js';
import type { ServiceEntry } from './catalog.js';
import { registerCloneApi } from './clones.js';
import { registerComplianceApi } from './compliance.js';
import { registerComputeApi } from './compute.js';
import { CONSOLE_PROTOCOL, registerConsoleApi, tokenFromProtocols } from './console.js';
import type { AuditNote, RouteInfo } from './context.js';
import { registerDashboardApi } from './dashboard.js';
import { errorBody, hostOutage, sendError } from './error-map.js';
import { registerGuestAgentApi } from './guest-agent.js';
import { registerHostDeviceApi } from './host-devices.js';
import { registerHostApi } from './hosts.js';
import { registerIdentityApi } from './identity.js';
import { registerImageApi } from './image.js';
import { registerMfaDeviceApi } from './mfa-devices.js';
import { registerNetworkApi, registerSecurityGroupApi } from './network.js';
import { registerProfileApi } from './profiles.js';
import { registerQuotaApi } from './quotas.js';
import { ApiRateLimiter, type ApiRateLimits, isQuietRefusal } from './rate-limit.js';
import { registerRouterApi } from './routers.js';
import { registerSecretsApi } from './secrets.js';
import { registerServerGovernanceApi } from './server-governance.js';
import { registerSnapshotApi } from './snapshots.js';
import { registerTemplateApi } from './templates.js';
import { registerVolumeApi } from './volumes.js';
import { registerZoneApi } from './zones.js';

export interface ApiDeps {
  store: Store;
  identity: IdentityService;
  /** Keystone credentials and multi-factor login (docs/identity.md). */
  credentials: CredentialService;
  breakGlass: BreakGlassService;
  applicationCredentials: ApplicationCredentialService;
  login: LoginService;
  audit: AuditWriter;
  compute: {
    flavors: FlavorService;
    images: ImageService;
    servers: ServerService;
    quarantine: QuarantineService;
    guestAgent: GuestAgentService;
    hostDevices: HostDeviceService;
    /** Hypervisor hosts and Nova server groups (docs/multi-host.md). */
    hosts: HostService;
    groups: ServerGroupService;
    /** Cold migration and host evacuation (docs/multi-host.md). */
    coldMigrations: ColdMigrationService;
    evacuations: EvacuationService;
  };
  /** Agent enrollment with the platform CA (docs/multi-host.md); absent: joins answer 503. */
  enrollment?: HostEnrollment;
  network: {
    networks: NetworkService;
    securityGroups: SecurityGroupService;
    routers: RouterService;
    zones: ZoneService;
  };
  /** The key manager (Barbican v1); platform services use it through its KeyService side. */
  keys: KeyManager;
  /** Block storage (Cinder v3, docs/volumes.md). */
  volume: { types: VolumeTypeService; volumes: VolumeService };
  /** Quotas (docs/quotas.md). */
  quotas: QuotaService;
  /** Volume and server snapshots, their lifecycle policies and scheduler (docs/snapshots.md). */
  snapshots: { snapshots: SnapshotService; policies: SnapshotPolicyService; scheduler: SnapshotScheduler };
  /** Templates: pinned, immutable, approved versions (docs/templates.md). */
  templates: TemplateService;
  /** VM profiles: Hyper-NixOS JSON in and out (docs/profiles.md). */
  profiles: ProfileService;
  /** Compliance: the control catalogue, live checks and their history (docs/compliance.md). */
  compliance: ComplianceService;
  /** Approvals, the two-person rule (docs/approvals.md). */
  approvals: ApprovalService;
  /** VM metadata rules and per-server change history (docs/metadata.md). */
  governance: { metadataRules: MetadataRuleService; serverHistory: ServerHistory; storage: StoragePools };
  /** Serial consoles and their recordings (docs/console.md). */
  consoles: ConsoleService;
  /** Prometheus metrics (docs/metrics.md). */
  metrics: PlatformMetrics;
  /** Backups and restores, and their schedules (docs/backups.md). */
  backups: BackupService;
  backupScheduler: BackupScheduler;
  /** DR drills (docs/dr.md). */
  dr: DrService;
  /** Base URL clients reach us at; used in the catalog and links, never taken from Host. */
  publicUrl: string;
  /** The most servers one page of a list answers (Nova's `[api] max_limit`); default 1000. */
  maxListLimit?: number;
}

export interface ApiOptions {
  https?: { key: string; cert: string };
  logger?: boolean;
  /** Largest JSON body accepted, in bytes. */
  bodyLimit?: number;
  /** Requests per minute per token and per source address (docs/rate-limits.md); absent: no limit. */
  rateLimits?: ApiRateLimits;
  /** The built web dashboard served at /dashboard (docs/dashboard.md); default web/dist. */
  webDir?: string;
}

const MUTATING = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);
/** Reads that are audited like writes, whatever their outcome: handing out key material. */
const AUDITED_READS = new Set<string>(['secret:decrypt', 'console:recordings:replay', 'profile:export']);

/**
 * Two validators: request bodies are checked as sent (a string is never a
 * number, unknown fields are refused, nothing is silently dropped), while
 * query strings and path params are coerced from text as HTTP requires.
 */
function validators() {
  const body = new Ajv({
    allErrors: false,
    removeAdditional: false,
    coerceTypes: false,
    useDefaults: false,
    strict: false,
  });
  const other = new Ajv({
    allErrors: false,
    removeAdditional: false,
    coerceTypes: 'array',
    useDefaults: true,
    strict: false,
  });
  addFormats.default(body);
  addFormats.default(other);
  return { body, other };
}

export async function buildApi(deps: ApiDeps, opts: ApiOptions = {}): Promise<FastifyInstance> {
  const app = Fastify({
    logger: opts.logger ?? false,
    bodyLimit: opts.bodyLimit ?? 1024 * 1024,
    genReqId: () => `req-${uuid()}`,
    requestIdHeader: false,
    ...(opts.https ? { https: { ...opts.https, minVersion: 'TLSv1.2' as const } } : {}),
  });
  const ajv = validators();
  const limiter = opts.rateLimits ? new ApiRateLimiter(opts.rateLimits) : null;
  app.setValidatorCompiler(({ schema, httpPart }) =>
    (httpPart === 'body' ? ajv.body : ajv.other).compile(schema),
  );

  app.decorateRequest('auth', null);
  app.decorateRequest('auditNote', null as unknown as AuditNote);
  const services: ServiceEntry[] = [];
  const ctx = { ...deps, services };

  // Every route must name a known policy action; a route without one is a bug, caught at start-up.
  const routeTable: RouteInfo[] = [];
  app.decorate('routeTable', routeTable);
  app.addHook('onRoute', (route) => {
    const action = route.config?.action;
    if (!action || !isAction(action)) {
      throw new Error(`route ${String(route.method)} ${route.url} has no policy action (policy/rules.ts)`);
    }
    const schema = route.schema as RouteInfo['schema'];
    for (const method of [route.method].flat()) routeTable.push({ method, url: route.url, action, schema });
  });

  app.addHook('onRequest', async (req, reply) => {
    req.auditNote = {};
    reply.header('x-openstack-request-id', req.id);
    // An invalid token counts as none: public routes still answer, the rest get 401 from the policy check.
    // A browser's WebSocket cannot send headers: it names the token as a subprotocol (docs/console.md). The
    // dashboard's session cookie counts only with its CSRF header (dashboard/session.ts).
    const header = req.headers['x-auth-token'] ?? tokenFromProtocols(req.headers['sec-websocket-protocol']);
    const token = typeof header === 'string' && header.length > 0 ? header : sessionToken(req);
    req.auth = token !== null ? await deps.identity.validateToken(token) : null;
    limiter?.check(req);
  });

  // Before validation: a caller who may not act learns nothing about what a valid request looks like.
  app.addHook('preValidation', async (req) => {
    const cfg = req.routeOptions.config;
    // No route matched: the 404 handler answers and performs nothing, so there is nothing to authorise.
    if (cfg.action === undefined && req.is404) return;
    const own = { project_id: req.auth?.projectId ?? null, user_id: req.auth?.userId ?? null };
    const target = cfg.target
      ? {
          ...own,
          ...(await cfg.target({
            params: req.params,
            headers: req.headers,
            query: req.query,
            body: req.body,
            auth: req.auth,
          })),
        }
      : own;
    enforce(cfg.action ?? '', req.auth, target);
    const rules = req.auth?.appCred?.accessRules ?? [];
    if (rules.length > 0 && !isPublic(cfg.action ?? 'bulwark:version')) {
      // An application credential with access rules allows only the requests one of them matches.
      const at = serviceOf(services, req.url);
      if (!at || !rules.some((r) => ruleMatches(r, { ...at, method: req.method })))
        throw forbidden(
          `The application credential's access rules do not allow ${req.method} ${at ? `${at.service} ${at.path}` : req.url}.`,
        );
    }
  });

  // Written before the response leaves: if the audit log cannot be written, the caller gets 503.
  app.addHook('onSend', async (req, reply, payload) => {
    const status = reply.statusCode;
    const cfg = req.routeOptions.config ?? {};
    const refused = status === 401 || status === 403 || status === 429;
    if (!MUTATING.has(req.method) && !refused && !AUDITED_READS.has(cfg.action ?? '')) return payload;
    // A refusal repeated while the caller stays over the limit is answered, not audited again.
    if (status === 429 && isQuietRefusal(req)) return payload;
    const params = (req.params ?? {}) as Record<string, unknown>;
    try {
      await deps.audit.append({
        requestId: req.id,
        userId: req.auth?.userId ?? null,
        userName: req.auth?.userName ?? req.auditNote?.attemptedUser ?? null,
        projectId: req.auth?.projectId ?? null,
        roles: req.auth?.roles ?? [],
        sourceIp: req.ip,
        action: cfg.action ?? 'unknown',
        method: req.method,
        path: req.url.split('?')[0] ?? req.url,
        targetType: cfg.targetType ?? null,
        targetId: req.auditNote?.targetId ?? (typeof params.id === 'string' ? params.id : null),
        outcome: status < 400 ? 'success' : refused ? 'denied' : 'failure',
        status,
        reason: status < 400 ? null : (req.auditNote?.reason ?? null),
      });
      return payload;
    } catch (err) {
      reply.code(503).type('application/json');
      // Why, when it is the database away or the disk full: the operator's next step.
      const why = hostOutage(err)?.message;
      return JSON.stringify(
        errorBody(
          req.url,
          503,
          'Service Unavailable',
          `The audit log could not be written; nothing was confirmed.${why ? ` ${why}` : ''}`,
        ),
      );
    }
  });

  // Latency by route pattern (never the raw URL: ids would explode the label set).
  app.addHook('onResponse', async (req, reply) => {
    deps.metrics.observeRequest(
      req.method,
      req.routeOptions.url ?? 'unmatched',
      reply.statusCode,
      reply.elapsedTime / 1000,
    );
  });

  app.setErrorHandler((err, req, reply) => {
    req.auditNote ??= {};
    return sendError(err, req, reply);
  });
  app.setNotFoundHandler((req: FastifyRequest, reply) => {
    req.auditNote ??= {};
    return sendError(
      new BulwarkError('NotFound', `No API resource at ${req.method} ${req.url.split('?')[0]}.`),
      req,
      reply,
    );
  });

  await app.register(swagger, {
    openapi: { info: { title: 'Bulwark API', version: '1' } },
  });
  // Console sessions (docs/console.md): keystrokes are small; a paste larger than this is refused by the library.
  await app.register(websocket, {
    options: {
      maxPayload: 64 * 1024,
      // Answer with the console protocol, never echo the one carrying a token.
      handleProtocols: (offered) => (offered.has(CONSOLE_PROTOCOL) ? CONSOLE_PROTOCOL : false),
    },
  });
  await registerIdentityApi(app, ctx);
  await registerComputeApi(app, ctx);
  await registerImageApi(app, ctx);
  await registerNetworkApi(app, ctx);
  await registerSecurityGroupApi(app, ctx);
  await registerRouterApi(app, ctx);
  await registerZoneApi(app, ctx);
  await registerVolumeApi(app, ctx);
  await registerSecretsApi(app, ctx);
  await registerQuotaApi(app, ctx);
  await registerBulwarkApi(app, ctx);
  await registerSnapshotApi(app, ctx);
  registerTemplateApi(app, ctx);
  registerComplianceApi(app, ctx);
  registerCloneApi(app, ctx);
  registerProfileApi(app, ctx);
  registerApprovalApi(app, ctx);
  registerServerGovernanceApi(app, ctx);
  registerGuestAgentApi(app, ctx);
  registerHostDeviceApi(app, ctx);
  await registerBreakGlassApi(app, ctx);
  await registerMfaDeviceApi(app, ctx);
  await registerConsoleApi(app, ctx);
  app.get('/metrics', { config: { action: 'metrics:read' } }, async (_req, reply) => {
    reply.type(deps.metrics.contentType);
    return deps.metrics.text();
  });
  await registerBackupApi(app, ctx);
  await registerDashboardApi(app, ctx, opts.webDir ?? DEFAULT_WEB_DIR);
  registerHostApi(app, ctx);
  return app;
}

export type ApiContext = ApiDeps & { services: ServiceEntry[] };
