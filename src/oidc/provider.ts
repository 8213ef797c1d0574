import { hkdfSync } from 'node:crypto';
import type { JWK } from 'jose';
import type { Context } from 'koa';
import Provider, { type Configuration, errors, type KoaContextWithOIDC } from 'oidc-provider';
import { PERMISSIONS } from '../admin/permissions.js';
import { managementAudienceOf } from '../admin/route.js';
import type { AppDeps } from '../app.js';
import { safeEqual, sha256 } from '../crypto/random.js';
import { isDependencyUnavailable, unavailable } from '../errors.js';
import { renderErrorPage, renderLogoutPage, renderLogoutSuccess } from '../interaction/render.js';
import { ACR } from '../interaction/routes.js';
import type { TenantContext } from '../tenants/tenants.js';
import { type AccessTokenVerifier, createAccessTokenVerifier, GRANT_CLAIM } from './access-tokens.js';
import { CLAIMS, findAccountFor, requestAccount } from './accounts.js';
import { createAdapterClass, denylistKey } from './adapter.js';
import { auditProviderEvents } from './audit-events.js';
import { ensureKeys, loadTenantKeys, SIGNING_ALGS, type SigningAlg } from './keys.js';
import { detourLogoutThroughSaml, type EndSessionLogoutHook } from './saml-bridge.js';

export type OidcDeps = Pick<AppDeps, 'config' | 'db' | 'kv' | 'clock' | 'vault' | 'audit' | 'logger' | 'masterKey'> & {
  /** The SAML IdP's part in a logout started here (src/saml-idp/end-session.ts): telling the session's SAML SPs. */
  endSessionLogout?: EndSessionLogoutHook;
};

export interface TenantOidc {
  provider: Provider;
  issuer: string;
  verifier: AccessTokenVerifier;
  /** The published public keys (next, active, previous): what the JWKS endpoint serves. */
  jwks: { keys: JWK[] };
}

export const ACCESS_TOKEN_TTL = 900;
export const REFRESH_TOKEN_ABSOLUTE_TTL = 7 * 24 * 3600;
const OIDC_SCOPES = ['openid', 'offline_access', 'profile', 'email', 'roles'];

/**
 * oidc-provider refuses clients whose `scope` names a value it does not
 * support, so the tenant's supported scopes are the OIDC ones, our permission
 * strings and whatever its clients and roles define (app permissions such as
 * `read:reports`). A client or role change rebuilds the provider.
 */
async function supportedScopes(prisma: OidcDeps['db']['prisma'], tenantId: string): Promise<string[]> {
  const [clients, roles] = await Promise.all([
    prisma.client.findMany({ where: { tenantId }, select: { metadata: true } }),
    prisma.role.findMany({ where: { tenantId }, select: { permissions: true } }),
  ]);
  const fromClients = clients.flatMap((c) => String((c.metadata as { scope?: unknown }).scope ?? '').split(' '));
  return [...new Set([...OIDC_SCOPES, ...PERMISSIONS, ...roles.flatMap((r) => r.permissions), ...fromClients])].filter(Boolean);
}

/** The audience of access tokens that name no other resource. */
export const defaultApiOf = (issuer: string) => `${issuer}/api`;

export function tenantAlgs(tenant: TenantContext): SigningAlg[] {
  const extra = (tenant.settings as { signingAlgs?: unknown }).signingAlgs;
  const wanted = Array.isArray(extra) ? extra.filter((alg): alg is SigningAlg => SIGNING_ALGS.includes(alg as SigningAlg)) : [];
  return ['RS256', ...wanted.filter((alg) => alg !== 'RS256')];
}

/** Cookie signing keys: per tenant, derived from the master key so every node agrees without sharing state. */
function cookieKeys(masterKey: Buffer, tenantId: string): string[] {
  return [Buffer.from(hkdfSync('sha256', masterKey, 'idp cookie keys', `cookies|${tenantId}`, 32)).toString('base64url')];
}

/** Tokens of a client secret are compared as hashes: only the hash is stored (see clients.ts). */
function compareHashedSecrets(provider: Provider): void {
  const Client = provider.Client as unknown as { prototype: { compareClientSecret(actual: string): boolean; clientSecret?: string } };
  Client.prototype.compareClientSecret = function compareClientSecret(actual: string) {
    return typeof this.clientSecret === 'string' && typeof actual === 'string' && safeEqual(this.clientSecret, sha256(actual));
  };
}

/**
 * oidc-provider puts `sid` in ID tokens only for clients registered for
 * back-channel logout; every client gets it here, so relying parties can tie
 * an ID token to the session that RP-initiated and back-channel logout end.
 */
