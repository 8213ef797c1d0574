import { randomBytes } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { LRUCache } from 'lru-cache';
import type { KoaContextWithOIDC } from 'oidc-provider';
import { safeEqual, sha256 } from '../crypto/random.js';
import type { TenantContext } from '../tenants/tenants.js';
import { type BuiltinClientDeps, ensureBuiltinClient } from './builtin-clients.js';
import type { OidcRegistry } from './registry.js';

/**
 * What our SAML IdP (src/saml-idp) needs from OIDC, so that SAML sign-in goes
 * through the same hosted pages, MFA policy, upstream connections and session
 * as OIDC sign-in. Each registered SP has a built-in first-party client
 * (`saml.<sp id>`): the SSO endpoint sends the browser to the authorization
 * endpoint as that client, the hosted pages sign the person in, and the code
 * that comes back to `/saml/continue` is redeemed here, server-side, for who
 * signed in and how. Because each SP is its own client, the provider session
 * records which SPs the person signed in to (its `authorizations`), which is
 * what single logout reads, and end_session revokes their grants with the rest.
 */

/** `saml.` + the SP's id (a UUID): see builtin-clients.ts for why a dotted id is safe. */
export const samlClientIdFor = (serviceProviderId: string) => `saml.${serviceProviderId}`;
const SAML_CLIENT_PREFIX = 'saml.';
/** Nothing beyond the subject is read from the provider: attributes come from our user record. */
export const SAML_CLIENT_SCOPE = 'openid';

export function samlClientMetadata(name: string, continueUrl: string, logoutContinueUrl: string): Record<string, unknown> {
  return {
    client_name: name,
    grant_types: ['authorization_code'],
    response_types: ['code'],
    redirect_uris: [continueUrl],
    post_logout_redirect_uris: [logoutContinueUrl],
    scope: SAML_CLIENT_SCOPE,
    token_endpoint_auth_method: 'none',
  };
}

/** Who signed in and how, read from a redeemed authorization code. */
export interface SamlSignIn {
  accountId: string;
  amr: string[];
  acr?: string;
  /** Seconds since the epoch. */
  authTime?: number;
  /** The provider session's id for this SP's client: stable for the session, our SAML SessionIndex. */
  sid: string;
}

/** The signed-in provider session of a browser, as single logout sees it. */
export interface SamlSessionView {
  accountId: string;
  /** The session id of each SP's client the person signed in to in this session, by SP id. */
  serviceProviders: Map<string, string>;
}

export interface AuthorizationStart {
  clientId: string;
  redirectUri: string;
  state: string;
  codeChallenge: string;
  /** ForceAuthn asks for `login`, IsPassive for `none`. */
  prompt?: 'login' | 'none';
}

export interface CodeRedemption {
  code: string;
  clientId: string;
  redirectUri: string;
  codeVerifier: string;
}

export interface LogoutForm {
  action: string;
  fields: Record<string, string>;
}

export interface SamlBridge {
  /** The SP's built-in client, created or brought up to date first (checked at most once a minute per SP and node). */
  clientIdFor(tenant: TenantContext, sp: { id: string; name: string }, urls: { continue: string; sloContinue: string }): Promise<string>;
  authorizationUrl(tenant: TenantContext, start: AuthorizationStart): Promise<string>;
  /** Redeems the code once; undefined when it is unknown, used, expired, or not this client's, URI's and verifier's. */
  redeemCode(tenant: TenantContext, redemption: CodeRedemption): Promise<SamlSignIn | undefined>;
  currentSession(tenant: TenantContext, req: IncomingMessage, res: ServerResponse): Promise<SamlSessionView | undefined>;
  /**
   * Arms oidc-provider's own logout for this browser's session, as its
   * end_session endpoint does after the person confirms: the returned form,
   * posted by the browser, ends the session (revoking grants, back-channel
   * logout to OIDC clients, clearing the cookie) and redirects to
   * `postLogoutRedirectUri?state=…`. Undefined when nobody is signed in.
   */
  prepareLogout(
    tenant: TenantContext,
    req: IncomingMessage,
    res: ServerResponse,
    logout: { clientId: string; postLogoutRedirectUri: string; state: string },
  ): Promise<LogoutForm | undefined>;
}

