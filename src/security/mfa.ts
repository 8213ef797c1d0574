import { randomUUID } from 'node:crypto';
import { z } from 'zod';
import type { AuditEventInput, AuditLog } from '../audit/audit.js';
import type { Clock } from '../clock.js';
import { MFA_FACTOR_SECRET } from '../crypto/reencrypt.js';
import type { Vault } from '../crypto/vault.js';
import { badRequest, notFound } from '../errors.js';
import type { Prisma, PrismaClient } from '../store/db.js';
import type { MfaFactor } from '../store/generated/client.js';
import type { KvStore } from '../store/index.js';
import { consumeRecoveryCode, normaliseRecoveryCode, remainingRecoveryCodes, replaceRecoveryCodes } from './recovery-codes.js';
import { checkTotp, groupedKey, newTotpSecret, normaliseTotpCode, totpUri } from './totp.js';

/**
 * Second factors: the tenant's policy, TOTP enrollment and verification,
 * recovery codes, the admin reset, and the audit events of all of it. The
 * hosted pages (src/interaction/mfa-steps.ts) call these; passkeys are in
 * webauthn.ts.
 *
 * `amr` values (RFC 8176) this server puts in ID tokens:
 * - `['pwd']`: password only;
 * - `['pwd', 'otp']`: password and a TOTP code or a recovery code (both are
 *   one-time passwords; the audit trail says which);
 * - `['pwd', 'hwk']`: password and a passkey (proof of possession of a key
 *   held by an authenticator);
 * - `['hwk', 'user']`: a passkey alone, with the authenticator having verified
 *   the user (PIN or biometrics), which is required for passwordless sign-in.
 * Any amr with two entries is multi-factor: acr `urn:idp:acr:mfa`.
 */

export interface MfaDeps {
  prisma: PrismaClient;
  kv: KvStore;
  clock: Clock;
  audit: AuditLog;
  vault: Vault;
}

export type FactorType = 'totp' | 'webauthn';

export interface MfaSettings {
  /** Holders of any of these roles must use a second factor; they enroll at their next sign-in. */
  requiredRoles: string[];
  /** Passkeys as a second factor and for passwordless sign-in. */
  passkeys: boolean;
}

/** `settings.mfa` of a tenant (tenantSettingsSchema): both fields optional, defaulting to no MFA requirement and no passkeys. */
export const mfaSettingsSchema = z.object({
  requiredRoles: z.array(z.string().min(1).max(200)).max(200).default([]),
  passkeys: z.boolean().default(false),
});

/** The tenant's MFA settings, read defensively: settings JSON is edited by admins and may be anything. */
export function mfaSettingsOf(settings: Record<string, unknown>): MfaSettings {
  const mfa = settings.mfa;
  if (!mfa || typeof mfa !== 'object') return { requiredRoles: [], passkeys: false };
  const { requiredRoles, passkeys } = mfa as { requiredRoles?: unknown; passkeys?: unknown };
  return {
    requiredRoles: Array.isArray(requiredRoles) ? requiredRoles.filter((r): r is string => typeof r === 'string') : [],
    passkeys: passkeys === true,
  };
}

/** Where a request came from, for the audit trail. */
export interface RequestMeta {
  ip?: string | null;
  userAgent?: string | null;
  clientId?: string | null;
}

// ---------------------------------------------------------------- policy

export interface MfaStatus {
  /** Confirmed factor types the user has. */
  factors: FactorType[];
  /** The tenant's policy makes this user use a second factor. */
  requiredByRole: boolean;
}

export async function mfaStatusOf(
  prisma: PrismaClient,
  tenant: { id: string; settings: Record<string, unknown> },
  userId: string,
): Promise<MfaStatus> {
  const { requiredRoles } = mfaSettingsOf(tenant.settings);
  const [factors, requiredAssignments] = await Promise.all([
    prisma.mfaFactor.findMany({ where: { tenantId: tenant.id, userId, confirmedAt: { not: null } }, select: { type: true } }),
    requiredRoles.length === 0
      ? Promise.resolve(0)
      : prisma.roleAssignment.count({ where: { tenantId: tenant.id, userId, role: { name: { in: requiredRoles } } } }),
  ]);
  const types = new Set(factors.map((f) => f.type).filter((t): t is FactorType => t === 'totp' || t === 'webauthn'));
  return { factors: [...types], requiredByRole: requiredAssignments > 0 };
}

// ---------------------------------------------------------------- throttling

/** Wrong codes a user may submit per window before every code is refused until the window ends. */
export const MFA_ATTEMPT_LIMIT = 5;
export const MFA_WINDOW_SECONDS = 15 * 60;

export type Throttle = { allowed: true } | { allowed: false; retryAfterSeconds: number };

