import type { AuditLog } from '../audit/audit.js';
import type { Clock } from '../clock.js';
import { sha256 } from '../crypto/random.js';
import { tooManyRequests } from '../errors.js';
import type { KvStore } from '../store/index.js';
import { formatIp, parseIp } from './ip.js';
import { hit } from './rate-limit.js';
import { DEFAULT_RATE_LIMITS, type RateLimitSettings } from './settings.js';

/**
 * Per-IP limits of the credential forms and the token endpoint, and the
 * credential-stuffing block. Everything counts in the KvStore, so limits hold
 * across nodes, and a KvStore that cannot be reached makes the request fail
 * with 503 (the error propagates): never silently unlimited.
 *
 * Each limit is audited once when it starts refusing (`auth.rate_limited`),
 * not for every refused request.
 */

export interface AbuseDeps {
  kv: KvStore;
  audit: AuditLog;
  clock: Clock;
}

export interface LimitedTenant {
  id: string;
  settings: { rateLimits?: RateLimitSettings };
}

/** Which per-IP counter a request draws on. */
export type FormLimit = 'sign_in' | 'token';

/**
 * Who is counted: an IPv4 address, or the /64 an IPv6 address belongs to
 * (one subscriber usually holds a whole /64, so per-address limits would not
 * bind). Anything unparsable is counted as itself.
 */
export function rateLimitSubject(ip: string): string {
  const address = parseIp(ip);
  if (!address) return ip.slice(0, 64) || 'unknown';
  // An IPv4 peer of a dual-stack socket (`::ffff:203.0.113.9`) counts as the IPv4 address it is.
  if (address.family === 4) return formatIp(address);
  return `${(address.value >> 64n).toString(16)}::/64`;
}

function limitsOf(tenant: LimitedTenant): RateLimitSettings {
  return tenant.settings.rateLimits ?? DEFAULT_RATE_LIMITS;
}

const blockKey = (tenantId: string, subject: string) => `stuffing:block:${tenantId}:${subject}`;

async function recordLimited(deps: AbuseDeps, tenantId: string, ip: string, metadata: Record<string, unknown>): Promise<void> {
  await deps.audit.append(tenantId, { actor: { type: 'anonymous' }, action: 'auth.rate_limited', ip, metadata });
}

/** Throws 429 while `ip` is blocked for credential stuffing in this tenant. */
export async function assertNotBlocked(deps: AbuseDeps, tenant: LimitedTenant, ip: string): Promise<void> {
  const key = blockKey(tenant.id, rateLimitSubject(ip));
  const until = await deps.kv.get(key);
  if (until === null) return;
  const remainingMs = Number(until) - deps.clock.now();
  // The store's TTL ends the block too; the injected clock decides, so both agree with it.
  if (!(remainingMs > 0)) {
    await deps.kv.del(key);
    return;
  }
  throw tooManyRequests(remainingMs / 1000);
}

/**
 * Counts one request against the tenant's per-minute limit for `ip` and
 * throws 429 with Retry-After beyond it; a stuffing block refuses first.
 */
export async function limitRequest(deps: AbuseDeps, tenant: LimitedTenant, ip: string, kind: FormLimit): Promise<void> {
  if (kind === 'sign_in') await assertNotBlocked(deps, tenant, ip);
  const limits = limitsOf(tenant);
  const limit = kind === 'token' ? limits.tokenPerMinute : limits.signInPerMinute;
  const result = await hit(deps.kv, { key: `${kind}:${tenant.id}:${rateLimitSubject(ip)}`, limit, windowSeconds: 60 });
  if (result.allowed) return;
  if (result.count === limit + 1) {
    await recordLimited(deps, tenant.id, ip, { limit: `${kind}_per_minute`, max: limit, retry_after: result.retryAfterSeconds });
  }
  throw tooManyRequests(result.retryAfterSeconds);
}

/**
 * A failed sign-in from `ip` naming `email` (existing or not): when the IP
 * has now failed against `stuffingDistinctAccounts` different addresses
 * within the window, it is blocked for `stuffingBlockMinutes`. Distinct
 * addresses are counted with one marker per ip + address (setIfAbsent), so
 * retrying one address many times is the lockout's business, not this.
 */
export async function recordFailedSignIn(deps: AbuseDeps, tenant: LimitedTenant, ip: string, email: string): Promise<void> {
  const limits = limitsOf(tenant);
  const subject = rateLimitSubject(ip);
  const windowSeconds = limits.stuffingWindowMinutes * 60;
  const target = sha256(`${tenant.id}\0${subject}\0${email.trim().toLowerCase()}`);
  if (!(await deps.kv.setIfAbsent(`stuffing:seen:${target}`, '1', windowSeconds))) return;
  const distinct = await deps.kv.increment(`stuffing:count:${tenant.id}:${subject}`, windowSeconds);
  if (distinct.count < limits.stuffingDistinctAccounts) return;
  const blockSeconds = limits.stuffingBlockMinutes * 60;
  const until = deps.clock.now() + blockSeconds * 1000;
  if (!(await deps.kv.setIfAbsent(blockKey(tenant.id, subject), String(until), blockSeconds))) return;
  await recordLimited(deps, tenant.id, ip, {
    limit: 'credential_stuffing',
    distinct_accounts: distinct.count,
    window_minutes: limits.stuffingWindowMinutes,
    retry_after: blockSeconds,
  });
}
