import { randomBytes } from 'node:crypto';
import type { AuditEventInput, AuditLog } from '../audit/audit.js';
import type { Clock } from '../clock.js';
import type { PrismaClient } from '../store/db.js';
import type { User } from '../store/generated/client.js';
import type { KvStore } from '../store/index.js';
import type { SignInGuard } from '../users/authenticate.js';
import { deviceHash, isKnownDevice } from './device.js';
import { DEFAULT_LOCKOUT, type LockoutSettings } from './settings.js';

/**
 * Account lockout without lockout abuse.
 *
 * Failed sign-ins of an account are counted in the KvStore (so every node
 * counts together); `maxFailures` within `windowMinutes` lock the account for
 * `lockMinutes`. A locked account answers exactly like a wrong password, after
 * the same password verification, so the lock tells nobody that the account
 * exists. A browser that has signed in to the account before (its device
 * cookie names a KnownDevice of the user) is not subject to the account-wide
 * lock: it has its own counter and lock, so an attacker elsewhere cannot lock
 * the owner out, and the owner's typos do not count against the account.
 *
 * Keys, all under `lockout:{tenantId}:{userId}`:
 * - `:failures` and `:locked` (value: lock end, epoch ms), account-wide;
 * - `:epoch`, a random generation that the per-device keys
 *   `:device:{epoch}:{deviceHash}:failures|locked` include, so clearing it
 *   releases every device at once without a key scan.
 */

/** Device generations outlive any window or lock (both at most a day). */
const EPOCH_TTL_SECONDS = 2 * 24 * 60 * 60;
/** Looked up instead of a real user's keys when there is no such user, so both cost the same. */
const NO_USER = '00000000-0000-0000-0000-000000000000';

export function lockoutKeys(tenantId: string, userId: string): string[] {
  const base = `lockout:${tenantId}:${userId}`;
  return [base, `${base}:failures`, `${base}:locked`, `${base}:epoch`];
}

const accountKey = (tenantId: string, userId: string, what: 'failures' | 'locked' | 'epoch') => `lockout:${tenantId}:${userId}:${what}`;

export interface LockoutDeps {
  kv: KvStore;
  prisma: PrismaClient;
  audit: AuditLog;
  clock: Clock;
}

export interface UnlockAudit {
  audit: AuditLog;
  actor: AuditEventInput['actor'];
  /** Why: `admin`, `password_reset`, … */
  reason: string;
  ip?: string | null;
  userAgent?: string | null;
}

/**
 * Clears a user's failure counters and locks, account-wide and on every
 * device, at once on every node. With `audit`, records `auth.lockout.unlocked`
 * when the account was locked. Resolves to whether it was.
 */
export async function unlockUser(kv: KvStore, tenantId: string, userId: string, audit?: UnlockAudit): Promise<boolean> {
  const wasLocked = (await kv.get(accountKey(tenantId, userId, 'locked'))) !== null;
  await kv.del(...lockoutKeys(tenantId, userId));
  if (audit && wasLocked) {
    await audit.audit.append(tenantId, {
      actor: audit.actor,
      action: 'auth.lockout.unlocked',
      resource: { type: 'user', id: userId },
      ip: audit.ip ?? null,
      userAgent: audit.userAgent ?? null,
      metadata: { reason: audit.reason },
    });
  }
  return wasLocked;
}

/** Where a sign-in attempt came from: its verified device id (if any) and, for the audit trail, ip and agent. */
export interface AttemptSource {
  deviceId: string | null;
  ip?: string | null;
  userAgent?: string | null;
}

type Scope = { kind: 'account' } | { kind: 'device'; prefix: string };

function keysOf(tenantId: string, userId: string, scope: Scope): { failures: string; locked: string } {
  if (scope.kind === 'account')
    return { failures: accountKey(tenantId, userId, 'failures'), locked: accountKey(tenantId, userId, 'locked') };
  return { failures: `${scope.prefix}:failures`, locked: `${scope.prefix}:locked` };
}

/** The current device generation of a user, created on first use. */
async function deviceEpoch(kv: KvStore, tenantId: string, userId: string): Promise<string> {
  const key = accountKey(tenantId, userId, 'epoch');
  const existing = await kv.get(key);
  if (existing) return existing;
  const fresh = randomBytes(8).toString('hex');
  if (await kv.setIfAbsent(key, fresh, EPOCH_TTL_SECONDS)) return fresh;
  return (await kv.get(key)) ?? fresh;
}

/**
 * The lockout hooks of one sign-in attempt. `isLocked` runs once per attempt
 * after the password was verified, for a missing user too (doing the same
 * lookups), so timing says nothing either way; it also settles the scope
 * (account, or the known device) that `failed` and `succeeded` count in.
 */
export function createSignInGuard(
  deps: LockoutDeps,
  tenant: { id: string; settings: { lockout?: LockoutSettings } },
  source: AttemptSource,
): SignInGuard {
  const policy = tenant.settings.lockout ?? DEFAULT_LOCKOUT;
  let scope: Scope = { kind: 'account' };
  // Until isLocked has looked, assume there may be failures to clear.
  let hadFailures = true;

  async function scopeFor(userId: string): Promise<Scope> {
    if (!source.deviceId || !(await isKnownDevice(deps.prisma, tenant.id, userId, source.deviceId))) return { kind: 'account' };
    const epoch = await deviceEpoch(deps.kv, tenant.id, userId);
    return { kind: 'device', prefix: `lockout:${tenant.id}:${userId}:device:${epoch}:${deviceHash(source.deviceId)}` };
  }

  async function lock(user: User): Promise<void> {
    const keys = keysOf(tenant.id, user.id, scope);
    const until = deps.clock.now() + policy.lockMinutes * 60_000;
    // setIfAbsent: of concurrent attempts crossing the threshold, one records the lock.
    if (!(await deps.kv.setIfAbsent(keys.locked, String(until), policy.lockMinutes * 60))) return;
    await deps.kv.del(keys.failures);
    await deps.audit.append(tenant.id, {
      actor: { type: 'anonymous' },
      action: 'auth.lockout.locked',
      resource: { type: 'user', id: user.id },
      ip: source.ip ?? null,
      userAgent: source.userAgent ?? null,
      metadata: {
        scope: scope.kind,
        max_failures: policy.maxFailures,
        window_minutes: policy.windowMinutes,
        locked_until: new Date(until).toISOString(),
      },
    });
  }

  return {
    async isLocked(user) {
      scope = await scopeFor(user?.id ?? NO_USER);
      const keys = keysOf(tenant.id, user?.id ?? NO_USER, scope);
      // The failure count is read along with the lock (one round trip), so a success only deletes a counter that exists.
      const [until = null, failures = null] = await deps.kv.getMany([keys.locked, keys.failures]);
      hadFailures = failures !== null;
      if (until === null) return false;
      // The store's TTL ends the lock too; the injected clock decides, so both agree with it (and tests can move it).
      if (Number(until) <= deps.clock.now()) {
        await deps.kv.del(keys.locked);
        return false;
      }
      return user !== null;
    },
    async failed(user) {
      const keys = keysOf(tenant.id, user.id, scope);
      const counter = await deps.kv.increment(keys.failures, policy.windowMinutes * 60);
      if (counter.count >= policy.maxFailures) await lock(user);
    },
    async succeeded(user) {
      if (hadFailures) await deps.kv.del(keysOf(tenant.id, user.id, scope).failures);
    },
  };
}
