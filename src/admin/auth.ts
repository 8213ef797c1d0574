import { decodeJwt } from 'jose';
import type { AppDeps } from '../app.js';
import { safeEqual, sha256 } from '../crypto/random.js';
import { AppError } from '../errors.js';
import { defaultApiOf } from '../oidc/provider.js';
import { TENANT_SLUG } from '../tenants/tenants.js';
import { apiKeyPrefix } from './api-key-format.js';
import { isManagementPermission, permissionsOf } from './rbac.js';
import { managementAudienceOf } from './route.js';

/** Who is calling the management API, resolved from the bearer token once per request. */
export interface Caller {
  /** The tenant the credential belongs to (its home tenant). */
  tenantId: string;
  tenantSlug: string;
  kind: 'service_account' | 'api_key';
  /** The service account's or API key's id. */
  id: string;
  /** Management permissions this request may use. */
  permissions: ReadonlySet<string>;
  /** May act on every tenant; each such action is audited in the target tenant as cross-tenant. */
  platformAdmin: boolean;
}

export type AuthDeps = Pick<AppDeps, 'db' | 'tenants' | 'oidc' | 'clock' | 'config' | 'logger'>;

// ---------------------------------------------------------------- API keys

/** lastUsedAt is a hint for admins, so it is written at most once a minute per key. */
const LAST_USED_GRANULARITY_MS = 60_000;
/** RFC 6750: a 401 names the scheme it expects. */
const unauthorized = (description: string, error?: 'invalid_token') =>
  new AppError(401, 'unauthorized', description, {
    'WWW-Authenticate': error ? `Bearer realm="idp", error="${error}"` : 'Bearer realm="idp"',
  });
const invalidCredentials = () => unauthorized('the bearer token is invalid, expired or revoked', 'invalid_token');

async function authenticateApiKey(deps: AuthDeps, token: string): Promise<Caller> {
  const prefix = apiKeyPrefix(token);
  if (!prefix) throw invalidCredentials();
  const prisma = deps.db.prisma;
  const row = await prisma.apiKey.findUnique({ where: { prefix }, include: { tenant: { select: { slug: true } } } });
  // Hash anyway when there is no row, so an unknown prefix costs what a wrong secret does.
  const presented = sha256(token);
  if (!row || !safeEqual(presented, row.keyHash)) throw invalidCredentials();
  const now = deps.clock.now();
  if (row.revokedAt || (row.expiresAt && row.expiresAt.getTime() <= now)) throw invalidCredentials();
  if (!row.lastUsedAt || now - row.lastUsedAt.getTime() >= LAST_USED_GRANULARITY_MS) {
    await prisma.apiKey.updateMany({
      where: { id: row.id, OR: [{ lastUsedAt: null }, { lastUsedAt: { lt: new Date(now - LAST_USED_GRANULARITY_MS) } }] },
      data: { lastUsedAt: new Date(now) },
    });
  }
  return {
    tenantId: row.tenantId,
    tenantSlug: row.tenant.slug,
    kind: 'api_key',
    id: row.id,
    permissions: new Set(row.scopes.filter(isManagementPermission)),
    platformAdmin: row.platformAdmin,
  };
}

// ---------------------------------------------------------------- service-account access tokens

function tenantSlugOfIssuer(publicUrl: string, issuer: unknown): string | undefined {
  if (typeof issuer !== 'string') return undefined;
  const prefix = `${publicUrl}/t/`;
  if (!issuer.startsWith(prefix)) return undefined;
  const slug = issuer.slice(prefix.length);
  return TENANT_SLUG.test(slug) ? slug : undefined;
}

function audiences(aud: unknown): string[] {
  if (typeof aud === 'string') return [aud];
  return Array.isArray(aud) ? aud.filter((a): a is string => typeof a === 'string') : [];
}

/**
 * A JWT access token our tenant issued (client_credentials) to a service
 * account's client: verified with that tenant's keys and denylist, meant for
 * the management API (or the tenant's default API), and the service account
 * must still exist and be enabled. Its permissions are the token's scopes that
 * the service account still holds now (its scopes and roles).
 */
async function authenticateServiceAccount(deps: AuthDeps, token: string): Promise<Caller> {
  let unverified: { iss?: unknown };
  try {
    unverified = decodeJwt(token);
  } catch {
    throw invalidCredentials();
  }
  const slug = tenantSlugOfIssuer(deps.config.publicUrl, unverified.iss);
  const tenant = slug ? await deps.tenants.bySlug(slug) : null;
  if (!tenant) throw invalidCredentials();
  const oidc = await deps.oidc.get(tenant);
  const payload = await oidc.verifier.payloadOf(token);
  if (!payload || payload.kind !== 'ClientCredentials' || typeof payload.clientId !== 'string') throw invalidCredentials();
  const accepted = [defaultApiOf(oidc.issuer), managementAudienceOf(deps.config.publicUrl)];
  if (!audiences(payload.aud).some((aud) => accepted.includes(aud))) throw invalidCredentials();
  if ((payload.extra as { tid?: unknown } | undefined)?.tid !== tenant.id) throw invalidCredentials();
  const account = await deps.db.prisma.serviceAccount.findFirst({
    where: { tenantId: tenant.id, clientId: payload.clientId, disabled: false },
    include: { roleAssignments: { include: { role: { select: { permissions: true } } } } },
  });
  if (!account) throw invalidCredentials();
  const held = permissionsOf(
    account.roleAssignments.map((a) => a.role),
    account.scopes,
  );
  const granted = String(payload.scope ?? '')
    .split(' ')
    .filter((scope) => isManagementPermission(scope) && held.has(scope));
  return {
    tenantId: tenant.id,
    tenantSlug: tenant.slug,
    kind: 'service_account',
    id: account.id,
    permissions: new Set(granted),
    platformAdmin: account.platformAdmin,
  };
}

const MAX_TOKEN_LENGTH = 16 * 1024;

/** The caller behind `Authorization: Bearer …`, or 401. */
export async function authenticate(deps: AuthDeps, authorization: string): Promise<Caller> {
  const match = /^Bearer[ ]+([^\s]+)\s*$/i.exec(authorization);
  const token = match?.[1];
  if (!token) throw unauthorized('send Authorization: Bearer <service-account access token or API key>');
  if (token.length > MAX_TOKEN_LENGTH) throw invalidCredentials();
  if (token.startsWith('idp_')) return authenticateApiKey(deps, token);
  if (token.split('.').length === 3) return authenticateServiceAccount(deps, token);
  throw invalidCredentials();
}