function alwaysIncludeSid(provider: Provider): void {
  const Client = provider.Client as unknown as { prototype: { includeSid(): boolean } };
  Client.prototype.includeSid = () => true;
}

export async function createTenantProvider(deps: OidcDeps, tenant: TenantContext): Promise<TenantOidc> {
  const { config, db, kv, clock } = deps;
  const prisma = db.prisma;
  const issuer = `${config.publicUrl}/t/${tenant.slug}`;
  const defaultApi = defaultApiOf(issuer);
  // Service accounts may ask for tokens meant for the management API alone.
  const managementApi = managementAudienceOf(config.publicUrl);
  const algs = tenantAlgs(tenant);
  await ensureKeys({ prisma, vault: deps.vault, clock }, tenant.id, algs);
  const keys = await loadTenantKeys({ prisma, vault: deps.vault, clock }, tenant.id);
  const verifier = createAccessTokenVerifier({
    issuer,
    publicKeys: keys.public,
    algorithms: algs,
    kv,
    denylistKey: (jti) => denylistKey(tenant.id, jti),
  });
  const secure = config.publicUrl.startsWith('https:');

  const configuration: Configuration = {
    adapter: createAdapterClass({ prisma, kv, clock, tenantId: tenant.id, accessTokens: verifier, audit: deps.audit }),
    findAccount: findAccountFor(prisma, tenant.id),
    // ID tokens always say when and how the user signed in (auth_time, acr, amr), not only when a client asks.
    claims: { sid: null, ...CLAIMS, openid: [...CLAIMS.openid, 'auth_time', 'acr', 'amr'] },
    scopes: await supportedScopes(prisma, tenant.id),
    jwks: { keys: keys.signing as NonNullable<Configuration['jwks']>['keys'] },
    responseTypes: ['code'],
    clientAuthMethods: ['client_secret_basic', 'client_secret_post', 'private_key_jwt', 'none'],
    enabledJWA: {
      clientAuthSigningAlgValues: ['RS256', 'PS256', 'ES256', 'EdDSA'],
      idTokenSigningAlgValues: algs,
      userinfoSigningAlgValues: algs,
      introspectionSigningAlgValues: algs,
      authorizationSigningAlgValues: algs,
      requestObjectSigningAlgValues: ['RS256', 'PS256', 'ES256', 'EdDSA'],
    },
    allowOmittingSingleRegisteredRedirectUri: false,
    acrValues: Object.values(ACR),
    extraClientMetadata: {
      properties: ['first_party', 'resource_server'],
      validator(_ctx, key, value) {
        if (value !== undefined && typeof value !== 'boolean') throw new Error(`${key} must be a boolean`);
      },
    },
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      introspection: {
        enabled: true,
        // A confidential client may introspect its own tokens; a resource server any token of the tenant.
        async allowedPolicy(_ctx, client, token) {
          if (client.clientAuthMethod === 'none') return false;
          return client.clientId === token.clientId || (client as unknown as { resource_server?: boolean }).resource_server === true;
        },
      },
      revocation: {
        enabled: true,
        // RFC 7009: a client revokes only tokens issued to it.
        allowedPolicy: async (_ctx, client, token) => client.clientId === token.clientId,
      },
      userinfo: { enabled: true },
      backchannelLogout: { enabled: true },
      rpInitiatedLogout: {
        enabled: true,
        async logoutSource(ctx, form) {
          await detourLogoutThroughSaml(ctx, tenant, deps.endSessionLogout);
          renderLogoutPage(ctx as unknown as Context, form, tenant);
        },
        postLogoutSuccessSource: async (ctx) => renderLogoutSuccess(ctx as unknown as Context, tenant),
      },
      resourceIndicators: {
        enabled: true,
        defaultResource: async () => defaultApi,
        useGrantedResource: async () => true,
        async getResourceServerInfo(_ctx, indicator, client) {
          const apis = ((tenant.settings as { apis?: unknown }).apis ?? []) as unknown[];
          if (indicator !== defaultApi && indicator !== managementApi && !apis.includes(indicator)) {
            throw new errors.InvalidTarget();
          }
          return {
            scope: client.scope ?? '',
            audience: indicator,
            accessTokenTTL: ACCESS_TOKEN_TTL,
            accessTokenFormat: 'jwt',
            jwt: { sign: { alg: 'RS256' } },
          };
        },
      },
    },
    async extraTokenClaims(_ctx, token) {
      const claims: Record<string, unknown> = { tid: tenant.id };
      if (token.kind !== 'AccessToken') return claims;
      const accessToken = token as unknown as { grantId?: string; accountId?: string; scope?: string };
      if (accessToken.grantId) claims[GRANT_CLAIM] = accessToken.grantId;
      if (accessToken.accountId && accessToken.scope?.split(' ').includes('roles')) {
        const account = await requestAccount(prisma, tenant.id, accessToken.accountId);
        if (account) Object.assign(claims, { roles: account.roles, permissions: account.permissions });
      }
      return claims;
    },
    ttl: {
      AccessToken: ACCESS_TOKEN_TTL,
      ClientCredentials: ACCESS_TOKEN_TTL,
      AuthorizationCode: 60,
      IdToken: 3600,
      Interaction: 600,
      Session: 14 * 24 * 3600,
      Grant: 14 * 24 * 3600,
      // Absolute: rotation never extends the family beyond 7 days from the first grant.
      RefreshToken(_ctx, token) {
        const first = (token as unknown as { iiat?: number; iat?: number }).iiat ?? Math.floor(clock.now() / 1000);
        return Math.max(1, first + REFRESH_TOKEN_ABSOLUTE_TTL - Math.floor(clock.now() / 1000));
      },
    },
    rotateRefreshToken: true,
    cookies: {
      keys: cookieKeys(deps.masterKey, tenant.id),
      long: { httpOnly: true, sameSite: 'lax', secure, path: `/t/${tenant.slug}` },
      short: { httpOnly: true, sameSite: 'lax', secure },
    },
    interactions: {
      url: (_ctx, interaction) => `/t/${tenant.slug}/interaction/${interaction.uid}`,
    },
    loadExistingGrant: (ctx) => loadOrAutoConsent(ctx),
    clientBasedCORS(_ctx, origin, client) {
      return (client.redirectUris ?? []).some((uri) => new URL(uri).origin === origin);
    },
    async renderError(ctx, out) {
      renderErrorPage(ctx as unknown as Context, out, tenant);
    },
  };

  const provider = new Provider(issuer, configuration);
  provider.proxy = config.trustProxy;
  compareHashedSecrets(provider);
  alwaysIncludeSid(provider);
  auditProviderEvents(provider, { audit: deps.audit, logger: deps.logger, tenantId: tenant.id });
  // Runs after the provider's routes (matched ones too, which have answered by then): what none of them
  // answered gets the JSON error format instead of koa's bare text "Not Found".
  provider.use(async function unmatchedRoute(ctx, next) {
    await next();
    if (ctx.status === 404 && ctx.body == null && ctx.respond !== false) {
      ctx.status = 404;
      ctx.body = { error: 'not_found', error_description: 'no such route' };
    }
  });
  answerUnreachableStoresWith503(provider, tenant);
  return { provider, issuer, verifier, jwks: { keys: keys.public } };
}

