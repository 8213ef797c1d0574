import Koa, { type Middleware } from 'koa';
import { adminRoutes } from './admin/routes.js';
import { type AuditLog, createAuditLog } from './audit/audit.js';
import type { Clock } from './clock.js';
import type { Config } from './config.js';
import { createPasswordHasher, type PasswordHasher } from './crypto/passwords.js';
import { createVault, type Vault } from './crypto/vault.js';
import { federationRoutes } from './federation/routes.js';
import { accountRoutes } from './interaction/account.js';
import { assetRoutes } from './interaction/assets.js';
import { interactionRoutes } from './interaction/routes.js';
import { isSelfServicePath, selfServiceRoutes } from './interaction/self-service.js';
import { createMailer, type Mailer } from './mail/mailer.js';
import { healthRoutes } from './observability/health.js';
import { bodyLimit, observeRequests, requestId } from './observability/http.js';
import type { Logger } from './observability/logger.js';
import { createMetrics, type Metrics } from './observability/metrics.js';
import { oidcRoutes } from './oidc/mount.js';
import { createOidcRegistry, type OidcRegistry } from './oidc/registry.js';
import { createEndSessionLogoutHook } from './saml-idp/end-session.js';
import { isSamlIdpPath, samlIdpRoutes } from './saml-idp/routes.js';
import { limitRequest } from './security/abuse.js';
import { createServiceAccountTokenGuard, type ServiceAccountTokenGuard } from './security/client-ip-allowlist.js';
import { securityHeaders } from './security/headers.js';
import { createNetworkPolicyCache, type NetworkPolicyCache } from './security/network-policy.js';
import type { Database, KvStore } from './store/index.js';
import { requireTenant, tenantEdge } from './tenants/edge.js';
import { createTenantDirectory, type TenantDirectory } from './tenants/tenants.js';

/** What the stores and the process give the app. */
export interface Infrastructure {
  config: Config;
  db: Database;
  kv: KvStore;
  logger: Logger;
  clock: Clock;
  masterKey: Buffer;
}

/** Everything a feature may depend on, built once per app. */
export interface AppDeps extends Infrastructure {
  audit: AuditLog;
  vault: Vault;
  passwords: PasswordHasher;
  tenants: TenantDirectory;
  metrics: Metrics;
  oidc: OidcRegistry;
  mailer: Mailer;
  serviceAccountGuard: ServiceAccountTokenGuard;
  networkPolicies: NetworkPolicyCache;
}

export async function createAppDeps(infra: Infrastructure): Promise<AppDeps> {
  const audit = createAuditLog({ prisma: infra.db.prisma, clock: infra.clock });
  const vault = createVault({ masterKey: infra.masterKey, previousMasterKeys: infra.config.previousMasterKeys });
  return {
    ...infra,
    audit,
    vault,
    passwords: createPasswordHasher(),
    tenants: await createTenantDirectory({ prisma: infra.db.prisma, kv: infra.kv }),
    metrics: createMetrics({ statements: infra.db.statements, operations: infra.kv.operations }),
    oidc: await createOidcRegistry({ ...infra, audit, vault, endSessionLogout: createEndSessionLogoutHook(infra) }),
    mailer: createMailer({ config: infra.config, logger: infra.logger }),
    serviceAccountGuard: await createServiceAccountTokenGuard({ prisma: infra.db.prisma, audit, kv: infra.kv }),
    networkPolicies: await createNetworkPolicyCache({ prisma: infra.db.prisma, kv: infra.kv }),
  };
}

/** Releases what createAppDeps subscribed to or cached; the stores stay open (their owner closes them). */
export async function closeAppDeps(deps: AppDeps): Promise<void> {
  await deps.oidc.close();
  await deps.tenants.close();
  await deps.serviceAccountGuard.close();
  await deps.networkPolicies.close();
  // Mail work queued after responses still needs the stores: it finishes before they close.
  await deps.mailer.close();
}

/** Routes under /t/:tenant, after the tenant is resolved. */
function tenantRoutes(deps: AppDeps): Middleware {
  const oidc = oidcRoutes({
    registry: deps.oidc,
    publicUrl: deps.config.publicUrl,
    tokenGuard: deps.serviceAccountGuard.guard,
    limitTokenRequests: (ctx, tenant) => limitRequest(deps, tenant, ctx.ip, 'token'),
  });
  const selfService = selfServiceRoutes(deps);
  const interaction = interactionRoutes(deps);
  const account = accountRoutes(deps);
  const samlIdp = samlIdpRoutes(deps);
  const federation = federationRoutes(deps);
  return async function tenantRoot(ctx, next) {
    const tenant = requireTenant(ctx.state);
    const prefix = `/t/${tenant.slug}`;
    if (ctx.path === prefix || ctx.path === `${prefix}/`) {
      ctx.body = { tenant: tenant.slug, display_name: tenant.displayName, issuer: `${deps.config.publicUrl}${prefix}` };
      return;
    }
    if (ctx.path.startsWith(`${prefix}/interaction/`)) return interaction(ctx, next);
    if (ctx.path.startsWith(`${prefix}/federation/`)) return federation(ctx, next);
    if (ctx.path === `${prefix}/account` || ctx.path === `${prefix}/account/login`) return account(ctx, next);
    if (isSelfServicePath(ctx.path.slice(prefix.length))) return selfService(ctx, next);
    if (isSamlIdpPath(ctx.path.slice(prefix.length))) return samlIdp(ctx, next);
    await oidc(ctx, next);
  };
}

export function createApp(deps: AppDeps): Koa {
  const app = new Koa({ proxy: deps.config.trustProxy });
  const health = healthRoutes(deps);
  app.use(requestId());
  app.use(securityHeaders({ https: deps.config.publicUrl.startsWith('https:') }));
  app.use(observeRequests(deps));
  app.use(bodyLimit(deps.config.bodyLimitBytes));
  app.use(health.routes());
  app.use(health.allowedMethods());
  app.use(assetRoutes());
  app.use(adminRoutes(deps));
  app.use(tenantEdge(deps.tenants, tenantRoutes(deps)));
  return app;
}
