import type { AuditEventInput, AuditLog } from '../audit/audit.js';
import type { Clock } from '../clock.js';
import type { PasswordHasher } from '../crypto/passwords.js';
import { randomToken, sha256 } from '../crypto/random.js';
import { notFound } from '../errors.js';
import { ssoRequiredFor } from '../federation/connections.js';
import { revokeUserSessions } from '../oidc/revoke.js';
import { unlockUser } from '../security/lockout.js';
import { checkPassword, type PasswordProblem, passwordPolicyFrom } from '../security/password-policy.js';
import { hit } from '../security/rate-limit.js';
import type { PrismaClient } from '../store/db.js';
import type { User } from '../store/generated/client.js';
import type { KvStore } from '../store/index.js';
import type { TenantContext } from '../tenants/tenants.js';
import { createUser, emailSchema } from '../users/users.js';
import { type Mailer, renderMail } from './mailer.js';

/**
 * The account flows that go through a mailbox: password reset, email
 * verification, self-service sign-up and invitations, plus the new-device
 * notice. Every link carries a single-use token of 32 random bytes; only its
 * SHA-256 is stored (EmailToken), so a database leak yields no usable link.
 *
 * What a page answers never depends on whether an address is registered: the
 * routes call `requestPasswordReset` and `signUp` through `mailer.later`,
 * after the response, so the lookup, the token and the mail cost the response
 * nothing either way.
 */

export type EmailPurpose = 'verify_email' | 'reset_password' | 'invite';

export const TOKEN_LIFETIME_MS: Readonly<Record<EmailPurpose, number>> = Object.freeze({
  reset_password: 30 * 60 * 1000,
  verify_email: 24 * 60 * 60 * 1000,
  invite: 7 * 24 * 60 * 60 * 1000,
});

const LIFETIME_WORDS: Readonly<Record<EmailPurpose, string>> = Object.freeze({
  reset_password: '30 minutes',
  verify_email: '24 hours',
  invite: '7 days',
});

/** Mails of one purpose to one address per hour, so the forms cannot be used to flood a mailbox. */
const MAILS_PER_HOUR = 5;

/** A token in a link: 43 base64url characters. Anything else is not looked up. */
const TOKEN_FORMAT = /^[A-Za-z0-9_-]{43}$/;

export interface EmailFlowDeps {
  prisma: PrismaClient;
  audit: AuditLog;
  passwords: PasswordHasher;
  kv: KvStore;
  clock: Clock;
  mailer: Mailer;
  config: { publicUrl: string };
}

/** The flows' dependencies out of the app's (AppDeps has all of them), for callers such as the management API. */
export function emailFlowDeps(deps: Omit<EmailFlowDeps, 'prisma'> & { db: { prisma: PrismaClient } }): EmailFlowDeps {
  const { db, audit, passwords, kv, clock, mailer, config } = deps;
  return { prisma: db.prisma, audit, passwords, kv, clock, mailer, config };
}

export type FlowTenant = Pick<TenantContext, 'id' | 'slug' | 'displayName' | 'settings'>;

export interface RequestMeta {
  ip?: string | null;
  userAgent?: string | null;
}

// ---------------------------------------------------------------- links and tokens

export const SELF_SERVICE_PATHS = Object.freeze({
  forgot: '/password/forgot',
  reset: '/password/reset',
  signup: '/signup',
  verify: '/email/verify',
  invite: '/invite',
});

const PATH_FOR: Readonly<Record<EmailPurpose, string>> = Object.freeze({
  reset_password: SELF_SERVICE_PATHS.reset,
  verify_email: SELF_SERVICE_PATHS.verify,
  invite: SELF_SERVICE_PATHS.invite,
});

export function tenantUrl(deps: Pick<EmailFlowDeps, 'config'>, tenant: Pick<FlowTenant, 'slug'>, path: string): string {
  return `${deps.config.publicUrl}/t/${encodeURIComponent(tenant.slug)}${path}`;
}

function linkFor(deps: EmailFlowDeps, tenant: FlowTenant, purpose: EmailPurpose, token: string): string {
  return `${tenantUrl(deps, tenant, PATH_FOR[purpose])}?token=${token}`;
}

/**
 * A new single-use token for `purpose`; earlier unused ones of the same
 * purpose stop working, so only the latest link in a mailbox is valid.
 */
