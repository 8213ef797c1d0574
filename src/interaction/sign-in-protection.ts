import type { Context } from 'koa';
import type { AuditLog } from '../audit/audit.js';
import type { Clock } from '../clock.js';
import { AppError } from '../errors.js';
import { type EmailFlowDeps, notifyNewDevice } from '../mail/flows.js';
import type { Mailer } from '../mail/mailer.js';
import { limitRequest, recordFailedSignIn } from '../security/abuse.js';
import { createDeviceCookies, rememberDevice } from '../security/device.js';
import { createSignInGuard } from '../security/lockout.js';
import { checkSignInNetworkPolicy, type NetworkPolicyCache } from '../security/network-policy.js';
import type { PrismaClient } from '../store/db.js';
import type { User } from '../store/generated/client.js';
import type { KvStore } from '../store/index.js';
import type { TenantContext } from '../tenants/tenants.js';
import type { SignInGuard } from '../users/authenticate.js';

/**
 * What a password sign-in on the hosted pages goes through besides the
 * password check (issue 4): the per-IP limit and the credential-stuffing
 * block before it, the lockout during it, and after it the device cookie and
 * the new-device notice. The interaction routes call these four steps.
 */
export interface SignInProtection {
  /**
   * Applies the tenant's network policy when it covers sign-in (403 from a blocked network, an audit
   * event from a network it only warns about), then counts the POST against the IP's limits; throws
   * 429 (Retry-After) or, with the KvStore down, 503.
   */
  admit(ctx: Context, tenant: TenantContext): Promise<void>;
  /** The lockout hooks for authenticatePassword, aware of this browser's device cookie. */
  guard(ctx: Context, tenant: TenantContext): SignInGuard;
  /** After a failed attempt: counts the address towards the IP's credential-stuffing tally. */
  failed(ctx: Context, tenant: TenantContext, email: string): Promise<void>;
  /** After a successful password: the device cookie, the KnownDevice row and, for a new device, the notice mail. */
  succeeded(ctx: Context, tenant: TenantContext, user: User): Promise<void>;
}

export interface SignInProtectionDeps {
  config: { publicUrl: string };
  db: { prisma: PrismaClient };
  kv: KvStore;
  clock: Clock;
  audit: AuditLog;
  masterKey: Buffer;
  mailer: Mailer;
  passwords: EmailFlowDeps['passwords'];
  networkPolicies: NetworkPolicyCache;
}

async function enforceNetworkPolicy(deps: SignInProtectionDeps, ctx: Context, tenant: TenantContext): Promise<void> {
  const decision = await checkSignInNetworkPolicy(deps, tenant, ctx.ip);
  if (decision.outcome === 'allow') return;
  await deps.audit.append(tenant.id, {
    actor: { type: 'anonymous' },
    action: decision.outcome === 'block' ? 'auth.sign_in.network_blocked' : 'auth.sign_in.network_warning',
    ip: decision.ip,
    userAgent: ctx.get('User-Agent') || null,
  });
  if (decision.outcome === 'block') throw new AppError(403, 'access_denied', 'Signing in is not allowed from this network.');
}

export function createSignInProtection(deps: SignInProtectionDeps): SignInProtection {
  const devices = createDeviceCookies({ masterKey: deps.masterKey, publicUrl: deps.config.publicUrl });
  const prisma = deps.db.prisma;
  const limits = { kv: deps.kv, audit: deps.audit, clock: deps.clock };
  const meta = (ctx: Context) => ({ ip: ctx.ip || null, userAgent: ctx.get('User-Agent') || null });
  const flows: EmailFlowDeps = { ...deps, prisma };

  return {
    async admit(ctx, tenant) {
      await enforceNetworkPolicy(deps, ctx, tenant);
      await limitRequest(limits, tenant, ctx.ip, 'sign_in');
    },
    guard: (ctx, tenant) =>
      createSignInGuard({ kv: deps.kv, prisma, audit: deps.audit, clock: deps.clock }, tenant, {
        deviceId: devices.read(ctx, tenant),
        ...meta(ctx),
      }),
    failed: (ctx, tenant, email) => recordFailedSignIn(limits, tenant, ctx.ip, email),
    async succeeded(ctx, tenant, user) {
      const deviceId = devices.issue(ctx, tenant);
      const { isNew } = await rememberDevice({ prisma, clock: deps.clock }, tenant.id, user.id, deviceId, meta(ctx).userAgent);
      if (!isNew) return;
      const source = meta(ctx);
      deps.mailer.later('new-device notice', () => notifyNewDevice(flows, tenant, user, source));
    },
  };
}
