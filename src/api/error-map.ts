import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import { BulwarkError, ErrorKinds } from '../errors.js';

/** Which OpenStack service's error body style a path gets. */
type Style = 'keystone' | 'nova' | 'neutron' | 'barbican';

const styleFor = (url: string): Style =>
  url.startsWith('/key-manager')
    ? 'barbican'
    : url.startsWith('/compute') || url.startsWith('/volume')
      ? 'nova'
      : url.startsWith('/network')
        ? 'neutron'
        : 'keystone';

// Nova and Cinder name the body's top key after the fault.
const NOVA_KEYS: Partial<Record<number, string>> = {
  400: 'badRequest',
  401: 'unauthorized',
  403: 'forbidden',
  404: 'itemNotFound',
  406: 'notAcceptable',
  409: 'conflictingRequest',
  413: 'overLimit',
  429: 'overLimit',
};

const NEUTRON_TYPES: Partial<Record<number, string>> = {
  400: 'BadRequest',
  401: 'NotAuthorized',
  403: 'PolicyNotAuthorized',
  404: 'NotFound',
  409: 'Conflict',
  413: 'OverLimit',
  429: 'OverLimit',
};

export function errorBody(
  url: string,
  status: number,
  title: string,
  message: string,
  details?: Readonly<Record<string, unknown>>,
) {
  switch (styleFor(url)) {
    case 'nova':
      return { [NOVA_KEYS[status] ?? 'computeFault']: { code: status, message, ...details } };
    case 'neutron':
      return {
        NeutronError: {
          type: NEUTRON_TYPES[status] ?? 'ServiceUnavailable',
          message,
          detail: '',
          ...details,
        },
      };
    case 'barbican':
      // barbicanclient shows `title: description`.
      return { code: status, title, description: message, ...details };
    default:
      // Keystone puts extra fields beside `error`: a receipt's `receipt` and `required_auth_methods`.
      return { error: { code: status, title, message }, ...details };
  }
}

/** Turns a thrown error into a clear, safe status and message. */
export function classify(err: unknown): BulwarkError {
  if (err instanceof BulwarkError) return err;
  const fe = err as Partial<FastifyError> & { validation?: unknown; validationContext?: string };
  if (fe.validation) {
    const where = fe.validationContext ?? 'request';
    return new BulwarkError(
      'BadRequest',
      `Invalid input in ${where}: ${fe.message ?? 'does not match the schema'}`,
    );
  }
  if (typeof fe.statusCode === 'number' && fe.statusCode >= 400 && fe.statusCode < 500) {
    const kind =
      (Object.keys(ErrorKinds) as (keyof typeof ErrorKinds)[]).find(
        (k) => ErrorKinds[k].status === fe.statusCode,
      ) ?? 'BadRequest';
    const msg =
      fe.code === 'FST_ERR_CTP_INVALID_JSON_BODY' || err instanceof SyntaxError
        ? `Malformed JSON in request body: ${fe.message ?? ''}`
        : fe.code === 'FST_ERR_CTP_BODY_TOO_LARGE'
          ? 'Request body is larger than this API accepts.'
          : fe.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE'
            ? 'Unsupported Content-Type; send application/json.'
            : (fe.message ?? 'Bad request');
    return new BulwarkError(kind, msg);
  }
  const outage = hostOutage(err);
  if (outage) return outage;
  return new BulwarkError(
    'Internal',
    'An unexpected error prevented the server from fulfilling your request.',
    {
      cause: err,
    },
  );
}

// PostgreSQL's "the server went away" codes (admin shutdown, crash, starting up, connection failures).
const DB_GONE = new Set([
  '57P01',
  '57P02',
  '57P03',
  '08000',
  '08001',
  '08003',
  '08004',
  '08006',
  'ECONNREFUSED',
]);
const DB_GONE_TEXT =
  /Connection terminated|terminating connection|the database system is (starting|shutting) up/i;

/**
 * An outage of what the daemon stands on, in words an operator can act on
 * (docs/reliability.md): the database away (PostgreSQL restarting), or the
 * data dir's filesystem full. Both are 503s: nothing half-done was kept
 * (each write is one transaction) and the same request works once the
 * outage ends, with no restart (the pool reconnects by itself).
 */
export function hostOutage(err: unknown): BulwarkError | null {
  for (
    let e = err as { code?: unknown; message?: unknown; cause?: unknown } | undefined, n = 0;
    e && n < 5;
    n++
  ) {
    const code = typeof e.code === 'string' ? e.code : '';
    const text = typeof e.message === 'string' ? e.message : '';
    if (code === 'ENOSPC' || code === 'SQLITE_FULL' || /ENOSPC|database or disk is full/.test(text))
      return new BulwarkError(
        'Unavailable',
        "The data directory's filesystem is full, so the change could not be written (nothing was changed). Free space there or grow it; Bulwark carries on as soon as there is room.",
        { cause: err },
      );
    // A socket that is not there (PostgreSQL over its Unix socket, stopped) or refuses: the only peer requests connect to.
    const connectFailed = (e as { syscall?: unknown }).syscall === 'connect';
    if (DB_GONE.has(code) || DB_GONE_TEXT.test(text) || connectFailed)
      return new BulwarkError(
        'Unavailable',
        'The database is unavailable (it may be restarting), so the request was not carried out. Try again in a moment; Bulwark reconnects on its own.',
        { cause: err },
      );
    e = e.cause as typeof e;
  }
  return null;
}

export function sendError(err: unknown, req: FastifyRequest, reply: FastifyReply) {
  const e = classify(err);
  if (e.kind === 'Internal') req.log.error({ err }, 'unhandled error');
  if (!req.auditNote.reason) req.auditNote.reason = e.auditReason;
  // Held for approval: the answer names the approval (docs/approvals.md), in every service's style alike.
  if (e.kind === 'Accepted')
    return reply
      .code(202)
      .type('application/json')
      .send({ ...e.details, message: e.message });
  const message = e.kind === 'Internal' ? `${e.message} (request ${req.id})` : e.message;
  return reply
    .code(e.status)
    .headers(e.headers)
    .type('application/json')
    .send(errorBody(req.url, e.status, ErrorKinds[e.kind].title, message, e.details));
}