export async function issueEmailToken(
  deps: Pick<EmailFlowDeps, 'prisma' | 'clock'>,
  tenantId: string,
  userId: string,
  purpose: EmailPurpose,
): Promise<{ token: string; expiresAt: Date }> {
  const token = randomToken(32);
  const expiresAt = new Date(deps.clock.now() + TOKEN_LIFETIME_MS[purpose]);
  await deps.prisma.$transaction([
    deps.prisma.emailToken.deleteMany({ where: { tenantId, userId, purpose, usedAt: null } }),
    deps.prisma.emailToken.create({ data: { tenantId, userId, purpose, tokenHash: sha256(token), expiresAt } }),
  ]);
  return { token, expiresAt };
}

export interface ValidToken {
  id: string;
  user: User;
}

/** The unused, unexpired token of `purpose` in this tenant, with its (enabled) user; null for anything else. */
export async function findEmailToken(
  deps: Pick<EmailFlowDeps, 'prisma' | 'clock'>,
  tenantId: string,
  purpose: EmailPurpose,
  token: unknown,
): Promise<ValidToken | null> {
  if (typeof token !== 'string' || !TOKEN_FORMAT.test(token)) return null;
  const row = await deps.prisma.emailToken.findUnique({ where: { tokenHash: sha256(token) }, include: { user: true } });
  if (!row || row.tenantId !== tenantId || row.purpose !== purpose || row.usedAt || row.expiresAt.getTime() <= deps.clock.now())
    return null;
  if (row.user.disabled) return null;
  return { id: row.id, user: row.user };
}

/** Marks a token used; false when another request used it first (or it expired meanwhile). */
async function useToken(deps: Pick<EmailFlowDeps, 'prisma' | 'clock'>, id: string): Promise<boolean> {
  const now = new Date(deps.clock.now());
  const { count } = await deps.prisma.emailToken.updateMany({
    where: { id, usedAt: null, expiresAt: { gt: now } },
    data: { usedAt: now },
  });
  return count === 1;
}

/** Counts a mail to `userId` for `purpose`; false once the hourly allowance is spent. */
async function mayMail(deps: EmailFlowDeps, tenantId: string, userId: string, purpose: string): Promise<boolean> {
  const result = await hit(deps.kv, { key: `mail:${tenantId}:${userId}:${purpose}`, limit: MAILS_PER_HOUR, windowSeconds: 3600 });
  return result.allowed;
}

function audit(deps: EmailFlowDeps, tenantId: string, event: AuditEventInput, meta: RequestMeta) {
  return deps.audit.append(tenantId, { ...event, ip: meta.ip ?? null, userAgent: meta.userAgent ?? null });
}

function normalisedEmail(email: string): string | null {
  const parsed = emailSchema.safeParse(email);
  return parsed.success ? parsed.data : null;
}

async function findUser(deps: EmailFlowDeps, tenantId: string, email: string): Promise<User | null> {
  const normalised = normalisedEmail(email);
  if (!normalised) return null;
  return deps.prisma.user.findUnique({ where: { tenantId_email: { tenantId, email: normalised } } });
}

// ---------------------------------------------------------------- password reset

/**
 * "Forgot password": mails a reset link to an enabled account with this
 * address, and nothing to anyone else, nor to a domain that requires single
 * sign-on. Run after the response (mailer.later).
 */
/**
 * Why a known user gets no reset link, or null. An SSO-only domain gets none: a
 * password set with it could not be used, and would outlive the policy if it is
 * lifted. Only then is the mail allowance consulted (it counts).
 */
async function resetRefusal(deps: EmailFlowDeps, tenantId: string, user: { id: string; email: string }) {
  if (await ssoRequiredFor(deps.prisma, tenantId, user.email)) return 'sso_required';
  return (await mayMail(deps, tenantId, user.id, 'reset_password')) ? null : 'mail_rate_limited';
}

export async function requestPasswordReset(deps: EmailFlowDeps, tenant: FlowTenant, email: string, meta: RequestMeta): Promise<void> {
  const user = await findUser(deps, tenant.id, email);
  if (!user || user.disabled) {
    // The address is not recorded: people type all sorts of things into that field.
    await audit(
      deps,
      tenant.id,
      { actor: { type: 'anonymous' }, action: 'auth.password_reset.requested', metadata: { delivered: false, reason: 'unknown_user' } },
      meta,
    );
    return;
  }
  const refusal = await resetRefusal(deps, tenant.id, user);
  await audit(
    deps,
    tenant.id,
    {
      actor: { type: 'anonymous' },
      action: 'auth.password_reset.requested',
      resource: { type: 'user', id: user.id },
      metadata: refusal ? { delivered: false, reason: refusal } : { delivered: true },
    },
    meta,
  );
  if (refusal) return;
  const { token } = await issueEmailToken(deps, tenant.id, user.id, 'reset_password');
  await deps.mailer.send(
    renderMail('reset-password', user.email, `Reset your password at ${tenant.displayName}`, {
      tenantName: tenant.displayName,
      email: user.email,
      link: linkFor(deps, tenant, 'reset_password', token),
      validFor: LIFETIME_WORDS.reset_password,
    }),
  );
}

