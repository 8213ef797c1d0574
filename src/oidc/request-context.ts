import { AsyncLocalStorage } from 'node:async_hooks';

/**
 * What the adapter needs to know about the request oidc-provider is serving:
 * which endpoint (userinfo accepts our JWT access tokens without their API
 * audience) and the JWT access tokens that were swapped for handles so that
 * introspection and revocation accept them (see mount.ts).
 */
export interface OidcRequestContext {
  route: 'userinfo' | 'introspection' | 'revocation' | 'other';
  jwtHandles: Map<string, string>;
}

export const oidcRequestContext = new AsyncLocalStorage<OidcRequestContext>();

export const JWT_HANDLE_PREFIX = 'jwt-handle.';
