import type { AuditLog } from '../audit/audit.js';
import { MAX_PASSWORD_BYTES, type PasswordHasher } from '../crypto/passwords.js';
import type { PrismaClient } from '../store/db.js';
import type { User } from '../store/generated/client.js';

export interface AuthenticateDeps {
  prisma: PrismaClient;
  passwords: PasswordHasher;
  audit: AuditLog;
}

/** Where the attempt came from, for the audit trail. */
export interface SignInMeta {
  ip?: string | null;
  userAgent?: string | null;
  clientId?: string | null;
}

export type AuthenticateResult = { ok: true; user: User } | { ok: false };

/** Why an attempt failed: written to the audit trail only, never shown to the person signing in. */
export type SignInFailure = 'unknown_user' | 'bad_password' | 'no_password' | 'user_disabled' | 'password_too_long' | 'locked';

/** Failures that count towards a lockout: guesses at the password, not a disabled account. */
const GUESSES: ReadonlySet<SignInFailure> = new Set(['bad_password', 'password_too_long', 'no_password']);

/** Lockout hooks (src/security/lockout.ts); without one, no account is ever locked. */
export interface SignInGuard {
  isLocked(user: User | null): Promise<boolean>;
  failed(user: User): Promise<void>;
  succeeded(user: User): Promise<void>;
}

/** Longer than any address: such input cannot name a user, so it is not looked up. */
const MAX_EMAIL_LENGTH = 254;

/**
 * Checks an email and password against the tenant's users. Every failure
 * looks the same to the caller and costs one password verification (against a
 * dummy hash when there is no user or no password), so neither the answer nor
 * its timing tells which accounts exist. A locked account (`guard`) fails like
 * a wrong password, after the same verification, even with the right one. A
 * correct password for a legacy or weaker hash replaces it with a current
 * Argon2id hash.
 */
export async function authenticatePassword(
  deps: AuthenticateDeps,
  tenant: { id: string },
  email: string,
  password: string,
  meta: SignInMeta,
  guard?: SignInGuard,
): Promise<AuthenticateResult> {
  const user = await findUserByEmail(deps.prisma, tenant.id, email);
  // Too long to be anyone's password: not worth the CPU of a verification.
  const tooLong = Buffer.byteLength(password) > MAX_PASSWORD_BYTES;
  const matches = tooLong ? false : await deps.passwords.verify(user?.passwordHash ?? null, password);
  const locked = guard ? await guard.isLocked(user) : false;
  const failure = locked && user ? 'locked' : tooLong ? 'password_too_long' : failureReason(user, matches);
  if (failure || !user) {
    if (user && failure && GUESSES.has(failure)) await guard?.failed(user);
    await recordFailure(deps.audit, tenant.id, user, failure ?? 'unknown_user', meta);
    return { ok: false };
  }
  await guard?.succeeded(user);
  const rehashed = await upgradeHash(deps, user, password);
  await recordSuccess(deps.audit, tenant.id, user, meta, rehashed);
  return { ok: true, user };
}

function normaliseEmail(email: string): string | null {
  const normalised = email.trim().toLowerCase();
  // PostgreSQL text cannot hold a NUL byte: such an address is nobody's, not a query that fails with a 500.
  return normalised && normalised.length <= MAX_EMAIL_LENGTH && !normalised.includes('\0') ? normalised : null;
}

async function findUserByEmail(prisma: PrismaClient, tenantId: string, email: string): Promise<User | null> {
  const normalised = normaliseEmail(email);
  if (!normalised) return null;
  return prisma.user.findUnique({ where: { tenantId_email: { tenantId, email: normalised } } });
}

/** Checked after the verification, so a disabled account costs what any other attempt costs. */
function failureReason(user: User | null, matches: boolean): SignInFailure | null {
  if (!user) return 'unknown_user';
  if (!user.passwordHash) return 'no_password';
  if (!matches) return 'bad_password';
  if (user.disabled) return 'user_disabled';
  return null;
}

/**
 * Replaces a bcrypt or weaker Argon2 hash now that the password is known. Only
 * if the stored hash is still the one just verified, so a password changed in
 * the meantime is never overwritten with the old one.
 */
async function upgradeHash(deps: AuthenticateDeps, user: User, password: string): Promise<boolean> {
  const current = user.passwordHash;
  if (!current || !deps.passwords.needsRehash(current)) return false;
  const passwordHash = await deps.passwords.hash(password);
  const { count } = await deps.prisma.user.updateMany({
    where: { id: user.id, tenantId: user.tenantId, passwordHash: current },
    data: { passwordHash },
  });
  return count > 0;
}

function recordSuccess(audit: AuditLog, tenantId: string, user: User, meta: SignInMeta, rehashed: boolean) {
  return audit.append(tenantId, {
    actor: { type: 'user', id: user.id },
    action: 'auth.sign_in.succeeded',
    resource: { type: 'user', id: user.id },
    ip: meta.ip ?? null,
    userAgent: meta.userAgent ?? null,
    metadata: { method: 'password', client_id: meta.clientId ?? null, ...(rehashed ? { hash_upgraded: true } : {}) },
  });
}

/** The attempted address is not recorded for unknown users: people type passwords into the email field. */
function recordFailure(audit: AuditLog, tenantId: string, user: User | null, reason: SignInFailure, meta: SignInMeta) {
  return audit.append(tenantId, {
    actor: { type: 'anonymous' },
    action: 'auth.sign_in.failed',
    resource: user ? { type: 'user', id: user.id } : undefined,
    ip: meta.ip ?? null,
    userAgent: meta.userAgent ?? null,
    metadata: { method: 'password', reason, client_id: meta.clientId ?? null },
  });
}
