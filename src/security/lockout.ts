import type { KvStore } from '../store/index.js';

/**
 * Account lockout state lives in the KvStore under `lockout:{tenantId}:{userId}…`.
 * Issue 4 (account protection) owns the counting; the management API only
 * needs to clear it. Every key the lockout logic writes for a user must be
 * listed by `lockoutKeys`, so `unlockUser` can clear them without a key scan.
 */
export function lockoutKeys(tenantId: string, userId: string): string[] {
  const base = `lockout:${tenantId}:${userId}`;
  return [base, `${base}:failures`, `${base}:locked`];
}

/** Clears a user's failed-attempt counters and lock, at once on every node. */
export async function unlockUser(kv: KvStore, tenantId: string, userId: string): Promise<void> {
  await kv.del(...lockoutKeys(tenantId, userId));
}
