import type { Context } from 'koa';
import { z } from 'zod';
import type { AppDeps } from '../app.js';
import type { AuditEventInput } from '../audit/audit.js';
import type { Prisma } from '../store/db.js';
import type { TenantContext } from '../tenants/tenants.js';
import type { Caller } from './auth.js';
import type { Permission } from './permissions.js';

/**
 * What a management route is: one definition (method, path, permission, zod
 * schemas, handler) from which router.ts builds the koa route and openapi.ts
 * the document. Kept free of the server's machinery so the CLI can share the
 * resources' logic without loading it.
 */

export const API_PREFIX = '/api/v1';

/** The management API as a resource indicator (token audience). */
export const managementAudienceOf = (publicUrl: string) => `${publicUrl}${API_PREFIX}`;

export type AdminDeps = AppDeps;

export type HttpMethod = 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';

export interface RouteContext<P, Q, B> {
  deps: AdminDeps;
  koa: Context;
  caller: Caller;
  /** The tenant acted on: the path's {tenant}, or the caller's own on platform routes. */
  tenant: TenantContext;
  /** A platform admin acting on a tenant other than its own. */
  crossTenant: boolean;
  params: P;
  query: Q;
  body: B;
  actor: AuditEventInput['actor'];
  /** Appends to the acted-on tenant's audit trail with the caller as actor (inside `tx` when given). */
  audit(event: Omit<AuditEventInput, 'actor' | 'ip' | 'userAgent'>, tx?: Prisma.TransactionClient): Promise<void>;
  /** Tells every node to drop what it cached about the tenant (providers, directory). */
  announce(what: string): Promise<void>;
  /** Cursors bound to this route and tenant. */
  cursor: { encode(value: string): string; decode(cursor: string | undefined): string | undefined };
}

const NONE = z.object({});
type None = typeof NONE;

export interface RouteDefinition<P extends z.ZodType, Q extends z.ZodType, B extends z.ZodType, R extends z.ZodType> {
  method: HttpMethod;
  /** OpenAPI-style, relative to /api/v1: `/tenants/{tenant}/users/{userId}`. */
  path: string;
  operationId: string;
  summary: string;
  tag: string;
  /** The minimum permission; null: any authenticated caller. */
  permission: Permission | null;
  /** Only platform administrators (in addition to the permission). */
  platformOnly?: boolean;
  params?: P;
  query?: Q;
  body?: B;
  /** The JSON response; absent means 204 No Content (unless `produces`). */
  response?: R;
  status?: 200 | 201 | 202;
  /** Media types of a streamed response the handler writes itself (exports). */
  produces?: readonly string[];
  handler(route: RouteContext<z.output<P>, z.output<Q>, z.output<B>>): Promise<z.input<R> | undefined>;
}

/** A route with its types erased, as the router and the OpenAPI builder see it. */
export interface Route {
  method: HttpMethod;
  path: string;
  operationId: string;
  summary: string;
  tag: string;
  permission: Permission | null;
  platformOnly?: boolean;
  params?: z.ZodType;
  query?: z.ZodType;
  body?: z.ZodType;
  response?: z.ZodType;
  status?: 200 | 201 | 202;
  produces?: readonly string[];
  handler(route: RouteContext<unknown, unknown, unknown>): Promise<unknown>;
}

export function defineRoute<P extends z.ZodType = None, Q extends z.ZodType = None, B extends z.ZodType = None, R extends z.ZodType = None>(
  definition: RouteDefinition<P, Q, B, R>,
): Route {
  return definition as unknown as Route;
}

export const isTenantRoute = (route: Pick<Route, 'path'>) => route.path.startsWith('/tenants/{tenant}');
