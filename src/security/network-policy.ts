import { LRUCache } from 'lru-cache';
import type { PrismaClient } from '../store/db.js';
import type { KvStore } from '../store/index.js';
import { onTenantChange } from '../tenants/tenants.js';
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

/** Tenants' policies as this node last read them: every sign-in post needs its tenant's. */
export interface NetworkPolicyCache {
  of(tenantId: string): Promise<NetworkPolicyView>;
  close(): Promise<void>;
}

/**
 * Cached per tenant until the tenant changes: whoever writes a policy
 * announces it (publishTenantChange), which drops it on every node. The TTL
 * is a safety net for writes no pub/sub reaches (a CLI without Redis).
 */
export async function createNetworkPolicyCache(
  { prisma, kv }: { prisma: PrismaClient; kv: KvStore },
  { max = 10_000, ttlMs = 60_000 }: { max?: number; ttlMs?: number } = {},
): Promise<NetworkPolicyCache> {
  const cache = new LRUCache<string, NetworkPolicyView>({ max, ttl: ttlMs });
  // Bumped by every change, so a read that started before a change never caches what it read.
  let generation = 0;
  const unsubscribe = await onTenantChange(kv, (change) => {
    generation += 1;
    cache.delete(change.tenantId);
  });
  return {
    async of(tenantId) {
      const cached = cache.get(tenantId);
      if (cached) return cached;
      const readAt = generation;
      const policy = await loadNetworkPolicy(prisma, tenantId);
      if (readAt === generation) cache.set(tenantId, policy);
      return policy;
    },
    close: unsubscribe,
  };
}

/**
 * For the hosted sign-in pages: what the tenant's policy says about a sign-in
 * from `ip`. Only policies with `applyToSignIn` restrict sign-in. The caller
 * refuses on `block` and records (audit, log) on `warn`.
 */
export async function checkSignInNetworkPolicy(
  deps: { networkPolicies: NetworkPolicyCache },
  tenant: { id: string },
  ip: string,
): Promise<NetworkDecision> {
  const policy = await deps.networkPolicies.of(tenant.id);
  if (!policy.applyToSignIn) return { outcome: 'allow' };
  return evaluateNetworkPolicy(policy, ip);
}
