import type { PrismaClient } from '../store/db.js';
import { ipInAny } from './ip.js';

/**
 * A tenant's network policy: the CIDRs its management API (and optionally its
 * sign-in) may be used from. `warn` lets a request from elsewhere through but
 * says so (audit, log, response header); `block` refuses it. No CIDRs means no
 * restriction.
 */
export const NETWORK_MODES = ['warn', 'block'] as const;
export type NetworkMode = (typeof NETWORK_MODES)[number];

export interface NetworkPolicyView {
  cidrs: string[];
  mode: NetworkMode;
  applyToSignIn: boolean;
  updatedAt: Date | null;
}

export type NetworkDecision = { outcome: 'allow' } | { outcome: 'warn' | 'block'; ip: string };

const OPEN: NetworkPolicyView = Object.freeze({ cidrs: [], mode: 'warn', applyToSignIn: false, updatedAt: null });

export async function loadNetworkPolicy(prisma: PrismaClient, tenantId: string): Promise<NetworkPolicyView> {
  const row = await prisma.networkPolicy.findUnique({ where: { tenantId } });
  if (!row) return OPEN;
  return { cidrs: row.cidrs, mode: row.mode === 'block' ? 'block' : 'warn', applyToSignIn: row.applyToSignIn, updatedAt: row.updatedAt };
}

export function evaluateNetworkPolicy(policy: Pick<NetworkPolicyView, 'cidrs' | 'mode'>, ip: string): NetworkDecision {
  if (policy.cidrs.length === 0 || ipInAny(ip, policy.cidrs)) return { outcome: 'allow' };
  return { outcome: policy.mode, ip };
}

/**
 * For the hosted sign-in pages: what the tenant's policy says about a sign-in
 * from `ip`. Only policies with `applyToSignIn` restrict sign-in. The caller
 * refuses on `block` and records (audit, log) on `warn`.
 */
export async function checkSignInNetworkPolicy(
  deps: { db: { prisma: PrismaClient } },
  tenant: { id: string },
  ip: string,
): Promise<NetworkDecision> {
  const policy = await loadNetworkPolicy(deps.db.prisma, tenant.id);
  if (!policy.applyToSignIn) return { outcome: 'allow' };
  return evaluateNetworkPolicy(policy, ip);
}
