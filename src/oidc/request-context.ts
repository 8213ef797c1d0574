import { AsyncLocalStorage } from 'node:async_hooks';
import type { AdapterPayload } from 'oidc-provider';
import type { AccountInfo } from './accounts.js';

/**
 * What the adapter needs to know about the request oidc-provider is serving:
 * which endpoint (userinfo accepts our JWT access tokens without their API
 * audience) and the JWT access tokens that were swapped for handles so that
 * introspection and revocation accept them (see mount.ts).
 *
 * It also remembers what this request read, because oidc-provider reads the
 * same records more than once per request. Nothing outlives the request, so
 * no other request or node can ever be served from it.
 */
export interface OidcRequestContext {
  route: 'userinfo' | 'introspection' | 'revocation' | 'other';
  jwtHandles: Map<string, string>;
  /** Accounts loaded, by user id (findAccount, then the access token's roles). */
  accounts: Map<string, Promise<AccountInfo | null>>;
  /** Durable records read, by `model:id`; the adapter forgets one whenever it writes, consumes or deletes it. */
  payloads: Map<string, Promise<AdapterPayload | undefined>>;
}

export function newOidcRequestContext(): OidcRequestContext {
  return { route: 'other', jwtHandles: new Map(), accounts: new Map(), payloads: new Map() };
}

export const oidcRequestContext = new AsyncLocalStorage<OidcRequestContext>();

export const JWT_HANDLE_PREFIX = 'jwt-handle.';
