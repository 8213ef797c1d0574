import type Provider from 'oidc-provider';
import type { KoaContextWithOIDC } from 'oidc-provider';
import type { AuditEventInput, AuditLog } from '../audit/audit.js';
import { isDependencyUnavailable } from '../errors.js';
import type { Logger } from '../observability/logger.js';

interface Deps {
  audit: AuditLog;
  logger: Logger;
  tenantId: string;
}

function requestMeta(ctx: KoaContextWithOIDC) {
  return { ip: ctx.ip, userAgent: ctx.get('user-agent') || null };
}

function actorOf(ctx: KoaContextWithOIDC): AuditEventInput['actor'] {
  const clientId = ctx.oidc?.client?.clientId;
  return clientId ? { type: 'client', id: clientId } : { type: 'anonymous' };
}

/**
 * Token issuance, reuse detection, revocation and sign-out, as audit events.
 * Audit failures are logged, never turned into a failed token response after
 * the tokens were issued.
 */
export function auditProviderEvents(provider: Provider, { audit, logger, tenantId }: Deps): void {
  const record = (ctx: KoaContextWithOIDC, event: Omit<AuditEventInput, 'actor' | 'ip' | 'userAgent'>) => {
    audit.append(tenantId, { actor: actorOf(ctx), ...requestMeta(ctx), ...event }).catch((error: unknown) => {
      logger.error({ err: error, action: event.action }, 'audit append failed');
    });
  };

  provider.on('grant.success', (ctx: KoaContextWithOIDC) => {
    const params = ctx.oidc.params as Record<string, unknown> | undefined;
    const subject = ctx.oidc.entities.AccessToken?.accountId ?? ctx.oidc.entities.Account?.accountId;
    record(ctx, {
      action: 'oidc.token.issued',
      resource: subject ? { type: 'user', id: subject } : { type: 'client', id: ctx.oidc.client?.clientId },
      metadata: {
        grant_type: params?.grant_type,
        client_id: ctx.oidc.client?.clientId,
        refresh_token_rotated: Boolean(ctx.oidc.entities.RotatedRefreshToken),
      },
    });
  });

  provider.on('grant.revoked', (ctx: KoaContextWithOIDC, grantId: string) => {
    const params = ctx.oidc?.params as Record<string, unknown> | undefined;
    // Revocation inside the token endpoint is oidc-provider reacting to a replayed code or refresh token.
    const action =
      ctx.oidc?.route === 'token'
        ? params?.grant_type === 'refresh_token'
          ? 'oidc.refresh_token.reuse_detected'
          : 'oidc.authorization_code.reuse_detected'
        : 'oidc.grant.revoked';
    record(ctx, {
      action,
      resource: { type: 'grant', id: grantId },
      metadata: { client_id: ctx.oidc?.client?.clientId, route: ctx.oidc?.route },
    });
  });

  provider.on('end_session.success', (ctx: KoaContextWithOIDC) => {
    record(ctx, { action: 'auth.signed_out', metadata: { client_id: ctx.oidc.client?.clientId } });
  });

  provider.on('server_error', (_ctx: KoaContextWithOIDC, error: Error) => {
    // A store out of reach is an outage, answered 503 (provider.ts), not a bug: a line without a stack, as in http.ts.
    if (isDependencyUnavailable(error)) logger.warn({ tenantId, error: 'temporarily_unavailable' }, 'dependency unavailable');
    else logger.error({ err: error, tenantId }, 'oidc-provider server error');
  });
}