export function createSamlBridge(deps: BuiltinClientDeps & { registry: OidcRegistry }): SamlBridge {
  // Without this every sign-in would read the client row; the TTL bounds how long a hand-edited row stays wrong.
  const ensured = new LRUCache<string, Promise<string>>({ max: 10_000, ttl: 60_000 });
  return {
    clientIdFor(tenant, sp, urls) {
      const metadata = samlClientMetadata(sp.name, urls.continue, urls.sloContinue);
      const key = `${tenant.id}|${sp.id}|${JSON.stringify(metadata)}`;
      let entry = ensured.get(key);
      if (!entry) {
        entry = ensureBuiltinClient(deps, tenant, { clientId: samlClientIdFor(sp.id), name: sp.name, metadata, actorId: 'saml-idp' });
        ensured.set(key, entry);
        // A failure (database down, say) must not be remembered.
        entry.catch(() => {
          if (ensured.get(key) === entry) ensured.delete(key);
        });
      }
      return entry;
    },

    async authorizationUrl(tenant, start) {
      const provider = await deps.registry.providerFor(tenant);
      const url = new URL(provider.urlFor('authorization'));
      url.search = new URLSearchParams({
        client_id: start.clientId,
        response_type: 'code',
        scope: SAML_CLIENT_SCOPE,
        redirect_uri: start.redirectUri,
        code_challenge: start.codeChallenge,
        code_challenge_method: 'S256',
        state: start.state,
        ...(start.prompt ? { prompt: start.prompt } : {}),
      }).toString();
      return url.href;
    },

    async redeemCode(tenant, redemption) {
      const provider = await deps.registry.providerFor(tenant);
      const code = await provider.AuthorizationCode.find(redemption.code);
      if (!code?.isValid || code.clientId !== redemption.clientId || code.redirectUri !== redemption.redirectUri) return undefined;
      // PKCE binds the code to the sign-in this server started: a code from another flow has another challenge.
      if (code.codeChallengeMethod !== 'S256' || !safeEqual(code.codeChallenge ?? '', sha256(redemption.codeVerifier))) return undefined;
      await code.consume();
      if (!code.accountId || !code.sid) return undefined;
      return { accountId: code.accountId, amr: code.amr ?? [], acr: code.acr, authTime: code.authTime, sid: code.sid };
    },

    async currentSession(tenant, req, res) {
      const provider = await deps.registry.providerFor(tenant);
      const session = await provider.Session.get(provider.createContext(req, res));
      if (typeof session.accountId !== 'string' || !session.accountId) return undefined;
      return { accountId: session.accountId, serviceProviders: samlServiceProvidersOf(session.authorizations) };
    },

    async prepareLogout(tenant, req, res, logout) {
      const provider = await deps.registry.providerFor(tenant);
      const session = await provider.Session.get(provider.createContext(req, res));
      if (typeof session.accountId !== 'string' || !session.accountId || typeof session.exp !== 'number') return undefined;
      // The same state end_session's first step stores; its confirm step checks `xsrf` against `secret`.
      const secret = randomBytes(24).toString('hex');
      session.state = { secret, clientId: logout.clientId, postLogoutRedirectUri: logout.postLogoutRedirectUri, state: logout.state };
      await session.persist();
      return { action: provider.urlFor('end_session_confirm'), fields: { xsrf: secret, logout: 'yes' } };
    },
  };
}

// ---------------------------------------------------------------- logout started at end_session

/**
 * A logout an OIDC client or the account page started at end_session, while
 * the session has SAML SPs too: the SAML IdP may send the browser to them
 * before it reaches where oidc-provider would have sent it.
 */
export interface EndSessionLogout {
  tenant: TenantContext;
  accountId: string;
  /** The session id of each SAML SP's client in this session, by SP id. */
  serviceProviders: Map<string, string>;
  /** Where oidc-provider sends the browser after the logout (the client's post-logout URI with its state, or the success page). */
  destination: string;
}

/** Where the browser goes after the logout instead (the SAML IdP's continue step), or undefined to leave it alone. */
export type EndSessionLogoutHook = (logout: EndSessionLogout) => Promise<{ postLogoutRedirectUri: string; state: string } | undefined>;

function samlServiceProvidersOf(authorizations: Record<string, { sid?: string }> | undefined): Map<string, string> {
  const serviceProviders = new Map<string, string>();
  for (const [clientId, authorization] of Object.entries(authorizations ?? {})) {
    if (clientId.startsWith(SAML_CLIENT_PREFIX) && typeof authorization.sid === 'string') {
      serviceProviders.set(clientId.slice(SAML_CLIENT_PREFIX.length), authorization.sid);
    }
  }
  return serviceProviders;
}

/**
 * Runs in end_session's logoutSource, after oidc-provider stored where the
 * logout ends (session.state) and before the person confirms: when the
 * session has SAML SPs, the end of the logout becomes the SAML IdP's continue
 * step, which tells those SPs and then sends the browser on to the original
 * destination. Clicking "Stay signed in" lands there too; it then finds the
 * session alive and tells nobody.
 */
export async function detourLogoutThroughSaml(ctx: KoaContextWithOIDC, tenant: TenantContext, hook: EndSessionLogoutHook | undefined) {
  const session = ctx.oidc.session;
  const state = session?.state as { postLogoutRedirectUri?: unknown; state?: unknown } | undefined;
  if (!hook || !session?.accountId || !state) return;
  const serviceProviders = samlServiceProvidersOf(session.authorizations);
  if (serviceProviders.size === 0) return;
  let destination = ctx.oidc.provider.urlFor('end_session_success');
  if (typeof state.postLogoutRedirectUri === 'string') {
    const url = new URL(state.postLogoutRedirectUri);
    if (typeof state.state === 'string') url.searchParams.set('state', state.state);
    destination = url.href;
  }
  const detour = await hook({ tenant, accountId: session.accountId, serviceProviders, destination });
  if (!detour) return;
  state.postLogoutRedirectUri = detour.postLogoutRedirectUri;
  state.state = detour.state;
}