/**
 * PostgreSQL or Redis out of reach inside the provider (its adapter, account
 * lookups) is oidc-provider's generic 500 `server_error`; everywhere else it
 * is 503 `temporarily_unavailable` with Retry-After (errors.ts), so it is made
 * that here too: the server_error event marks the request, and this
 * middleware, which wraps the provider's routes, rewrites the answer they
 * gave: the JSON error, or the error page for browsers.
 */
function answerUnreachableStoresWith503(provider: Provider, tenant: TenantContext): void {
  const unreachable = new WeakSet<object>();
  provider.on('server_error', (ctx: KoaContextWithOIDC, error: unknown) => {
    if (isDependencyUnavailable(error)) unreachable.add(ctx);
  });
  provider.use(async function dependencyUnavailable(ctx, next) {
    await next();
    if (!unreachable.has(ctx)) return;
    const { status, code, description, headers } = unavailable();
    const out = { error: code, error_description: description };
    ctx.status = status;
    ctx.set(headers);
    if (typeof ctx.body === 'string') renderErrorPage(ctx as unknown as Context, out, tenant, 'Temporarily unavailable');
    else ctx.body = out;
  });
}

/**
 * First-party clients are the tenant's own apps: their users are not asked to
 * consent, so the grant is extended with whatever they asked for.
 */
async function loadOrAutoConsent(ctx: KoaContextWithOIDC) {
  const { client, session, provider, result } = ctx.oidc;
  if (!client || !session?.accountId) return undefined;
  const grantId = result?.consent?.grantId ?? session.grantIdFor(client.clientId);
  const existing = grantId ? await provider.Grant.find(grantId) : undefined;
  if (!(client as unknown as { first_party?: boolean }).first_party) return existing;
  const grant = existing ?? new provider.Grant({ clientId: client.clientId, accountId: session.accountId });
  const requested = String(ctx.oidc.params?.scope ?? '');
  grant.addOIDCScope(requested);
  for (const indicator of Object.keys(ctx.oidc.resourceServers ?? {})) grant.addResourceScope(indicator, requested);
  await grant.save();
  return grant;
}
