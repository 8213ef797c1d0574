import Router from '@koa/router';
import type { Context, Middleware } from 'koa';
import type { z } from 'zod';
import type { AuditEventInput } from '../audit/audit.js';
import { AppError, notFound } from '../errors.js';
import { evaluateNetworkPolicy, loadNetworkPolicy } from '../security/network-policy.js';
import { hit } from '../security/rate-limit.js';
import { publishTenantChange, TENANT_SLUG, type TenantContext } from '../tenants/tenants.js';
import { authenticate, type Caller } from './auth.js';
import { type CursorCodec, createCursorCodec, parseOrThrow, readJsonBody } from './http.js';
import { buildOpenApiDocument } from './openapi.js';
import { authorize } from './rbac.js';
import { type AdminDeps, API_PREFIX, isTenantRoute, type Route, type RouteContext } from './route.js';

/**
 * The management API under /api/v1. Every route is one definition (route.ts);
 * the same list builds the koa routes and the OpenAPI document, so the two
 * cannot drift apart. Every request passes the same steps, in this order:
 * authenticate (401), resolve the tenant (404), network policy (403), quota
 * (429), permission (403), validate input (400/413/415), handle, audit.
 */

// ---------------------------------------------------------------- the steps every request goes through

const DEFAULT_MANAGEMENT_PER_MINUTE = 600;

/** The tenant acted on. Another tenant's resources answer 404 like missing ones: nothing says they exist. */
async function targetTenant(deps: AdminDeps, ctx: Context, route: Route, caller: Caller): Promise<TenantContext> {
  const slug = isTenantRoute(route) ? String(ctx.params.tenant ?? '') : caller.tenantSlug;
  const tenant = TENANT_SLUG.test(slug) ? await deps.tenants.bySlug(slug) : null;
  if (!tenant) throw notFound('no such tenant');
  if (tenant.id !== caller.tenantId && !caller.platformAdmin) throw notFound('no such tenant');
  return tenant;
}

/**
 * The caller's own tenant's network policy applies to everything the caller
 * does. A platform admin acting on another tenant is held to its own tenant's
 * policy, not the target's, so a tenant cannot lock the operators out.
 */
async function enforceNetworkPolicy(deps: AdminDeps, ctx: Context, caller: Caller): Promise<void> {
  const policy = await loadNetworkPolicy(deps.db.prisma, caller.tenantId);
  const decision = evaluateNetworkPolicy(policy, ctx.ip);
  if (decision.outcome === 'allow') return;
  ctx.set('X-Network-Policy', decision.outcome === 'block' ? 'blocked' : 'outside-allowlist');
  // One audit event per address and minute: a misconfigured script must not flood the trail.
  const first = await deps.kv.setIfAbsent(`netpolicy:${caller.tenantId}:${decision.outcome}:${ctx.ip}`, '1', 60);
  if (first) {
    await deps.audit.append(caller.tenantId, {
      actor: { type: caller.kind, id: caller.id },
      action: decision.outcome === 'block' ? 'network_policy.blocked' : 'network_policy.warned',
      ip: ctx.ip,
      userAgent: ctx.get('user-agent') || null,
      metadata: { mode: policy.mode, path: ctx.path, method: ctx.method },
    });
  }
  deps.logger.warn({ tenantId: caller.tenantId, ip: ctx.ip, outcome: decision.outcome }, 'management API call outside the network policy');
  if (decision.outcome === 'block') {
    throw new AppError(403, 'network_policy', 'this address is not allowed by the tenant network policy');
  }
}

function managementLimit(tenant: TenantContext | null): number {
  const limits = (tenant?.settings as { limits?: { managementPerMinute?: unknown } } | undefined)?.limits;
  const value = limits?.managementPerMinute;
  return typeof value === 'number' && Number.isInteger(value) && value > 0 ? value : DEFAULT_MANAGEMENT_PER_MINUTE;
}

/** The caller's tenant's quota of management requests per minute, counted across nodes. */
async function enforceQuota(deps: AdminDeps, ctx: Context, caller: Caller): Promise<void> {
  const home = await deps.tenants.bySlug(caller.tenantSlug);
  const limit = managementLimit(home);
  const result = await hit(deps.kv, { key: `management:${caller.tenantId}`, limit, windowSeconds: 60 });
  ctx.set('RateLimit-Limit', String(limit));
  ctx.set('RateLimit-Remaining', String(result.remaining));
  if (!result.allowed) {
    throw new AppError(429, 'too_many_requests', `the tenant's management API quota (${limit}/minute) is used up`, {
      'Retry-After': String(result.retryAfterSeconds),
    });
  }
}

interface ParsedInput {
  params: unknown;
  query: unknown;
  body: unknown;
}

