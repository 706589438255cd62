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
  return new BulwarkError(
    'Internal',
    'An unexpected error prevented the server from fulfilling your request.',
    {
      cause: err,
    },
  );
}

export function sendError(err: unknown, req: FastifyRequest, reply: FastifyReply) {
  const e = classify(err);
  if (e.kind === 'Internal') req.log.error({ err }, 'unhandled error');
  if (!req.auditNote.reason) req.auditNote.reason = e.auditReason;
  const message = e.kind === 'Internal' ? `${e.message} (request ${req.id})` : e.message;
  return reply
    .code(e.status)
    .headers(e.headers)
    .type('application/json')
    .send(errorBody(req.url, e.status, ErrorKinds[e.kind].title, message, e.details));
}