/**
 * Fixed windows numbered by the injected clock, so the window ends when the
 * clock says so on Redis as in memory (a Redis TTL runs on real time). The
 * window's counter is reserved before a code is checked, so concurrent guesses
 * cannot get past the limit; a correct code clears it (see `clearAttempts`).
 */
function attemptsKey(clock: Clock, tenantId: string, userId: string): { key: string; endsAtMs: number } {
  const windowMs = MFA_WINDOW_SECONDS * 1000;
  const window = Math.floor(clock.now() / windowMs);
  return { key: `mfa:attempts:${tenantId}:${userId}:${window}`, endsAtMs: (window + 1) * windowMs };
}

async function reserveAttempt(deps: MfaDeps, tenantId: string, userId: string, meta: RequestMeta): Promise<Throttle> {
  const { key, endsAtMs } = attemptsKey(deps.clock, tenantId, userId);
  // Twice the window in real seconds: long enough for the clock's window, short enough to clean up.
  const counter = await deps.kv.increment(key, MFA_WINDOW_SECONDS * 2);
  if (counter.count <= MFA_ATTEMPT_LIMIT) return { allowed: true };
  const retryAfterSeconds = Math.max(1, Math.ceil((endsAtMs - deps.clock.now()) / 1000));
  // Once per window: a flood of attempts must not flood the trail.
  if (counter.count === MFA_ATTEMPT_LIMIT + 1) {
    await record(deps.audit, tenantId, userId, 'mfa.throttled', meta, { limit: MFA_ATTEMPT_LIMIT, window_seconds: MFA_WINDOW_SECONDS });
  }
  return { allowed: false, retryAfterSeconds };
}

async function clearAttempts(deps: MfaDeps, tenantId: string, userId: string): Promise<void> {
  await deps.kv.del(attemptsKey(deps.clock, tenantId, userId).key);
}

// ---------------------------------------------------------------- audit

function record(
  audit: AuditLog,
  tenantId: string,
  userId: string,
  action: string,
  meta: RequestMeta,
  metadata: Record<string, unknown>,
  actor: AuditEventInput['actor'] = { type: 'user', id: userId },
  tx?: Prisma.TransactionClient,
) {
  return audit.append(
    tenantId,
    {
      actor,
      action,
      resource: { type: 'user', id: userId },
      ip: meta.ip ?? null,
      userAgent: meta.userAgent ?? null,
      metadata: { ...metadata, client_id: meta.clientId ?? null },
    },
    tx,
  );
}

/** For events the pages record themselves (passkey use and failure): same shape as the rest. */
export function recordMfaEvent(
  deps: Pick<MfaDeps, 'audit'>,
  tenantId: string,
  userId: string,
  action: string,
  meta: RequestMeta,
  metadata: Record<string, unknown>,
) {
  return record(deps.audit, tenantId, userId, action, meta, metadata);
}

// ---------------------------------------------------------------- TOTP enrollment

export interface TotpEnrollment {
  factorId: string;
  /** base32; shown grouped as `manualKey` and inside the QR code's otpauth URI. */
  secret: string;
  manualKey: string;
  uri: string;
}

/**
 * A new TOTP factor, unconfirmed until the user proves the app shows the
 * right codes. Earlier unconfirmed ones of the user (abandoned enrollments)
 * are removed. The secret is stored only as a vault envelope bound to the row.
 */
export async function beginTotpEnrollment(
  deps: Pick<MfaDeps, 'prisma' | 'vault'>,
  tenant: { id: string; displayName: string },
  user: { id: string; email: string },
): Promise<TotpEnrollment> {
  const factorId = randomUUID();
  const secret = newTotpSecret();
  await deps.prisma.$transaction([
    deps.prisma.mfaFactor.deleteMany({ where: { tenantId: tenant.id, userId: user.id, type: 'totp', confirmedAt: null } }),
    deps.prisma.mfaFactor.create({
      data: {
        id: factorId,
        tenantId: tenant.id,
        userId: user.id,
        type: 'totp',
        name: 'Authenticator app',
        secret: deps.vault.encrypt(secret, MFA_FACTOR_SECRET.binding(tenant.id, factorId)),
      },
    }),
  ]);
  return enrollmentOf(tenant, user, factorId, secret);
}

function enrollmentOf(tenant: { displayName: string }, user: { email: string }, factorId: string, secret: string): TotpEnrollment {
  return { factorId, secret, manualKey: groupedKey(secret), uri: totpUri(tenant.displayName, user.email, secret) };
}

/** The enrollment in progress again (the page was reloaded); null when it is gone or already confirmed. */
export async function pendingTotpEnrollment(
  deps: Pick<MfaDeps, 'prisma' | 'vault'>,
  tenant: { id: string; displayName: string },
  user: { id: string; email: string },
  factorId: string,
): Promise<TotpEnrollment | null> {
  const factor = await deps.prisma.mfaFactor.findFirst({
    where: { id: factorId, tenantId: tenant.id, userId: user.id, type: 'totp', confirmedAt: null },
  });
  if (!factor?.secret) return null;
  return enrollmentOf(tenant, user, factorId, totpSecretOf(deps.vault, factor));
}

