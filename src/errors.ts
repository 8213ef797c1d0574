/**
 * Typed errors: anything the caller did wrong, or a dependency that is down,
 * is an AppError; the error middleware maps it to `{ error, error_description }`.
 * Anything else is a bug and becomes a bare 500.
 */
export class AppError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    readonly description: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(description);
    this.name = 'AppError';
  }
}

export const badRequest = (description: string, code = 'invalid_request') => new AppError(400, code, description);
export const unauthorized = (description = 'authentication required') => new AppError(401, 'unauthorized', description);
export const forbidden = (description = 'not allowed') => new AppError(403, 'forbidden', description);
export const notFound = (description = 'not found') => new AppError(404, 'not_found', description);
export const conflict = (description: string) => new AppError(409, 'conflict', description);
export const tooManyRequests = (retryAfterSeconds: number) =>
  new AppError(429, 'too_many_requests', 'too many requests, retry later', {
    'Retry-After': String(Math.max(1, Math.ceil(retryAfterSeconds))),
  });
export const unavailable = (description = 'a dependency is unavailable, retry later') =>
  new AppError(503, 'temporarily_unavailable', description, { 'Retry-After': '5' });

const UNAVAILABLE_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EPIPE',
  'EHOSTUNREACH',
  'ENOTCONN',
  // PostgreSQL: admin shutdown, crash shutdown, cannot connect now
  '57P01',
  '57P02',
  '57P03',
  // Prisma: server unreachable, timed out, closed, pool exhausted
  'P1001',
  'P1002',
  'P1008',
  'P1017',
  'P2024',
]);
const UNAVAILABLE_MESSAGES =
  /Connection is closed|Command timed out|MaxRetriesPerRequest|Stream isn't writeable|Connection terminated|Can't reach database server|connect ECONNREFUSED|DatabaseNotReachable|terminating connection|PGlite is closed/i;

/** True when `error` (or what caused it) says PostgreSQL or Redis is out of reach. */
export function isDependencyUnavailable(error: unknown, depth = 0): boolean {
  if (!error || typeof error !== 'object' || depth > 5) return false;
  const { code, message, cause, kind } = error as { code?: unknown; message?: unknown; cause?: unknown; kind?: unknown };
  if (typeof code === 'string' && UNAVAILABLE_CODES.has(code)) return true;
  if (typeof kind === 'string' && /NotReachable|ConnectionClosed|SocketTimeout/i.test(kind)) return true;
  if (typeof message === 'string' && UNAVAILABLE_MESSAGES.test(message)) return true;
  return isDependencyUnavailable(cause, depth + 1);
}

export interface HttpError {
  status: number;
  body: { error: string; error_description: string };
  headers: Record<string, string>;
  /** A bug, to be logged with its stack; never shown to the caller. */
  unexpected: boolean;
}

const CLIENT_ERROR_CODES: Record<number, string> = {
  400: 'invalid_request',
  401: 'unauthorized',
  403: 'forbidden',
  404: 'not_found',
  405: 'method_not_allowed',
  413: 'payload_too_large',
  415: 'unsupported_media_type',
};

/** Maps anything thrown to the JSON error the caller sees. */
export function toHttpError(error: unknown): HttpError {
  if (error instanceof AppError) {
    return {
      status: error.status,
      body: { error: error.code, error_description: error.description },
      headers: error.headers,
      unexpected: false,
    };
  }
  if (isDependencyUnavailable(error)) {
    const e = unavailable();
    return { status: e.status, body: { error: e.code, error_description: e.description }, headers: e.headers, unexpected: false };
  }
  // http-errors from koa and its body parsers: safe to show when `expose` is set.
  const { status, expose, message } = (error ?? {}) as { status?: number; expose?: boolean; message?: string };
  if (typeof status === 'number' && status >= 400 && status < 500) {
    return {
      status,
      body: { error: CLIENT_ERROR_CODES[status] ?? 'invalid_request', error_description: expose && message ? message : 'invalid request' },
      headers: {},
      unexpected: false,
    };
  }
  return { status: 500, body: { error: 'server_error', error_description: 'internal server error' }, headers: {}, unexpected: true };
}
