import path from 'node:path';
import type { Context } from 'koa';
import pug from 'pug';
import type { AuditLog } from '../audit/audit.js';
import type { Clock } from '../clock.js';
import type { Config } from '../config.js';
import type { Vault } from '../crypto/vault.js';
import { AppError } from '../errors.js';
import { VIEWS_DIR } from '../interaction/assets.js';
import { formActionSource } from '../interaction/csp.js';
import { renderErrorPage, renderTemplate } from '../interaction/render.js';
import type { Logger } from '../observability/logger.js';
import type { PrismaClient } from '../store/db.js';
import type { KvStore } from '../store/index.js';
import type { TenantContext } from '../tenants/tenants.js';
import { resolveFederatedAccount } from './accounts.js';
import { connectionEndpoints, type FederationConnection } from './connections.js';
import { loadOidcRp, loadSamlSp } from './engines.js';
import { type FederationFlow, newFlowHandle, saveFlow, saveResult } from './flows.js';
import { mapProfile, type UpstreamClaims } from './profile.js';
import { auditDetail, FederationRejection } from './rejection.js';

/**
 * A federated sign-in from end to end: sending the browser to the upstream
 * (start), and, once a protocol module has validated the upstream's answer,
 * turning it into one of our users and handing it back to the interaction
 * (complete). Every success and every refusal is in the audit trail.
 */

export interface FederationDeps {
  config: Pick<Config, 'publicUrl'>;
  db: { prisma: PrismaClient };
  kv: KvStore;
  clock: Clock;
  vault: Vault;
  audit: AuditLog;
  logger: Logger;
}

/** RFC 8176 has no value for "another IdP authenticated the user"; `fed` is the one in common use (Entra ID). */
export const FEDERATED_AMR = 'fed';
/** With `fed`, two entries: finishLogin treats the login as multi-factor and asks for no second factor. */
const UPSTREAM_MFA_AMR = 'mfa';

const POST_TEMPLATE = pug.compileFile(path.join(VIEWS_DIR, 'federation-post.pug'), { basedir: VIEWS_DIR });

export function endpointsFor(deps: Pick<FederationDeps, 'config'>, tenant: TenantContext, connection: FederationConnection) {
  return connectionEndpoints(deps.config.publicUrl, tenant.slug, connection.id);
}

// ---------------------------------------------------------------- start

const upstreamUnreachable = (name: string) =>
  new AppError(502, 'upstream_unavailable', `${name} cannot be reached right now. Try again in a moment, or sign in another way.`);

/**
 * Sends the browser of interaction `uid` to the connection's IdP: a 303 to the
 * authorization URL or the SAML Redirect binding, or, for an IdP that only
 * takes the POST binding, a page whose one button posts the AuthnRequest
 * (our pages run no script, so the person presses it).
 */
export async function beginFederatedSignIn(
  deps: FederationDeps,
  ctx: Context,
  tenant: TenantContext,
  connection: FederationConnection,
  uid: string,
  loginHint?: string,
): Promise<void> {
  const handle = newFlowHandle();
  const endpoints = endpointsFor(deps, tenant, connection);
  const base = { tenantId: tenant.id, connectionId: connection.id, uid };
  try {
    if (connection.type === 'oidc') {
      const { startOidcSignIn } = await loadOidcRp();
      const start = await startOidcSignIn(deps, connection, endpoints, handle, loginHint);
      await saveFlow(deps.kv, handle, { ...base, protocol: 'oidc', nonce: start.nonce, codeVerifier: start.codeVerifier });
      return redirect(ctx, start.url);
    }
    const { startSamlSignIn } = await loadSamlSp();
    const start = await startSamlSignIn(deps, connection, endpoints, handle);
    await saveFlow(deps.kv, handle, { ...base, protocol: 'saml', requestId: start.requestId });
    if (start.binding === 'redirect') return redirect(ctx, start.url);
    renderTemplate(
      ctx,
      POST_TEMPLATE,
      tenant,
      `Continue to ${connection.name}`,
      { connectionName: connection.name, action: start.url, fields: start.fields },
      {
        formActions: [formActionSource(start.url)],
      },
    );
  } catch (error) {
    if (!(error instanceof FederationRejection)) throw error;
    deps.logger.warn(
      { tenantId: tenant.id, connectionId: connection.id, reason: error.reason, detail: error.detail },
      'federated sign-in could not start',
    );
    throw upstreamUnreachable(connection.name);
  }
}