function totpSecretOf(vault: Vault, factor: MfaFactor): string {
  if (!factor.secret) throw new Error(`TOTP factor ${factor.id} has no secret`);
  return vault.decryptString(factor.secret, MFA_FACTOR_SECRET.binding(factor.tenantId, factor.id));
}

export type CodeFailure = { ok: false; reason: 'invalid' | 'throttled'; retryAfterSeconds?: number };
export type EnrollResult = { ok: true; recoveryCodes: string[] } | CodeFailure;

/**
 * Activates the factor if `code` is right now (±1 step), and issues the
 * user's recovery codes, replacing any older set, in the same transaction as
 * the audit event.
 */
export async function confirmTotpEnrollment(
  deps: MfaDeps,
  tenantId: string,
  userId: string,
  factorId: string,
  code: string,
  meta: RequestMeta,
): Promise<EnrollResult> {
  const throttle = await reserveAttempt(deps, tenantId, userId, meta);
  if (!throttle.allowed) return { ok: false, reason: 'throttled', retryAfterSeconds: throttle.retryAfterSeconds };
  const factor = await deps.prisma.mfaFactor.findFirst({ where: { id: factorId, tenantId, userId, type: 'totp', confirmedAt: null } });
  const check = factor ? checkTotp(totpSecretOf(deps.vault, factor), code, deps.clock.now()) : { ok: false as const };
  if (!factor || !check.ok) {
    await record(deps.audit, tenantId, userId, 'mfa.failed', meta, { type: 'totp', stage: 'enrollment', reason: failureReason(code) });
    return { ok: false, reason: 'invalid' };
  }
  const now = new Date(deps.clock.now());
  const recoveryCodes = await deps.prisma.$transaction(async (tx) => {
    const { count } = await tx.mfaFactor.updateMany({
      where: { id: factorId, tenantId, userId, confirmedAt: null },
      data: { confirmedAt: now, lastUsedStep: BigInt(check.step), lastUsedAt: now },
    });
    if (count !== 1) return null;
    const codes = await replaceRecoveryCodes(tx, tenantId, userId);
    await record(deps.audit, tenantId, userId, 'mfa.enrolled', meta, { type: 'totp', factor_id: factorId }, undefined, tx);
    return codes;
  });
  // Confirmed by a concurrent submission of the same code: that one showed the codes.
  if (!recoveryCodes) return { ok: false, reason: 'invalid' };
  await clearAttempts(deps, tenantId, userId);
  return { ok: true, recoveryCodes };
}

/** A passkey registered during sign-in is a first factor enrolled too: give the user recovery codes for it. */
export async function completeWebauthnEnrollment(
  deps: Pick<MfaDeps, 'prisma' | 'audit'>,
  tenantId: string,
  userId: string,
  factorId: string,
  meta: RequestMeta,
): Promise<string[]> {
  return deps.prisma.$transaction(async (tx) => {
    const codes = await replaceRecoveryCodes(tx, tenantId, userId);
    await record(deps.audit, tenantId, userId, 'mfa.enrolled', meta, { type: 'webauthn', factor_id: factorId }, undefined, tx);
    return codes;
  });
}

// ---------------------------------------------------------------- verification

export type SecondFactorResult = { ok: true; method: 'totp' | 'recovery_code'; remainingRecoveryCodes?: number } | CodeFailure;

/**
 * Checks a code typed at sign-in: six digits are a TOTP code for one of the
 * user's confirmed TOTP factors, anything else a recovery code. Throttled per
 * user, whatever the kind of code.
 */
export async function verifySecondFactorCode(
  deps: MfaDeps,
  tenantId: string,
  userId: string,
  input: string,
  meta: RequestMeta,
): Promise<SecondFactorResult> {
  const throttle = await reserveAttempt(deps, tenantId, userId, meta);
  if (!throttle.allowed) return { ok: false, reason: 'throttled', retryAfterSeconds: throttle.retryAfterSeconds };
  if (normaliseTotpCode(input)) {
    const used = await useTotpCode(deps, tenantId, userId, input);
    if (used.ok) {
      await clearAttempts(deps, tenantId, userId);
      await record(deps.audit, tenantId, userId, 'mfa.used', meta, { type: 'totp', factor_id: used.factorId });
      return { ok: true, method: 'totp' };
    }
    await record(deps.audit, tenantId, userId, 'mfa.failed', meta, { type: 'totp', reason: used.reason });
    return { ok: false, reason: 'invalid' };
  }
  if (normaliseRecoveryCode(input)) {
    const now = new Date(deps.clock.now());
    if (await consumeRecoveryCode(deps.prisma, tenantId, userId, input, now)) {
      await clearAttempts(deps, tenantId, userId);
      const remaining = await remainingRecoveryCodes(deps.prisma, tenantId, userId);
      await record(deps.audit, tenantId, userId, 'mfa.recovery_code.used', meta, { type: 'recovery_code', remaining });
      return { ok: true, method: 'recovery_code', remainingRecoveryCodes: remaining };
    }
    await record(deps.audit, tenantId, userId, 'mfa.failed', meta, { type: 'recovery_code', reason: 'invalid' });
    return { ok: false, reason: 'invalid' };
  }
  await record(deps.audit, tenantId, userId, 'mfa.failed', meta, { type: 'unknown', reason: 'malformed' });
  return { ok: false, reason: 'invalid' };
}

