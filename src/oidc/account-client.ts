import type { IncomingMessage, ServerResponse } from 'node:http';
import { LRUCache } from 'lru-cache';
import type { TenantContext } from '../tenants/tenants.js';
import { type BuiltinClientDeps, ensureBuiltinClient } from './builtin-clients.js';
import type { OidcRegistry } from './registry.js';

/**
 * The account page (`/t/<slug>/account`) signs people in through the hosted
 * pages like any other app, so each tenant has a built-in client for it: a
 * first-party public client (no secret, no consent screen) whose only redirect
 * and post-logout URIs are the account page itself.
 */

/**
 * `account.` + the tenant id. Client ids are globally unique; createClient's
 * are 22 base64url characters, which never contain a dot, so no created client
 * can take this id. The tenant id, unlike the slug, is never reused.
 */
export const accountClientIdFor = (tenantId: string) => `account.${tenantId}`;

export const ACCOUNT_CLIENT_NAME = 'Account';
/** What the page shows; `roles` is our claim (see accounts.ts). */
export const ACCOUNT_CLIENT_SCOPE = 'openid profile email roles';

export const accountPageUrl = (publicUrl: string, slug: string) => `${publicUrl}/t/${slug}/account`;

/** The whole metadata of the built-in client: a stored row that differs in anything is rewritten to this. */
export function accountClientMetadata(accountUrl: string): Record<string, unknown> {
  return {
    client_name: ACCOUNT_CLIENT_NAME,
    grant_types: ['authorization_code'],
    response_types: ['code'],
    redirect_uris: [accountUrl],
    post_logout_redirect_uris: [accountUrl],
    scope: ACCOUNT_CLIENT_SCOPE,
    token_endpoint_auth_method: 'none',
  };
}

type ClientDeps = BuiltinClientDeps;

/**
 * Creates the tenant's account client if it is missing, and rewrites it when
 * its stored metadata differs from what the current PUBLIC_URL calls for (see
 * ensureBuiltinClient). Safe to run concurrently.
 */
export function ensureAccountClient(deps: ClientDeps, tenant: TenantContext, publicUrl: string): Promise<string> {
  return ensureBuiltinClient(deps, tenant, {
    clientId: accountClientIdFor(tenant.id),
    name: ACCOUNT_CLIENT_NAME,
    metadata: accountClientMetadata(accountPageUrl(publicUrl, tenant.slug)),
    actorId: 'account-page',
  });
}

/** Where the account page sends the browser, read from the tenant's provider as discovery publishes it. */
export interface AccountEndpoints {
  issuer: string;
  discovery: string;
  authorization: string;
  endSession: string;
}

/** The account page's view of OIDC; only src/oidc/ touches oidc-provider itself. */
export interface AccountPageOidc {
  /** The built-in client's id, created or brought up to date first (checked at most once a minute per tenant and node). */
  clientIdFor(tenant: TenantContext): Promise<string>;
  /**
   * The account signed in to this tenant in the browser that sent `req`:
   * oidc-provider's session cookie, which is path-scoped to `/t/<slug>` and
   * signed with keys derived per tenant, so another tenant's cookie never
   * verifies here. Undefined when there is no live session or nobody signed in.
   */
  signedInAccountId(tenant: TenantContext, req: IncomingMessage, res: ServerResponse): Promise<string | undefined>;
  endpoints(tenant: TenantContext): Promise<AccountEndpoints>;
}

export function createAccountPageOidc(deps: ClientDeps & { registry: OidcRegistry; publicUrl: string }): AccountPageOidc {
  // Without this every page view would read the client row; the TTL bounds how long a hand-edited row stays wrong.
  const ensured = new LRUCache<string, Promise<string>>({ max: 10_000, ttl: 60_000 });
  return {
    clientIdFor(tenant) {
      let entry = ensured.get(tenant.id);
      if (!entry) {
        entry = ensureAccountClient(deps, tenant, deps.publicUrl);
        ensured.set(tenant.id, entry);
        // A failure (database down, say) must not be remembered.
        entry.catch(() => {
          if (ensured.get(tenant.id) === entry) ensured.delete(tenant.id);
        });
      }
      return entry;
    },
    async signedInAccountId(tenant, req, res) {
      const provider = await deps.registry.providerFor(tenant);
      const session = await provider.Session.get(provider.createContext(req, res));
      return typeof session.accountId === 'string' && session.accountId ? session.accountId : undefined;
    },
    async endpoints(tenant) {
      const provider = await deps.registry.providerFor(tenant);
      return {
        issuer: provider.issuer,
        // Two oidc-provider routes are named 'discovery' (OAuth and OpenID); the contract publishes the OpenID one.
        discovery: `${provider.issuer}/.well-known/openid-configuration`,
        authorization: provider.urlFor('authorization'),
        endSession: provider.urlFor('end_session'),
      };
    },
  };
}
