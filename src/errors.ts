/**
 * The one error hierarchy. Domain code throws these; `api/error-map.ts` turns
 * them into OpenStack-style bodies in one place. Anything else that escapes a
 * handler is an internal error and never shows its message or stack.
 */
export const ErrorKinds = {
  BadRequest: { status: 400, title: 'Bad Request' },
  Unauthorized: { status: 401, title: 'Unauthorized' },
  Forbidden: { status: 403, title: 'Forbidden' },
  NotFound: { status: 404, title: 'Not Found' },
  MethodNotAllowed: { status: 405, title: 'Method Not Allowed' },
  NotAcceptable: { status: 406, title: 'Not Acceptable' },
  Conflict: { status: 409, title: 'Conflict' },
  PayloadTooLarge: { status: 413, title: 'Request Entity Too Large' },
  UnsupportedMediaType: { status: 415, title: 'Unsupported Media Type' },
  TooManyRequests: { status: 429, title: 'Too Many Requests' },
  Internal: { status: 500, title: 'Internal Server Error' },
  Unavailable: { status: 503, title: 'Service Unavailable' },
} as const;

export type ErrorKind = keyof typeof ErrorKinds;

export class BulwarkError extends Error {
  readonly kind: ErrorKind;
  /** Extra response headers, e.g. Retry-After or Openstack-Auth-Receipt. */
  readonly headers: Readonly<Record<string, string>>;
  /** Extra body fields: beside the message (Nova, Neutron, Barbican) or beside `error` (Keystone receipts). */
  readonly details: Readonly<Record<string, unknown>> | undefined;
  /** What the audit log records when it differs from what the caller may be told. */
  readonly auditReason: string;

  constructor(
    kind: ErrorKind,
    message: string,
    opts: {
      headers?: Record<string, string>;
      details?: Record<string, unknown>;
      auditReason?: string;
      cause?: unknown;
    } = {},
  ) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = `${kind}Error`;
    this.kind = kind;
    this.headers = opts.headers ?? {};
    this.details = opts.details;
    this.auditReason = opts.auditReason ?? message;
  }

  get status(): number {
    return ErrorKinds[this.kind].status;
  }
}

export const badRequest = (message: string): BulwarkError => new BulwarkError('BadRequest', message);
export const unauthorized = (message: string): BulwarkError => new BulwarkError('Unauthorized', message);
export const forbidden = (message: string): BulwarkError => new BulwarkError('Forbidden', message);
export const notFound = (what: string, id: string): BulwarkError =>
  new BulwarkError('NotFound', `Could not find ${what}: ${id}.`);
export const conflict = (message: string): BulwarkError => new BulwarkError('Conflict', message);
export const unavailable = (message: string): BulwarkError => new BulwarkError('Unavailable', message);
