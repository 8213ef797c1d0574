import { decodeJwt } from 'jose';
import type { AuditLog } from '../audit/audit.js';
import { AppError } from '../errors.js';
import type { PrismaClient } from '../store/db.js';
import type { TenantContext } from '../tenants/tenants.js';
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

/**
 * A service account's IP allowlist, enforced at the token endpoint: its client
 * gets no token from an address outside the allowlist, and none while the
 * service account is disabled.
 */
export function serviceAccountTokenGuard({ prisma, audit }: { prisma: PrismaClient; audit: AuditLog }): TokenGuard {
  return async function guardServiceAccountTokens(request) {
    const clientIds = candidateClientIds(request);
    if (clientIds.length === 0) return;
    const accounts = await prisma.serviceAccount.findMany({
      where: { tenantId: request.tenant.id, clientId: { in: clientIds } },
      select: { id: true, clientId: true, disabled: true, allowedIps: true },
    });
    for (const account of accounts) {
      const outside = account.allowedIps.length > 0 && !ipInAny(request.ip, account.allowedIps);
      if (!account.disabled && !outside) continue;
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
  };
}
