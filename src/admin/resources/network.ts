import { z } from 'zod';
import { conflict } from '../../errors.js';
import { ipInAny } from '../../security/ip.js';
import { loadNetworkPolicy, NETWORK_MODES, type NetworkPolicyView } from '../../security/network-policy.js';
import { iso, nullableTimestamp } from '../http.js';
import { defineRoute } from '../route.js';
import { cidrList } from './service-accounts.js';

export const NetworkPolicy = z.object({
  /** Where the management API (and, with apply_to_sign_in, sign-in) may be used from; empty: anywhere. */
  cidrs: z.array(z.string()),
  /** warn: allowed, but audited, logged and flagged in the X-Network-Policy header; block: refused with 403. */
  mode: z.enum(NETWORK_MODES),
  apply_to_sign_in: z.boolean(),
  updated_at: nullableTimestamp,
});

export const NetworkPolicyUpdate = z.strictObject({
  cidrs: cidrList,
  mode: z.enum(NETWORK_MODES),
  apply_to_sign_in: z.boolean().default(false),
});

function toPolicy(policy: NetworkPolicyView): z.input<typeof NetworkPolicy> {
  return { cidrs: policy.cidrs, mode: policy.mode, apply_to_sign_in: policy.applyToSignIn, updated_at: iso(policy.updatedAt) };
}

export const networkRoutes = [
  defineRoute({
    method: 'GET',
    path: '/tenants/{tenant}/network-policy',
    operationId: 'getNetworkPolicy',
    summary: 'Read the tenant network policy (IP allowlist of the management API and optionally sign-in)',
    tag: 'network',
    permission: 'network.read',
    response: NetworkPolicy,
    async handler({ deps, tenant }) {
      return toPolicy(await loadNetworkPolicy(deps.db.prisma, tenant.id));
    },
  }),
  defineRoute({
    method: 'PUT',
    path: '/tenants/{tenant}/network-policy',
    operationId: 'putNetworkPolicy',
    summary: 'Replace the tenant network policy',
    tag: 'network',
    permission: 'network.write',
    body: NetworkPolicyUpdate,
    response: NetworkPolicy,
    async handler({ deps, tenant, caller, body, audit, koa, announce }) {
      // A block policy that excludes the address setting it would lock its author out: refused, not guessed at.
      const ownPolicy = tenant.id === caller.tenantId;
      if (ownPolicy && body.mode === 'block' && body.cidrs.length > 0 && !ipInAny(koa.ip, body.cidrs)) {
        throw conflict(`this policy would block your own address ${koa.ip}: include it, or use mode warn first`);
      }
      const prisma = deps.db.prisma;
      const policy = await prisma.$transaction(async (tx) => {
        const before = await tx.networkPolicy.findUnique({ where: { tenantId: tenant.id } });
        const data = { cidrs: body.cidrs, mode: body.mode, applyToSignIn: body.apply_to_sign_in };
        const after = await tx.networkPolicy.upsert({
          where: { tenantId: tenant.id },
          create: { tenantId: tenant.id, ...data },
          update: data,
        });
        await audit(
          {
            action: 'network_policy.updated',
            resource: { type: 'network_policy', id: tenant.id },
            metadata: {
              before: before ? { cidrs: before.cidrs, mode: before.mode, apply_to_sign_in: before.applyToSignIn } : null,
              after: { cidrs: after.cidrs, mode: after.mode, apply_to_sign_in: after.applyToSignIn },
            },
          },
          tx,
        );
        return after;
      });
      // Every node caches the policy for its sign-in pages (src/security/network-policy.ts).
      await announce('network');
      return toPolicy({
        cidrs: policy.cidrs,
        mode: policy.mode === 'block' ? 'block' : 'warn',
        applyToSignIn: policy.applyToSignIn,
        updatedAt: policy.updatedAt,
      });
    },
  }),
];
