import type { Middleware } from 'koa';

/**
 * Strict defaults for every response. Pages that need more (a form posting to
 * a client's redirect URI, say) widen their own CSP, never the default.
 */
export const DEFAULT_CSP = [
  "default-src 'none'",
  "style-src 'self'",
  "img-src 'self' data:",
  "form-action 'self'",
  "frame-ancestors 'none'",
  "base-uri 'none'",
].join('; ');

export function securityHeaders({ https }: { https: boolean }): Middleware {
  return async function setSecurityHeaders(ctx, next) {
    ctx.set('Content-Security-Policy', DEFAULT_CSP);
    ctx.set('Cross-Origin-Opener-Policy', 'same-origin');
    ctx.set('Cross-Origin-Resource-Policy', 'same-origin');
    ctx.set('X-Content-Type-Options', 'nosniff');
    ctx.set('X-Frame-Options', 'DENY');
    ctx.set('Referrer-Policy', 'no-referrer');
    if (https) ctx.set('Strict-Transport-Security', 'max-age=63072000; includeSubDomains');
    await next();
  };
}
