import swagger from '@fastify/swagger';
import { Ajv } from 'ajv';
import addFormats from 'ajv-formats';
import Fastify, { type FastifyInstance, type FastifyRequest } from 'fastify';
import type { AuditWriter } from '../audit/writer.js';
import type { FlavorService } from '../compute/flavors.js';
import type { HostEnrollment } from '../compute/host-enrollment.js';
import type { HostService } from '../compute/hosts.js';
import type { ImageService } from '../compute/images.js';
import type { QuarantineService } from '../compute/quarantine.js';
import type { ServerGroupService } from '../compute/server-groups.js';
import type { ServerService } from '../compute/servers.js';
import { BulwarkError } from '../errors.js';
import type { IdentityService } from '../identity/service.js';
import type { KeyManager } from '../keys/manager.js';
import type { NetworkService } from '../network/networks.js';
import type { RouterService } from '../network/routers.js';
import type { SecurityGroupService } from '../network/security-groups.js';
import type { ZoneService } from '../network/zones.js';
import { enforce } from '../policy/enforcer.js';
import { isAction } from '../policy/rules.js';
import type { QuotaService } from '../quotas/service.js';
import type { Store } from '../store/database.js';
import { uuid } from '../util/ids.js';
import type { VolumeTypeService } from '../volumes/types.js';
import type { VolumeService } from '../volumes/volumes.js';
import { registerBulwarkApi } from './bulwark.js';
import type { ServiceEntry } from './catalog.js';
import { registerComputeApi } from './compute.js';
import type { AuditNote, RouteInfo } from './context.js';
import { errorBody, sendError } from './error-map.js';
import { registerHostApi } from './hosts.js';
import { registerIdentityApi } from './identity.js';
import { registerImageApi } from './image.js';
import { registerNetworkApi, registerSecurityGroupApi } from './network.js';
import { registerQuotaApi } from './quotas.js';
import { ApiRateLimiter, type ApiRateLimits, isQuietRefusal } from './rate-limit.js';
import { registerRouterApi } from './routers.js';
import { registerSecretsApi } from './secrets.js';
import { registerVolumeApi } from './volumes.js';
import { registerZoneApi } from './zones.js';

export interface ApiDeps {
  store: Store;
  identity: IdentityService;
  audit: AuditWriter;
  compute: {
    flavors: FlavorService;
    images: ImageService;
    servers: ServerService;
    quarantine: QuarantineService;
    /** Hypervisor hosts and Nova server groups (docs/multi-host.md). */
    hosts: HostService;
    groups: ServerGroupService;
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
  /** Base URL clients reach us at; used in the catalog and links, never taken from Host. */
  publicUrl: string;
}

export interface ApiOptions {
  https?: { key: string; cert: string };
  logger?: boolean;
  /** Largest JSON body accepted, in bytes. */
  bodyLimit?: number;
  /** Requests per minute per token and per source address (docs/rate-limits.md); absent: no limit. */
  rateLimits?: ApiRateLimits;
}

const MUTATING = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);
/** Reads that are audited like writes, whatever their outcome: handing out key material. */
const AUDITED_READS = new Set<string>(['secret:decrypt']);

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
    for (const method of [route.method].flat()) routeTable.push({ method, url: route.url, action });
  });

  app.addHook('onRequest', async (req, reply) => {
    req.auditNote = {};
    reply.header('x-openstack-request-id', req.id);
    // An invalid token counts as none: public routes still answer, the rest get 401 from the policy check.
    const token = req.headers['x-auth-token'];
    req.auth =
      typeof token === 'string' && token.length > 0 ? await deps.identity.validateToken(token) : null;
    limiter?.check(req);
  });

  // Before validation: a caller who may not act learns nothing about what a valid request looks like.
  app.addHook('preValidation', async (req) => {
    const cfg = req.routeOptions.config;
    // No route matched: the 404 handler answers and performs nothing, so there is nothing to authorise.
    if (cfg.action === undefined && req.is404) return;
    const own = { project_id: req.auth?.projectId ?? null, user_id: req.auth?.userId ?? null };
    const target = cfg.target
      ? { ...own, ...(await cfg.target({ params: req.params, headers: req.headers })) }
      : own;
    enforce(cfg.action ?? '', req.auth, target);
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
    } catch {
      reply.code(503).type('application/json');
      return JSON.stringify(
        errorBody(
          req.url,
          503,
          'Service Unavailable',
          'The audit log could not be written; nothing was confirmed.',
        ),
      );
    }
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
  registerHostApi(app, ctx);
  return app;
}

export type ApiContext = ApiDeps & { services: ServiceEntry[] };
