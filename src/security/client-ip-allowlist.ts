import { decodeJwt } from 'jose';
import { LRUCache } from 'lru-cache';
import type { AuditLog } from '../audit/audit.js';
import { AppError } from '../errors.js';
import type { PrismaClient } from '../store/db.js';
import type { KvStore } from '../store/index.js';
import { onTenantChange, type TenantContext } from '../tenants/tenants.js';
import { ipInAny } from './ip.js';

export interface TokenRequest {
  tenant: TenantContext;
  /** The caller's address as koa sees it (X-Forwarded-For only when TRUST_PROXY is set). */
  ip: string;
  userAgent: string | null;
  body: Record<string, string | string[] | undefined>;
  authorization: string;
}

/** Runs before the token endpoint issues anything; throws to refuse the request. */
export type TokenGuard = (request: TokenRequest) => Promise<void>;

const refused = (description: string) => new AppError(401, 'invalid_client', description);

function basicClientId(authorization: string): string | undefined {
  const match = /^Basic\s+([A-Za-z0-9+/=]+)$/i.exec(authorization.trim());
  if (!match) return undefined;
  const decoded = Buffer.from(match[1] ?? '', 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  if (colon < 0) return undefined;
  try {
    // RFC 6749 §2.3.1: the client id is form-urlencoded inside Basic credentials.
    return decodeURIComponent(decoded.slice(0, colon).replace(/\+/g, ' '));
  } catch {
    return undefined;
  }
}

function assertionClientId(assertion: unknown): string | undefined {
  if (typeof assertion !== 'string') return undefined;
  try {
    const claims = decodeJwt(assertion);
    return typeof claims.sub === 'string' ? claims.sub : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Every client id the request could authenticate as. oidc-provider refuses
 * requests that use more than one method, but checking all of them means no
 * combination slips a service account's client past its allowlist.
 */
function candidateClientIds(request: TokenRequest): string[] {
  const fromBody = typeof request.body.client_id === 'string' ? request.body.client_id : undefined;
  return [fromBody, basicClientId(request.authorization), assertionClientId(request.body.client_assertion)].filter(
    // A NUL byte cannot be in any stored client id, and PostgreSQL refuses it in a query (a 500).
    (id): id is string => typeof id === 'string' && id.length > 0 && id.length <= 200 && !id.includes('\0'),
  );
}

/** What the guard needs of the service account holding a client id. */
interface GuardedAccount {
  id: string;
  clientId: string;
  disabled: boolean;
  allowedIps: string[];
}

/** (tenant, client id) answers a node keeps; unknown ids are answers too, so this bounds what made-up ids can fill. */
const ACCOUNT_CACHE_MAX = 10_000;
/**
 * Every writer of a service account's client id, allowlist or disabled flag
 * (management API, CLI) publishes a tenant change, which drops the tenant's
 * answers on every node; the TTL only bounds staleness should such a message
 * be lost.
 */
const ACCOUNT_CACHE_TTL_MS = 60_000;

export interface ServiceAccountTokenGuard {
  guard: TokenGuard;
  /** Stops listening for tenant changes. */
  close(): Promise<void>;
}

/**
 * A service account's IP allowlist, enforced at the token endpoint: its client
 * gets no token from an address outside the allowlist, and none while the
 * service account is disabled.
 *
 * Whether a client id belongs to a service account is cached per node (most
 * token requests come from clients that are not one, so "none" is cached too):
 * without it, every token request costs a PostgreSQL round trip.
 */
export async function createServiceAccountTokenGuard({
  prisma,
  audit,
  kv,
}: {
  prisma: PrismaClient;
  audit: AuditLog;
  kv: KvStore;
}): Promise<ServiceAccountTokenGuard> {
  const cache = new LRUCache<string, Promise<GuardedAccount | null>>({ max: ACCOUNT_CACHE_MAX, ttl: ACCOUNT_CACHE_TTL_MS });
  // Tenant ids are UUIDs: the prefix cannot run into the client id.
  const keyOf = (tenantId: string, clientId: string) => `${tenantId}:${clientId}`;
  const unsubscribe = await onTenantChange(kv, (change) => {
    // A lookup in flight is dropped with the rest, so an answer read before the change is never kept after it.
    for (const key of [...cache.keys()]) if (key.startsWith(`${change.tenantId}:`)) cache.delete(key);
  });

  function accountHolding(tenantId: string, clientId: string): Promise<GuardedAccount | null> {
    const key = keyOf(tenantId, clientId);
    let found = cache.get(key);
    if (!found) {
      const loading = prisma.serviceAccount.findFirst({
        where: { tenantId, clientId },
        select: { id: true, clientId: true, disabled: true, allowedIps: true },
      }) as Promise<GuardedAccount | null>;
      found = loading;
      cache.set(key, loading);
      // A failed lookup (database down) must not stay cached.
      loading.catch(() => {
        if (cache.get(key) === loading) cache.delete(key);
      });
    }
    return found;
  }

  async function refuse(request: TokenRequest, account: GuardedAccount): Promise<never> {
    await audit.append(request.tenant.id, {
      actor: { type: 'client', id: account.clientId },
      action: 'service_account.token_refused',
      resource: { type: 'service_account', id: account.id },
      ip: request.ip,
      userAgent: request.userAgent,
      metadata: { reason: account.disabled ? 'disabled' : 'ip_not_allowed' },
    });
    throw refused(account.disabled ? 'the client is disabled' : 'the client may not request tokens from this address');
  }

  return {
    async guard(request) {
      const clientIds = candidateClientIds(request);
      const accounts = await Promise.all(clientIds.map((clientId) => accountHolding(request.tenant.id, clientId)));
      for (const account of accounts) {
        if (!account) continue;
        const outside = account.allowedIps.length > 0 && !ipInAny(request.ip, account.allowedIps);
        if (account.disabled || outside) await refuse(request, account);
      }
    },
    close: unsubscribe,
  };
}
