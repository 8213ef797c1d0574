import type { Middleware } from 'koa';
import { tooManyRequests } from '../errors.js';
import type { KvStore } from '../store/index.js';

export interface Limit {
  /** What is counted, e.g. `signin:ip:203.0.113.7`; namespaced here under `ratelimit:`. */
  key: string;
  /** Requests allowed per window. */
  limit: number;
  windowSeconds: number;
}

export interface LimitResult {
  allowed: boolean;
  /** Requests counted in this window so far, this one included: `limit + 1` is the first refused. */
  count: number;
  remaining: number;
  retryAfterSeconds: number;
}

/**
 * A fixed-window counter in the KvStore, so every node counts together. When
 * the store is unreachable the increment throws and the request fails with
 * 503: limits fail closed, never silently unlimited.
 */
export async function hit(kv: KvStore, { key, limit, windowSeconds }: Limit): Promise<LimitResult> {
  const counter = await kv.increment(`ratelimit:${key}`, windowSeconds);
  return {
    allowed: counter.count <= limit,
    count: counter.count,
    remaining: Math.max(0, limit - counter.count),
    retryAfterSeconds: Math.max(1, Math.ceil(counter.resetInMs / 1000)),
  };
}

/** Counts each request against the limit `select` picks (none: not limited); excess gets 429 with Retry-After. */
export function rateLimit(kv: KvStore, select: (ctx: Parameters<Middleware>[0]) => Limit | undefined): Middleware {
  return async function limitRequests(ctx, next) {
    const limit = select(ctx);
    if (!limit) return next();
    const result = await hit(kv, limit);
    ctx.set('RateLimit-Limit', String(limit.limit));
    ctx.set('RateLimit-Remaining', String(result.remaining));
    if (!result.allowed) throw tooManyRequests(result.retryAfterSeconds);
    await next();
  };
}