export type SetPasswordResult =
  | { ok: true; user: User }
  | { ok: false; reason: 'invalid_token' }
  | { ok: false; reason: 'sso_required' }
  | { ok: false; reason: PasswordProblem };

/**
 * Whether a link of `purpose` may no longer set `user`'s password because the
 * address's domain now requires single sign-on (the link may predate the
 * policy). An invitation still may: an administrator issued it on purpose.
 */
export async function passwordRefusedBySso(
  deps: Pick<EmailFlowDeps, 'prisma'>,
  tenantId: string,
  user: User,
  purpose: EmailPurpose,
): Promise<boolean> {
  if (purpose === 'invite') return false;
  return (await ssoRequiredFor(deps.prisma, tenantId, user.email)) !== null;
}

/**
 * Sets a new password with a reset link: the link is used up, the user is
 * signed out everywhere (sessions, grants, refresh tokens), passwordChangedAt
 * is set and the lockout cleared. It does not sign anyone in, so the next
 * sign-in goes through every step, the second factor included.
 */
export async function completePasswordReset(
  deps: EmailFlowDeps,
  tenant: FlowTenant,
  token: unknown,
  password: string,
  meta: RequestMeta,
): Promise<SetPasswordResult> {
  return setPasswordWithToken(deps, tenant, token, password, meta, 'reset_password');
}

/** Accepts an invitation: the password is set and the address counts as verified (the link reached it). */
export function acceptInvite(deps: EmailFlowDeps, tenant: FlowTenant, token: unknown, password: string, meta: RequestMeta) {
  return setPasswordWithToken(deps, tenant, token, password, meta, 'invite');
}

/** Finishes a self-service sign-up: the verification link chooses the first password. */
export function completeSignUp(deps: EmailFlowDeps, tenant: FlowTenant, token: unknown, password: string, meta: RequestMeta) {
  return setPasswordWithToken(deps, tenant, token, password, meta, 'verify_email');
}

const COMPLETED_ACTION: Readonly<Record<EmailPurpose, string>> = Object.freeze({
  reset_password: 'auth.password_reset.completed',
  invite: 'user.invite.accepted',
  verify_email: 'auth.sign_up.completed',
});

async function setPasswordWithToken(
  deps: EmailFlowDeps,
  tenant: FlowTenant,
  token: unknown,
  password: string,
  meta: RequestMeta,
  purpose: EmailPurpose,
): Promise<SetPasswordResult> {
  const found = await findEmailToken(deps, tenant.id, purpose, token);
  // A verification link chooses the first password only; an account that has one resets it instead.
  if (!found || (purpose === 'verify_email' && found.user.passwordHash)) return { ok: false, reason: 'invalid_token' };
  if (await passwordRefusedBySso(deps, tenant.id, found.user, purpose)) return { ok: false, reason: 'sso_required' };
  const problem = checkPassword(password, passwordPolicyFrom(tenant.settings));
  if (problem) return { ok: false, reason: problem };
  const passwordHash = await deps.passwords.hash(password);
  const now = new Date(deps.clock.now());
  const user = await deps.prisma.$transaction(async (tx) => {
    const { count } = await tx.emailToken.updateMany({
      where: { id: found.id, usedAt: null, expiresAt: { gt: now } },
      data: { usedAt: now },
    });
    if (count !== 1) return null;
    const updated = await tx.user.update({
      where: { id: found.user.id },
      data: { passwordHash, passwordChangedAt: now, ...(purpose === 'reset_password' ? {} : { emailVerified: true }) },
    });
    // Every other outstanding link of the user that could set a password stops working too.
    await tx.emailToken.updateMany({
      where: { tenantId: tenant.id, userId: updated.id, usedAt: null, purpose: { in: ['reset_password', 'invite'] } },
      data: { usedAt: now },
    });
    const revoked = await revokeUserSessions(tx, tenant.id, updated.id);
    await deps.audit.append(
      tenant.id,
      {
        actor: { type: 'user', id: updated.id },
        action: COMPLETED_ACTION[purpose],
        resource: { type: 'user', id: updated.id },
        ip: meta.ip ?? null,
        userAgent: meta.userAgent ?? null,
        metadata: { revoked_records: revoked },
      },
      tx,
    );
    return updated;
  });
  if (!user) return { ok: false, reason: 'invalid_token' };
  await unlockUser(deps.kv, tenant.id, user.id, {
    audit: deps.audit,
    actor: { type: 'user', id: user.id },
    reason: purpose === 'reset_password' ? 'password_reset' : purpose,
    ip: meta.ip,
    userAgent: meta.userAgent,
  });
  return { ok: true, user };
}

