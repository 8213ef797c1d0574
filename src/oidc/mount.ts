import { parse as parseQuery } from 'node:querystring';
import type { Context, Middleware } from 'koa';
import { badRequest } from '../errors.js';
import type { TokenGuard } from '../security/client-ip-allowlist.js';
import { requireTenant } from '../tenants/edge.js';
import type { TenantContext } from '../tenants/tenants.js';
import type { OidcRegistry } from './registry.js';
import { JWT_HANDLE_PREFIX, newOidcRequestContext, type OidcRequestContext, oidcRequestContext } from './request-context.js';

/**
 * The authorization endpoint may answer with oidc-provider's own auto-submitting
 * pages (response_mode=form_post, "sign out first"): it adds its inline
 * script's hash to an existing script-src, and posts to the client's origin,
 * which no fixed form-action could name.
 */
const AUTHORIZATION_CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "frame-ancestors 'none'",
  "base-uri 'none'",
].join('; ');

/** oidc-provider's own limit for form bodies. */
const FORM_LIMIT = 56 * 1024;

async function readFormBody(ctx: Context): Promise<Record<string, string | string[] | undefined>> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of ctx.req) {
    size += (chunk as Buffer).length;
    if (size > FORM_LIMIT) throw badRequest('request body too large');
    chunks.push(chunk as Buffer);
  }
  return parseQuery(Buffer.concat(chunks).toString('utf8'));
}

/**
 * oidc-provider refuses JWTs at introspection and revocation because it never
 * stored them. Ours are verifiable, so the JWT is swapped for a random handle
 * the adapter resolves (and verifies) within this request only.
 */
async function swapJwtForHandle(ctx: Context, request: OidcRequestContext): Promise<void> {
  if (!ctx.is('application/x-www-form-urlencoded')) return;
  const body = await readFormBody(ctx);
  const token = body.token;
  if (typeof token === 'string' && token.split('.').length === 3) {
    // Handles resolve only in this request's own map, so one fixed name suffices: no random bytes per request.
    const handle = `${JWT_HANDLE_PREFIX}token`;
    request.jwtHandles.set(handle, token);
    body.token = handle;
  }
  // oidc-provider reads an already-parsed body from req.body.
  (ctx.req as typeof ctx.req & { body?: unknown }).body = body;
}

/**
 * Reads the token request's form once, for `tokenGuard` (service-account IP
 * allowlists) to judge before oidc-provider issues anything; the provider then
 * reuses the parsed body.
 */
async function guardTokenRequest(ctx: Context, tokenGuard: TokenGuard): Promise<void> {
  if (!ctx.is('application/x-www-form-urlencoded')) return;
  const body = await readFormBody(ctx);
  (ctx.req as typeof ctx.req & { body?: unknown }).body = body;
  await tokenGuard({
    tenant: requireTenant(ctx.state),
    ip: ctx.ip,
    userAgent: ctx.get('user-agent') || null,
    body,
    authorization: ctx.get('authorization'),
  });
}

/** Hands every other /t/:tenant/… request to the tenant's oidc-provider. */
export function oidcRoutes({
  registry,
  publicUrl,
  tokenGuard,
  limitTokenRequests,
}: {
  registry: OidcRegistry;
  publicUrl: string;
  tokenGuard?: TokenGuard;
  /** The token endpoint's per-IP rate limit (src/security/abuse.ts): throws 429, or 503 when it cannot count. */
  limitTokenRequests?: (ctx: Context, tenant: TenantContext) => Promise<void>;
}): Middleware {
  const publicHost = new URL(publicUrl).host;
  return async function serveOidc(ctx) {
    const tenant = requireTenant(ctx.state);
    const prefix = `/t/${tenant.slug}`;
    const subpath = ctx.path.slice(prefix.length) || '/';
    // Counted before anything else: a flood costs one KvStore increment per request, not a client authentication.
    if (ctx.method === 'POST' && subpath === '/token' && limitTokenRequests) await limitTokenRequests(ctx, tenant);
    const oidc = await registry.get(tenant);
    if (subpath === '/jwks' && (ctx.method === 'GET' || ctx.method === 'HEAD')) {
      // oidc-provider publishes only the keys it signs with (the active ones); relying parties also need
      // the next key before a rotation and the previous one for tokens signed before it.
      ctx.set('Access-Control-Allow-Origin', '*');
      ctx.type = 'application/jwk-set+json; charset=utf-8';
      ctx.body = oidc.jwks;
      return;
    }
    if (subpath === '/auth' || subpath.startsWith('/auth/')) ctx.set('Content-Security-Policy', AUTHORIZATION_CSP);
    const request = newOidcRequestContext();
    if (ctx.method === 'POST' && (subpath === '/token/introspection' || subpath === '/token/revocation')) {
      request.route = subpath === '/token/introspection' ? 'introspection' : 'revocation';
      await swapJwtForHandle(ctx, request);
    } else if (ctx.method === 'POST' && subpath === '/token' && tokenGuard) {
      await guardTokenRequest(ctx, tokenGuard);
    } else if (subpath === '/me') {
      request.route = 'userinfo';
    }
    // Express-style mounting, which oidc-provider understands: originalUrl keeps the prefix.
    (ctx.req as typeof ctx.req & { originalUrl?: string }).originalUrl = ctx.req.url;
    ctx.req.url = ctx.req.url?.slice(prefix.length) || '/';
    if (!ctx.req.url.startsWith('/')) ctx.req.url = `/${ctx.req.url}`;
    // Endpoint URLs in discovery follow the public URL, not whatever Host the request carried.
    ctx.req.headers.host = publicHost;
    ctx.respond = false;
    await oidcRequestContext.run(request, () => oidc.handle(ctx.req, ctx.res));
  };
}
