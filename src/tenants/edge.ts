import type { Middleware } from 'koa';
import { AppError } from '../errors.js';
import type { TenantContext, TenantDirectory } from './tenants.js';

const TENANT_PATH = /^\/t\/([^/]*)(\/.*)?$/;

declare module 'koa' {
  interface DefaultState {
    requestId?: string;
    tenant?: TenantContext;
  }
}

export const tenantNotFound = () => new AppError(404, 'tenant_not_found', 'no such tenant');

/**
 * Resolves `/t/:tenant/…` into ctx.state.tenant once, then hands the request
 * to `tenantApp`. Malformed and unknown slugs answer alike, so the response
 * says nothing about which tenants exist beyond what a valid slug reveals.
 */
export function tenantEdge(directory: TenantDirectory, tenantApp: Middleware): Middleware {
  return async function resolveTenant(ctx, next) {
    const match = TENANT_PATH.exec(ctx.path);
    if (!match) return next();
    let slug: string;
    try {
      slug = decodeURIComponent(match[1] ?? '');
    } catch {
      throw tenantNotFound();
    }
    const tenant = await directory.bySlug(slug);
    if (!tenant) throw tenantNotFound();
    ctx.state.tenant = tenant;
    return tenantApp(ctx, next);
  };
}

/** The tenant of a request under /t/:tenant; a programming error anywhere else. */
export function requireTenant(state: { tenant?: TenantContext }): TenantContext {
  if (!state.tenant) throw new Error('no tenant resolved for this route');
  return state.tenant;
}