// ---------------------------------------------------------------- sign-up and verification

/**
 * Self-service sign-up: asks only for the address. A new address gets an
 * account without a password and a verification link that chooses one, so
 * nobody can hold an account under an address they do not control (account
 * pre-hijacking). An address that already has an account gets a mail saying
 * so, and one of a domain that requires single sign-on gets nothing. Either
 * way the page says the same: "check your mailbox". Run after the response
 * (mailer.later).
 */
export async function signUp(deps: EmailFlowDeps, tenant: FlowTenant, email: string, meta: RequestMeta): Promise<void> {
  const normalised = normalisedEmail(email);
  if (!normalised) return;
  if (await ssoRequiredFor(deps.prisma, tenant.id, normalised)) {
    // Such accounts come from the upstream IdP on first sign-in; a link here would only choose a password.
    await audit(
      deps,
      tenant.id,
      { actor: { type: 'anonymous' }, action: 'auth.sign_up.refused', metadata: { reason: 'sso_required' } },
      meta,
    );
    return;
  }
  const existing = await findUser(deps, tenant.id, normalised);
  if (existing?.passwordHash || existing?.disabled) {
    const allowed = !existing.disabled && (await mayMail(deps, tenant.id, existing.id, 'signup_existing'));
    await audit(
      deps,
      tenant.id,
      {
        actor: { type: 'anonymous' },
        action: 'auth.sign_up.existing',
        resource: { type: 'user', id: existing.id },
        metadata: { delivered: allowed },
      },
      meta,
    );
    if (!allowed) return;
    await deps.mailer.send(
      renderMail('signup-existing', existing.email, `Your account at ${tenant.displayName}`, {
        tenantName: tenant.displayName,
        email: existing.email,
        resetLink: tenantUrl(deps, tenant, SELF_SERVICE_PATHS.forgot),
      }),
    );
    return;
  }
  // An account still waiting for its first password (an earlier sign-up) gets a fresh link.
  const user = existing ?? (await createSignedUpUser(deps, tenant, normalised, meta));
  if (!user || !(await mayMail(deps, tenant.id, user.id, 'verify_email'))) return;
  const { token } = await issueEmailToken(deps, tenant.id, user.id, 'verify_email');
  await audit(
    deps,
    tenant.id,
    {
      actor: { type: 'anonymous' },
      action: 'auth.email_verification.sent',
      resource: { type: 'user', id: user.id },
      metadata: { sign_up: true },
    },
    meta,
  );
  await deps.mailer.send(
    renderMail('verify-email', user.email, `Confirm your email address at ${tenant.displayName}`, {
      tenantName: tenant.displayName,
      email: user.email,
      link: linkFor(deps, tenant, 'verify_email', token),
      validFor: LIFETIME_WORDS.verify_email,
      newAccount: true,
    }),
  );
}

async function createSignedUpUser(deps: EmailFlowDeps, tenant: FlowTenant, email: string, meta: RequestMeta): Promise<User | null> {
  try {
    const user = await createUser(deps, tenant.id, { email, emailVerified: false }, { type: 'anonymous' });
    await audit(
      deps,
      tenant.id,
      { actor: { type: 'anonymous' }, action: 'auth.sign_up.started', resource: { type: 'user', id: user.id } },
      meta,
    );
    return user;
  } catch (error) {
    // The same address signed up twice at once: the other request mails the link.
    if ((error as { status?: number }).status === 409) return null;
    throw error;
  }
}

