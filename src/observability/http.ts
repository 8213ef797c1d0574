import { randomUUID } from 'node:crypto';
import type { Middleware } from 'koa';
import { toHttpError } from '../errors.js';
import type { Logger } from './logger.js';
import type { Metrics } from './metrics.js';

const REQUEST_ID = /^[A-Za-z0-9._-]{1,64}$/;

/** Keeps a caller's well-formed X-Request-Id (a proxy's, say), otherwise makes one. */
export function requestId(): Middleware {
  return async function assignRequestId(ctx, next) {
    const incoming = ctx.get('X-Request-Id');
    ctx.state.requestId = REQUEST_ID.test(incoming) ? incoming : randomUUID();
    ctx.set('X-Request-Id', ctx.state.requestId);
    await next();
  };
}

/** The route label is coarse on purpose: tenant slugs and ids must not explode the series. */
export function routeLabel(path: string): string {
  const parts = path.split('/').filter(Boolean);
  if (parts[0] === 't') return `/t/:tenant/${parts[2] ?? ''}`;
  if (parts[0] === 'api') return `/${parts.slice(0, 2).join('/')}/${parts[2] === 'tenants' ? 'tenants/:tenant' : (parts[2] ?? '')}`;
  return ['healthz', 'readyz', 'metrics'].includes(parts[0] ?? '') ? `/${parts[0]}` : 'other';
}

/** Access log, metrics and the JSON error format, in one place so every response passes through it. */
export function observeRequests({ logger, metrics }: { logger: Logger; metrics: Metrics }): Middleware {
  return async function observe(ctx, next) {
    const started = process.hrtime.bigint();
    // Read now: a mounted app may rewrite req.url.
    const path = ctx.path;
    try {
      await next();
      // respond=false: a mounted app (oidc-provider) wrote the response itself.
      if (ctx.respond !== false && ctx.status === 404 && ctx.body == null) {
        ctx.status = 404;
        ctx.body = { error: 'not_found', error_description: 'no such route' };
      }
    } catch (error) {
      if (ctx.headerSent) {
        logger.error({ err: error, requestId: ctx.state.requestId }, 'error after the response started');
        return;
      }
      const mapped = toHttpError(error);
      ctx.status = mapped.status;
      ctx.set(mapped.headers);
      ctx.body = mapped.body;
      if (mapped.unexpected) logger.error({ err: error, requestId: ctx.state.requestId }, 'unhandled error');
      else if (mapped.status >= 500) logger.warn({ requestId: ctx.state.requestId, error: mapped.body.error }, 'dependency unavailable');
    } finally {
      const seconds = Number(process.hrtime.bigint() - started) / 1e9;
      const status = ctx.respond === false ? ctx.res.statusCode : ctx.status;
      // A 404 matched no route: its path is the caller's invention and must not become a series of its own.
      const route = status === 404 ? 'unmatched' : routeLabel(path);
      metrics.httpRequests.inc({ method: ctx.method, route, status: String(status) });
      metrics.httpDuration.observe({ method: ctx.method, route }, seconds);
      logger.info({ requestId: ctx.state.requestId, method: ctx.method, path, status, ms: Math.round(seconds * 1000) }, 'request');
    }
  };
}

/** Refuses bodies announced as larger than the limit before reading a byte (parsers enforce it while streaming). */
export function bodyLimit(maxBytes: number): Middleware {
  return async function limitBody(ctx, next) {
    const length = Number(ctx.get('Content-Length') || 0);
    if (length > maxBytes) {
      ctx.status = 413;
      ctx.set('Connection', 'close');
      ctx.body = { error: 'payload_too_large', error_description: `request body exceeds ${maxBytes} bytes` };
      return;
    }
    await next();
  };
}
