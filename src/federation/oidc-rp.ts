import * as oidc from 'openid-client';
import type { Clock } from '../clock.js';
import type { Vault } from '../crypto/vault.js';
import { type ConnectionEndpoints, type OidcConnection, openClientSecret } from './connections.js';
import type { UpstreamClaims } from './profile.js';
import { FederationRejection, type RejectReason, reject } from './rejection.js';

/**
 * Our relying party towards one upstream OpenID Provider, on openid-client:
 * discovery, the authorization code flow with PKCE (S256), `state` and
 * `nonce`, and the ID token checks openid-client does (signature against the
 * provider's JWKS, iss, aud, exp/iat on our clock, nonce, at_hash/c_hash).
 */

export interface OidcDeps {
  clock: Clock;
  vault: Vault;
}

const HTTP_TIMEOUT_SECONDS = 10;
const LOOPBACK = new Set(['localhost', '127.0.0.1', '[::1]']);

function clientAuth(connection: OidcConnection, secret: string | undefined): oidc.ClientAuth {
  switch (connection.oidc.tokenEndpointAuthMethod) {
    case 'none':
      return oidc.None();
    case 'client_secret_post':
      return oidc.ClientSecretPost(secret);
    default:
      return oidc.ClientSecretBasic(secret);
  }
}

/**
 * The provider's configuration from discovery. Plain http is accepted only
 * for a loopback issuer (development and tests): anywhere else it would let
 * the network rewrite the provider's keys.
 */
export async function discoverProvider(
  deps: OidcDeps,
  connection: OidcConnection,
  endpoints: ConnectionEndpoints,
): Promise<oidc.Configuration> {
  const issuer = new URL(connection.oidc.issuer);
  const insecure = issuer.protocol === 'http:';
  if (insecure && !LOOPBACK.has(issuer.hostname)) throw reject('upstream_unreachable', 'plain http is allowed only for loopback issuers');
  const metadata: Partial<oidc.ClientMetadata> = {
    redirect_uris: [endpoints.oidcRedirectUri],
    // openid-client checks token timestamps against its own clock; this aligns it with the injected one.
    [oidc.clockSkew]: Math.round((deps.clock.now() - Date.now()) / 1000),
  };
  try {
    return await oidc.discovery(
      issuer,
      connection.oidc.clientId,
      metadata,
      clientAuth(connection, openClientSecret(deps.vault, connection)),
      {
        execute: insecure ? [oidc.allowInsecureRequests] : [],
        timeout: HTTP_TIMEOUT_SECONDS,
      },
    );
  } catch (error) {
    throw reject('upstream_unreachable', `discovery failed: ${error instanceof Error ? error.message : String(error)}`);
  }
}

export interface OidcStart {
  url: string;
  nonce: string;
  codeVerifier: string;
}

/** The authorization request: code flow, PKCE S256, our `state` handle and a fresh nonce. */
export async function startOidcSignIn(
  deps: OidcDeps,
  connection: OidcConnection,
  endpoints: ConnectionEndpoints,
  state: string,
  loginHint?: string,
): Promise<OidcStart> {
  const config = await discoverProvider(deps, connection, endpoints);
  const codeVerifier = oidc.randomPKCECodeVerifier();
  const nonce = oidc.randomNonce();
  const params: Record<string, string> = {
    redirect_uri: endpoints.oidcRedirectUri,
    scope: connection.oidc.scopes.join(' '),
    response_type: 'code',
    code_challenge: await oidc.calculatePKCECodeChallenge(codeVerifier),
    code_challenge_method: 'S256',
    state,
    nonce,
  };
  if (loginHint) params.login_hint = loginHint;
  // Google shows only accounts of this Workspace domain; the `hd` claim is still checked on the way back.
  if (connection.oidc.domainClaim === 'hd' && connection.domains.length === 1 && connection.domains[0]) params.hd = connection.domains[0];
  return { url: oidc.buildAuthorizationUrl(config, params).href, nonce, codeVerifier };
}

function reasonFor(error: unknown): RejectReason {
  if (error instanceof oidc.AuthorizationResponseError) return 'upstream_error';
  if (error instanceof oidc.ResponseBodyError) return 'token_exchange_failed';
  const code = (error as { code?: unknown } | null)?.code;
  if (typeof code === 'string' && /JWT|JWS|CLAIM|NONCE|HASH|JWK/i.test(code)) return 'id_token_invalid';
  if (typeof code === 'string' && /STATE/i.test(code)) return 'unknown_state';
  if (error instanceof TypeError || (typeof code === 'string' && /TIMEOUT|ABORT/i.test(code))) return 'upstream_unreachable';
  return 'token_exchange_failed';
}

function describe(error: unknown): string {
  if (error instanceof oidc.AuthorizationResponseError) return `${error.error}: ${error.error_description ?? ''}`;
  return error instanceof Error ? error.message : String(error);
}

/** Claims the upstream may not override from userinfo: those the ID token's signature and checks vouch for. */
const ID_TOKEN_ONLY = new Set(['sub', 'iss', 'aud', 'exp', 'iat', 'nonce', 'azp', 'auth_time', 'acr', 'amr']);

/**
 * Redeems the code at the callback (`callbackUrl` is our redirect URI with
 * the query the upstream sent) and returns the ID token's claims, merged with
 * userinfo when the connection asks for it.
 */
export async function completeOidcSignIn(
  deps: OidcDeps,
  connection: OidcConnection,
  endpoints: ConnectionEndpoints,
  callbackUrl: URL,
  flow: { state: string; nonce: string; codeVerifier: string },
): Promise<UpstreamClaims> {
  const config = await discoverProvider(deps, connection, endpoints);
  try {
    const tokens = await oidc.authorizationCodeGrant(config, callbackUrl, {
      pkceCodeVerifier: flow.codeVerifier,
      expectedState: flow.state,
      expectedNonce: flow.nonce,
      idTokenExpected: true,
    });
    const claims = tokens.claims();
    if (!claims) throw reject('id_token_invalid', 'no ID token');
    const values: Record<string, unknown> = { ...claims };
    if (connection.oidc.userinfo) {
      const userinfo = await oidc.fetchUserInfo(config, tokens.access_token, claims.sub);
      for (const [name, value] of Object.entries(userinfo)) if (!ID_TOKEN_ONLY.has(name)) values[name] = value;
    }
    checkDomainClaim(connection, values);
    return { protocolSubject: claims.sub, values };
  } catch (error) {
    if (error instanceof FederationRejection) throw error;
    throw reject(reasonFor(error), describe(error));
  }
}

/** Google Workspace (`hd`): a connection limited to its domains refuses accounts from elsewhere, consumer accounts included. */
function checkDomainClaim(connection: OidcConnection, values: Record<string, unknown>): void {
  const claim = connection.oidc.domainClaim;
  if (!claim || connection.domains.length === 0) return;
  const value = values[claim];
  if (typeof value !== 'string' || !connection.domains.includes(value.toLowerCase())) {
    throw reject('domain_not_allowed', `${claim} is ${typeof value === 'string' ? value : 'absent'}`);
  }
}