/** Mails a verification link to an existing account (one that already has a password). */
export async function sendEmailVerification(deps: EmailFlowDeps, tenant: FlowTenant, user: User, meta: RequestMeta): Promise<void> {
  const { token } = await issueEmailToken(deps, tenant.id, user.id, 'verify_email');
  await audit(
    deps,
    tenant.id,
    { actor: { type: 'system' }, action: 'auth.email_verification.sent', resource: { type: 'user', id: user.id } },
    meta,
  );
  await deps.mailer.send(
    renderMail('verify-email', user.email, `Confirm your email address at ${tenant.displayName}`, {
      tenantName: tenant.displayName,
      email: user.email,
      link: linkFor(deps, tenant, 'verify_email', token),
      validFor: LIFETIME_WORDS.verify_email,
      newAccount: false,
    }),
  );
}

/** Confirms the address of an account that has a password; false for a bad, used or expired link. */
export async function verifyEmail(deps: EmailFlowDeps, tenant: FlowTenant, token: unknown, meta: RequestMeta): Promise<boolean> {
  const found = await findEmailToken(deps, tenant.id, 'verify_email', token);
  if (!found || !found.user.passwordHash) return false;
  if (!(await useToken(deps, found.id))) return false;
  await deps.prisma.user.update({ where: { id: found.user.id }, data: { emailVerified: true } });
  await audit(
    deps,
    tenant.id,
    { actor: { type: 'user', id: found.user.id }, action: 'user.email_verified', resource: { type: 'user', id: found.user.id } },
    meta,
  );
  return true;
}

// ---------------------------------------------------------------- invitations

/**
 * Mails an invitation to an existing user of the tenant (the management API
 * creates the user first): a 7-day link that sets the password. Resolves
 * when the mail was handed to the transport; rejects when it could not be.
 */
export async function sendInvite(
  deps: EmailFlowDeps,
  tenant: FlowTenant,
  userId: string,
  actor: AuditEventInput['actor'],
  meta: RequestMeta = {},
): Promise<{ expiresAt: Date }> {
  const user = await deps.prisma.user.findFirst({ where: { id: userId, tenantId: tenant.id } });
  if (!user) throw notFound('no such user in this tenant');
  const { token, expiresAt } = await issueEmailToken(deps, tenant.id, user.id, 'invite');
  await audit(
    deps,
    tenant.id,
    { actor, action: 'user.invite.sent', resource: { type: 'user', id: user.id }, metadata: { expires_at: expiresAt.toISOString() } },
    meta,
  );
  await deps.mailer.send(
    renderMail('invite', user.email, `You are invited to ${tenant.displayName}`, {
      tenantName: tenant.displayName,
      email: user.email,
      link: linkFor(deps, tenant, 'invite', token),
      validFor: LIFETIME_WORDS.invite,
    }),
  );
  return { expiresAt };
}

/**
 * Creates a user without a password (and with the given roles) and mails the
 * invitation that sets it. The user cannot sign in with a password until
 * the invitation is accepted.
 */
export async function inviteUser(
  deps: EmailFlowDeps,
  tenant: FlowTenant,
  input: { email: string; name?: string; roles?: string[] },
  actor: AuditEventInput['actor'],
  meta: RequestMeta = {},
): Promise<{ user: User; expiresAt: Date }> {
  const user = await createUser(deps, tenant.id, { email: input.email, name: input.name, roles: input.roles }, actor);
  const { expiresAt } = await sendInvite(deps, tenant, user.id, actor, meta);
  return { user, expiresAt };
}

// ---------------------------------------------------------------- new device

/** Tells the user about a sign-in from a browser that had not signed in to the account before. */
export async function notifyNewDevice(deps: EmailFlowDeps, tenant: FlowTenant, user: User, meta: RequestMeta): Promise<void> {
  if (!(await mayMail(deps, tenant.id, user.id, 'new_device'))) return;
  const when = new Date(deps.clock.now()).toUTCString();
  await audit(
    deps,
    tenant.id,
    { actor: { type: 'system' }, action: 'auth.new_device.notified', resource: { type: 'user', id: user.id } },
    meta,
  );
  await deps.mailer.send(
    renderMail('new-device', user.email, `New sign-in to your account at ${tenant.displayName}`, {
      tenantName: tenant.displayName,
      email: user.email,
      when,
      device: meta.userAgent?.slice(0, 200) || undefined,
      ip: meta.ip || undefined,
      resetLink: tenantUrl(deps, tenant, SELF_SERVICE_PATHS.forgot),
    }),
  );
}