function redirect(ctx: Context, url: string): void {
  ctx.status = 303;
  ctx.redirect(url);
}

// ---------------------------------------------------------------- complete

/**
 * The upstream's validated answer becomes one of our users; the interaction
 * that started the flow finishes it (src/federation/interaction-steps.ts),
 * through the same MFA policy as a password unless the connection says its
 * IdP already enforces MFA.
 */
export async function completeFederatedSignIn(
  deps: FederationDeps,
  ctx: Context,
  tenant: TenantContext,
  connection: FederationConnection,
  flow: FederationFlow,
  claims: UpstreamClaims,
): Promise<void> {
  const profile = mapProfile(connection.mapping, claims);
  const account = await resolveFederatedAccount({ prisma: deps.db.prisma, audit: deps.audit, clock: deps.clock }, connection, profile);
  await deps.audit.append(tenant.id, {
    actor: { type: 'user', id: account.user.id },
    action: 'federation.sign_in.succeeded',
    resource: { type: 'connection', id: connection.id },
    ip: ctx.ip || null,
    userAgent: ctx.get('User-Agent') || null,
    metadata: {
      connection_id: connection.id,
      connection: connection.name,
      protocol: connection.type,
      user_id: account.user.id,
      account: account.outcome,
      roles_added: account.rolesAdded,
      roles_removed: account.rolesRemoved,
    },
  });
  const amr = connection.enforcesMfa ? [FEDERATED_AMR, UPSTREAM_MFA_AMR] : [FEDERATED_AMR];
  await saveResult(deps.kv, tenant.id, flow.uid, { userId: account.user.id, connectionId: connection.id, amr });
  redirect(ctx, `/t/${encodeURIComponent(tenant.slug)}/interaction/${flow.uid}/federated`);
}

/** Account policy refusals are the person's to resolve with their admin; protocol ones are the upstream's or an attacker's. */
const ACCOUNT_REASONS = new Set(['missing_email', 'domain_not_allowed', 'account_conflict', 'user_disabled']);

/** Audits a refused response and shows the one generic page: the reason stays in the trail. */
export async function refuse(
  deps: FederationDeps,
  ctx: Context,
  tenant: TenantContext,
  connection: { id: string; name: string; type: string } | null,
  rejection: FederationRejection,
): Promise<void> {
  await deps.audit.append(tenant.id, {
    actor: { type: 'anonymous' },
    action: 'federation.response.rejected',
    resource: { type: 'connection', id: connection?.id ?? null },
    ip: ctx.ip || null,
    userAgent: ctx.get('User-Agent') || null,
    metadata: {
      connection_id: connection?.id ?? null,
      protocol: connection?.type ?? null,
      reason: rejection.reason,
      detail: auditDetail(rejection.detail),
    },
  });
  deps.logger.info(
    { tenantId: tenant.id, connectionId: connection?.id, reason: rejection.reason, detail: rejection.detail },
    'federated sign-in refused',
  );
  const account = ACCOUNT_REASONS.has(rejection.reason);
  ctx.status = account ? 403 : 400;
  ctx.set('Cache-Control', 'no-store');
  renderErrorPage(
    ctx,
    {
      error: account ? 'access_denied' : 'invalid_request',
      error_description: account
        ? `Your ${connection?.name ?? 'organization'} account cannot be used to sign in here. Ask your administrator for access`
        : `Signing in with ${connection?.name ?? 'your organization'} did not work. Return to the application and start again`,
    },
    tenant,
    'Sign-in was not completed',
  );
}