function failureReason(code: string): 'malformed' | 'invalid' {
  return normaliseTotpCode(code) ? 'invalid' : 'malformed';
}

type TotpUse = { ok: true; factorId: string } | { ok: false; reason: 'invalid' | 'replayed' | 'no_factor' };

/**
 * Accepts a TOTP code once. The step it matched is written with a
 * conditional update (only if still later than the stored one), so of two
 * concurrent submissions of one code exactly one passes, on any node.
 */
export async function useTotpCode(
  deps: Pick<MfaDeps, 'prisma' | 'vault' | 'clock'>,
  tenantId: string,
  userId: string,
  code: string,
): Promise<TotpUse> {
  const factors = await deps.prisma.mfaFactor.findMany({ where: { tenantId, userId, type: 'totp', confirmedAt: { not: null } } });
  if (factors.length === 0) return { ok: false, reason: 'no_factor' };
  const now = deps.clock.now();
  let replayed = false;
  for (const factor of factors) {
    const secret = totpSecretOf(deps.vault, factor);
    const lastStep = factor.lastUsedStep === null ? null : Number(factor.lastUsedStep);
    const check = checkTotp(secret, code, now, lastStep);
    if (!check.ok) {
      replayed ||= lastStep !== null && checkTotp(secret, code, now).ok;
      continue;
    }
    const step = BigInt(check.step);
    const { count } = await deps.prisma.mfaFactor.updateMany({
      where: { id: factor.id, tenantId, OR: [{ lastUsedStep: null }, { lastUsedStep: { lt: step } }] },
      data: { lastUsedStep: step, lastUsedAt: new Date(now) },
    });
    if (count === 1) return { ok: true, factorId: factor.id };
    replayed = true;
  }
  return { ok: false, reason: replayed ? 'replayed' : 'invalid' };
}

// ---------------------------------------------------------------- recovery codes and reset

/** A fresh set of recovery codes for a user with a confirmed factor; the old set stops working. */
export async function regenerateRecoveryCodes(
  deps: Pick<MfaDeps, 'prisma' | 'audit'>,
  tenantId: string,
  userId: string,
  actor: AuditEventInput['actor'],
  meta: RequestMeta = {},
): Promise<string[]> {
  return deps.prisma.$transaction(async (tx) => {
    const factors = await tx.mfaFactor.count({ where: { tenantId, userId, confirmedAt: { not: null } } });
    if (factors === 0) throw badRequest('recovery codes need a second factor to recover', 'mfa_not_enrolled');
    const codes = await replaceRecoveryCodes(tx, tenantId, userId);
    await record(deps.audit, tenantId, userId, 'mfa.recovery_codes.regenerated', meta, { count: codes.length }, actor, tx);
    return codes;
  });
}

export interface MfaResetResult {
  factors: number;
  recoveryCodes: number;
}

/**
 * An admin's reset of a user's MFA (the phone is gone and so are the codes):
 * every factor, confirmed or not, and every recovery code is deleted, in one
 * transaction with the `mfa.reset` event. The user enrolls again at the next
 * sign-in if the tenant's policy requires it.
 */
export async function resetMfa(
  deps: { prisma: PrismaClient; audit: AuditLog },
  tenantId: string,
  userId: string,
  actor: AuditEventInput['actor'],
): Promise<MfaResetResult> {
  return deps.prisma.$transaction(async (tx) => {
    const user = await tx.user.findFirst({ where: { id: userId, tenantId }, select: { id: true } });
    if (!user) throw notFound('no such user');
    const factors = await tx.mfaFactor.deleteMany({ where: { tenantId, userId } });
    const codes = await tx.recoveryCode.deleteMany({ where: { tenantId, userId } });
    await deps.audit.append(
      tenantId,
      {
        actor,
        action: 'mfa.reset',
        resource: { type: 'user', id: userId },
        metadata: { factors_removed: factors.count, codes_removed: codes.count },
      },
      tx,
    );
    return { factors: factors.count, recoveryCodes: codes.count };
  });
}