async function parseInput(deps: AdminDeps, ctx: Context, route: Route): Promise<ParsedInput> {
  const { tenant: _tenant, ...params } = ctx.params as Record<string, string>;
  return {
    params: route.params ? parseOrThrow(route.params, params, 'path') : {},
    query: route.query ? parseOrThrow(route.query, ctx.query, 'query') : {},
    // Routes without a body schema ignore whatever was sent.
    body: route.body ? parseOrThrow(route.body, await readJsonBody(ctx, deps.config.bodyLimitBytes), 'body') : undefined,
  };
}

function routeContext(
  deps: AdminDeps,
  ctx: Context,
  route: Route,
  caller: Caller,
  tenant: TenantContext,
  input: ParsedInput,
  cursors: CursorCodec,
): RouteContext<unknown, unknown, unknown> {
  const crossTenant = tenant.id !== caller.tenantId;
  const actor: AuditEventInput['actor'] = { type: caller.kind, id: caller.id };
  const cursorScope = `${tenant.id}:${route.operationId}`;
  return {
    deps,
    koa: ctx,
    caller,
    tenant,
    crossTenant,
    ...input,
    actor,
    async audit(event, tx) {
      const metadata = crossTenant
        ? { ...event.metadata, cross_tenant: true, actor_tenant_id: caller.tenantId, actor_tenant: caller.tenantSlug }
        : event.metadata;
      await deps.audit.append(tenant.id, { ...event, actor, ip: ctx.ip, userAgent: ctx.get('user-agent') || null, metadata }, tx);
    },
    announce: (what) => publishTenantChange(deps.kv, { tenantId: tenant.id, slug: tenant.slug, what }),
    cursor: {
      encode: (value) => cursors.encode(cursorScope, value),
      decode: (cursor) => (cursor === undefined ? undefined : cursors.decode(cursorScope, cursor)),
    },
  };
}

function respond(ctx: Context, route: Route, result: unknown): void {
  if (route.response) {
    ctx.status = route.status ?? 200;
    // The response schema is also an allowlist: a field it does not name never leaves (no hash, no ciphertext).
    ctx.body = route.response.parse(result);
    return;
  }
  if (route.produces) return;
  ctx.status = 204;
  ctx.body = null;
}

function handlerFor(deps: AdminDeps, route: Route, cursors: CursorCodec): Middleware {
  return async function handleManagementRequest(ctx) {
    ctx.set('Cache-Control', 'no-store');
    const caller = await authenticate(deps, ctx.get('Authorization'));
    const tenant = await targetTenant(deps, ctx, route, caller);
    await enforceNetworkPolicy(deps, ctx, caller);
    await enforceQuota(deps, ctx, caller);
    authorize(caller, route.permission, route.platformOnly);
    const input = await parseInput(deps, ctx, route);
    const context = routeContext(deps, ctx, route, caller, tenant, input, cursors);
    const result = await route.handler(context);
    // Every act of a platform admin on another tenant is in that tenant's trail as such, whatever the
    // route itself records (its own events carry cross_tenant too).
    if (context.crossTenant) {
      const action = route.method === 'GET' ? 'admin.cross_tenant_read' : 'admin.cross_tenant_write';
      await context.audit({ action, metadata: { operation: route.operationId, method: route.method, path: ctx.path } });
    }
    respond(ctx, route, result);
  };
}

export const koaPath = (path: string) => path.replace(/\{([A-Za-z][A-Za-z0-9_]*)\}/g, ':$1');

/** Mounts every route of `routes` under /api/v1, plus the OpenAPI document. */
export function managementApi(deps: AdminDeps, routes: readonly Route[], components: Record<string, z.ZodType> = {}): Middleware {
  const router = new Router({ prefix: API_PREFIX });
  const cursors = createCursorCodec(deps.masterKey);
  const document = buildOpenApiDocument(routes, { serverUrl: `${deps.config.publicUrl}${API_PREFIX}`, components });
  router.get('/openapi.json', (ctx) => {
    ctx.set('Cache-Control', 'public, max-age=300');
    ctx.body = document;
  });
  for (const route of routes) router.register(koaPath(route.path), [route.method], handlerFor(deps, route, cursors));
  const dispatch = router.routes();
  const methods = router.allowedMethods({ throw: true });
  return async function serveManagementApi(ctx, next) {
    if (ctx.path !== API_PREFIX && !ctx.path.startsWith(`${API_PREFIX}/`)) return next();
    // The router adds params and its own fields to the context it is given.
    const routed = ctx as Parameters<typeof dispatch>[0];
    await dispatch(routed, async () => {
      await methods(routed as Parameters<typeof methods>[0], next);
    });
  };
}
