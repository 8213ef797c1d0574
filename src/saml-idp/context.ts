import type { Context } from 'koa';
import type { AuditLog } from '../audit/audit.js';
import type { Clock } from '../clock.js';
import type { Config } from '../config.js';
import type { Vault } from '../crypto/vault.js';
import type { Logger } from '../observability/logger.js';
import type { OidcRegistry } from '../oidc/registry.js';
import type { SamlBridge } from '../oidc/saml-bridge.js';
import type { PrismaClient } from '../store/db.js';
import type { KvStore } from '../store/index.js';
import type { TenantContext } from '../tenants/tenants.js';
import type { Binding } from './constants.js';
import type { IdpEndpoints } from './idp-metadata.js';

/** What the SAML IdP needs of the app (a subset of AppDeps). */
export interface SamlIdpDeps {
  config: Pick<Config, 'publicUrl'>;
  db: { prisma: PrismaClient };
  kv: KvStore;
  audit: AuditLog;
  logger: Logger;
  clock: Clock;
  vault: Vault;
  oidc: OidcRegistry;
}

/** What a refusal is audited with: filled in as the request is understood. */
export interface RequestTrace {
  endpoint: 'metadata' | 'sso' | 'continue' | 'idp-initiated' | 'slo' | 'slo-continue';
  binding?: Binding;
  entityId?: string;
  serviceProviderId?: string;
}

/** One request to a SAML endpoint of one tenant. */
export interface SamlRequest {
  ctx: Context;
  tenant: TenantContext;
  deps: SamlIdpDeps;
  bridge: SamlBridge;
  endpoints: IdpEndpoints;
  trace: RequestTrace;
}

export const keyDeps = (deps: SamlIdpDeps) => ({ prisma: deps.db.prisma, vault: deps.vault, clock: deps.clock });

/** Who the audit trail names for what happens at these endpoints. */
export const requestMeta = (ctx: Context) => ({ ip: ctx.ip || null, userAgent: ctx.get('user-agent') || null });
