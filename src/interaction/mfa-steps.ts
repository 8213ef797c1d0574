import type { Context } from 'koa';
import { z } from 'zod';
import { AppError } from '../errors.js';
import { ssoRequiredMessage } from '../federation/interaction-steps.js';
import {
  beginTotpEnrollment,
  completeWebauthnEnrollment,
  confirmTotpEnrollment,
  type MfaDeps,
  mfaSettingsOf,
  mfaStatusOf,
  pendingTotpEnrollment,
  type RequestMeta,
  recordMfaEvent,
  regenerateRecoveryCodes,
  verifySecondFactorCode,
} from '../security/mfa.js';
import { totpQrDataUrl } from '../security/totp.js';
import {
  finishAuthentication,
  finishRegistration,
  startAuthentication,
  startRegistration,
  type WebauthnDeps,
  webauthnFactorsOf,
} from '../security/webauthn.js';
import type { User } from '../store/generated/client.js';
import { type MfaActions, renderEnrollPage, renderMfaPage, renderPasskeyPage, renderRecoveryCodesPage } from './mfa-render.js';
import type { InteractionDetails, InteractionProvider } from './provider.js';
import type { InteractionRequest } from './routes.js';

/**
 * The second step of a sign-in on the hosted pages. After the password
 * (`finishLogin` in routes.ts) a user with a confirmed factor is asked for it,
 * and one whose role the tenant's policy names (or whose application asked for
 * `urn:idp:acr:mfa`) but who has none enrolls one first: the interaction does
 * not finish, so no token is issued, until that is done. Passkeys also sign in
 * on their own (passwordless) when the tenant turns them on.
 *
 * What the password step established is kept in the KvStore under the
 * interaction's uid, which only the browser holding that interaction's cookie
 * can act on (routes.ts checks the cookie's interaction is the URL's).
 */

/** What routes.ts lends these steps; passed in rather than imported, so the two modules do not import each other. */
export interface MfaKit {
  loadInteraction(request: InteractionRequest): Promise<{ provider: InteractionProvider; details: InteractionDetails }>;
  readCheckedForm(request: InteractionRequest): Promise<Record<string, string>>;
  /** Ends the interaction with this login (after asking for a second factor when `amr` has only one entry). */
  finishLogin(request: InteractionRequest, provider: InteractionProvider, user: User, amr: string[]): Promise<void>;
  showLogin(
    request: InteractionRequest,
    provider: InteractionProvider,
    details: InteractionDetails,
    form: { email?: string; error?: string },
    status?: number,
  ): Promise<void>;
}

type Step = (request: InteractionRequest) => Promise<void>;

/** The MFA form targets, by last path segment, for routes.ts's POST_STEPS. */
export function mfaSteps(kit: MfaKit): Record<string, Step> {
  return {
    mfa: (request) => submitCode(request, kit),
    'totp-enroll': (request) => submitTotpEnrollment(request, kit),
    'mfa-done': (request) => submitDone(request, kit),
    'recovery-codes': (request) => submitRegenerate(request, kit),
    'passkey-begin': (request) => beginPasskey(request, kit),
    passkey: (request) => submitPasskey(request, kit),
    'passkey-register-begin': (request) => beginPasskeyRegistration(request, kit),
    'passkey-register': (request) => submitPasskeyRegistration(request, kit),
  };
}

/** RFC 8176 values; see src/security/mfa.ts for why these. */
export const AMR = Object.freeze({
  password: 'pwd',
  oneTimePassword: 'otp',
  hardwareKey: 'hwk',
  userVerified: 'user',
});

const MFA_ACR = 'urn:idp:acr:mfa';

// ---------------------------------------------------------------- state of the sign-in

interface PendingSignIn {
  userId: string;
  /** verify: ask for a factor; enroll: set one up; done: verified, a "Continue" away from finishing. */
  stage: 'verify' | 'enroll' | 'done';
  /** Enrollment is the tenant's policy (not just the application's wish). */
  required?: boolean;
  /** The TOTP factor being enrolled (unconfirmed). */
  factorId?: string;
  /** The amr to finish with once `done`. */
  amr?: string[];
  /** What the first step was (`pwd`, or `fed` after an upstream IdP, src/federation/): the amr keeps saying so. */
  firstFactor?: string;
}

/** The interaction's own lifetime (oidc-provider's Interaction TTL): the state never outlives it. */
const PENDING_TTL_SECONDS = 600;
const pendingKey = (request: InteractionRequest) => `signin:mfa:${request.tenant.id}:${request.uid}`;

const firstFactorOf = (pending: PendingSignIn) => pending.firstFactor ?? AMR.password;

async function loadPending(request: InteractionRequest): Promise<PendingSignIn | null> {
  const raw = await request.deps.kv.get(pendingKey(request));
  return raw ? (JSON.parse(raw) as PendingSignIn) : null;
}

function savePending(request: InteractionRequest, pending: PendingSignIn): Promise<void> {
  return request.deps.kv.set(pendingKey(request), JSON.stringify(pending), PENDING_TTL_SECONDS);
}

function dropPending(request: InteractionRequest): Promise<void> {
  return request.deps.kv.del(pendingKey(request));
}

const wrongStep = () =>
  new AppError(400, 'invalid_request', 'This step does not match the sign-in request. Return to the application and start again.');

function mfaDeps(request: InteractionRequest): MfaDeps {
  const { deps } = request;
  return { prisma: deps.db.prisma, kv: deps.kv, clock: deps.clock, audit: deps.audit, vault: deps.vault };
}

function webauthnDeps(request: InteractionRequest): WebauthnDeps {
  const { deps } = request;
  return { prisma: deps.db.prisma, kv: deps.kv, clock: deps.clock, publicUrl: deps.config.publicUrl };
}

function metaOf(ctx: Context, details: InteractionDetails): RequestMeta {
  return {
    ip: ctx.ip || null,
    userAgent: ctx.get('User-Agent') || null,
    clientId: typeof details.params.client_id === 'string' ? details.params.client_id : null,
  };
}

function actionsOf(request: InteractionRequest): MfaActions {
  const page = `/t/${encodeURIComponent(request.tenant.slug)}/interaction/${request.uid}`;
  return {
    page,
    mfa: `${page}/mfa`,
    totpEnroll: `${page}/totp-enroll`,
    passkeyBegin: `${page}/passkey-begin`,
    passkey: `${page}/passkey`,
    passkeyRegisterBegin: `${page}/passkey-register-begin`,
    passkeyRegister: `${page}/passkey-register`,
    done: `${page}/mfa-done`,
    regenerate: `${page}/recovery-codes`,
    abort: `${page}/abort`,
  };
}

/** Where the login page's "Sign in with a passkey" posts, when the tenant offers passkeys. */
export function passkeySignInAction(request: InteractionRequest): string | undefined {
  return mfaSettingsOf(request.tenant.settings).passkeys ? actionsOf(request).passkeyBegin : undefined;
}

async function activeUser(request: InteractionRequest, userId: string): Promise<User | null> {
  const user = await request.deps.db.prisma.user.findFirst({ where: { id: userId, tenantId: request.tenant.id } });
  return user && !user.disabled ? user : null;
}

/** Back to the interaction page with GET, so a reload never re-posts a form. */
function redirectToPage(request: InteractionRequest): void {
  request.ctx.redirect(actionsOf(request).page);
  request.ctx.status = 303;
}

// ---------------------------------------------------------------- after the password

function asksForMfa(details: InteractionDetails): boolean {
  const values = details.params.acr_values;
  return typeof values === 'string' && values.split(' ').includes(MFA_ACR);
}

/**
 * Called by finishLogin before the interaction ends. True when a second step
 * was started (the response is a redirect to it); false when the login may
 * finish as it is: the user has no factor and none is required, or `amr`
 * already has two factors.
 */
export async function startSecondFactor(
  request: InteractionRequest,
  details: InteractionDetails,
  user: User,
  amr: readonly string[],
): Promise<boolean> {
  if (amr.length > 1) return false;
  const status = await mfaStatusOf(request.deps.db.prisma, request.tenant, user.id);
  if (status.factors.length > 0) {
    await savePending(request, { userId: user.id, stage: 'verify', firstFactor: amr[0] });
  } else if (status.requiredByRole || asksForMfa(details)) {
    const enrollment = await beginTotpEnrollment(mfaDeps(request), request.tenant, user);
    await savePending(request, {
      userId: user.id,
      stage: 'enroll',
      required: status.requiredByRole,
      factorId: enrollment.factorId,
      firstFactor: amr[0],
    });
  } else {
    return false;
  }
  redirectToPage(request);
  return true;
}

/** GET of the interaction page while a second step is under way: that step's page. False when there is none. */
export async function showSecondFactor(request: InteractionRequest, details: InteractionDetails): Promise<boolean> {
  const pending = await loadPending(request);
  if (!pending) return false;
  const user = await activeUser(request, pending.userId);
  if (!user) {
    await dropPending(request);
    return false;
  }
  await renderStage(request, details, pending, user);
  return true;
}

async function renderStage(
  request: InteractionRequest,
  details: InteractionDetails,
  pending: PendingSignIn,
  user: User,
  error?: string,
  status?: number,
): Promise<void> {
  switch (pending.stage) {
    case 'verify':
      return showCodeForm(request, details, user, error, status);
    case 'enroll':
      return showEnrollment(request, details, pending, user, error, status);
    case 'done':
      return renderRecoveryCodesPage(request.ctx, request.tenant, common(request, details));
  }
}

function common(request: InteractionRequest, details: InteractionDetails) {
  return {
    csrf: request.csrf.tokenFor(request.tenant.id, request.uid),
    actions: actionsOf(request),
    redirectUri: details.params.redirect_uri,
  };
}

async function showCodeForm(request: InteractionRequest, details: InteractionDetails, user: User, error?: string, status?: number) {
  const passkeys = await webauthnFactorsOf(request.deps.db.prisma, request.tenant.id, user.id);
  renderMfaPage(
    request.ctx,
    request.tenant,
    { ...common(request, details), email: user.email, passkey: passkeys.length > 0, error },
    status,
  );
}

async function showEnrollment(
  request: InteractionRequest,
  details: InteractionDetails,
  pending: PendingSignIn,
  user: User,
  error?: string,
  status?: number,
) {
  const deps = mfaDeps(request);
  let enrollment = pending.factorId ? await pendingTotpEnrollment(deps, request.tenant, user, pending.factorId) : null;
  if (!enrollment) {
    enrollment = await beginTotpEnrollment(deps, request.tenant, user);
    await savePending(request, { ...pending, factorId: enrollment.factorId });
  }
  const qrDataUrl = await totpQrDataUrl(enrollment.uri);
  renderEnrollPage(
    request.ctx,
    request.tenant,
    {
      ...common(request, details),
      qrDataUrl,
      manualKey: enrollment.manualKey,
      required: pending.required === true,
      passkeys: mfaSettingsOf(request.tenant.settings).passkeys,
      error,
    },
    status,
  );
}

// ---------------------------------------------------------------- the form posts

interface StepContext {
  provider: InteractionProvider;
  details: InteractionDetails;
  form: Record<string, string>;
  pending: PendingSignIn | null;
}

async function openStep(request: InteractionRequest, kit: MfaKit): Promise<StepContext> {
  const form = await kit.readCheckedForm(request);
  const { provider, details } = await kit.loadInteraction(request);
  if (details.prompt.name !== 'login') throw wrongStep();
  return { provider, details, form, pending: await loadPending(request) };
}

/** The step's state and user, which must be at `stage`. */
async function requireStage(request: InteractionRequest, pending: PendingSignIn | null, stage: PendingSignIn['stage']) {
  if (!pending || pending.stage !== stage) throw wrongStep();
  const user = await activeUser(request, pending.userId);
  if (!user) throw wrongStep();
  return { pending, user };
}

const codeField = z.string().max(64);

const INVALID_CODE = 'That code is not valid. Check your authenticator app and try again.';
const throttledMessage = (seconds: number) => `Too many wrong codes. Wait ${Math.max(1, Math.ceil(seconds / 60))} minutes, then try again.`;

async function submitCode(request: InteractionRequest, kit: MfaKit): Promise<void> {
  const { provider, details, form, pending: state } = await openStep(request, kit);
  const { pending, user } = await requireStage(request, state, 'verify');
  const code = codeField.safeParse(form.code ?? '');
  const result = await verifySecondFactorCode(
    mfaDeps(request),
    request.tenant.id,
    user.id,
    code.success ? code.data : '',
    metaOf(request.ctx, details),
  );
  if (!result.ok) {
    if (result.reason === 'throttled') {
      request.ctx.set('Retry-After', String(result.retryAfterSeconds ?? 60));
      return renderStage(request, details, pending, user, throttledMessage(result.retryAfterSeconds ?? 60), 429);
    }
    return renderStage(request, details, pending, user, INVALID_CODE, 422);
  }
  const amr = [firstFactorOf(pending), AMR.oneTimePassword];
  if (result.method === 'totp') {
    await dropPending(request);
    return kit.finishLogin(request, provider, user, amr);
  }
  // A recovery code: say how many are left and offer a new set before going on.
  await savePending(request, { userId: user.id, stage: 'done', amr });
  renderRecoveryCodesPage(request.ctx, request.tenant, {
    ...common(request, details),
    usedRecoveryCode: true,
    remaining: result.remainingRecoveryCodes ?? 0,
  });
}

async function submitTotpEnrollment(request: InteractionRequest, kit: MfaKit): Promise<void> {
  const { details, form, pending: state } = await openStep(request, kit);
  const { pending, user } = await requireStage(request, state, 'enroll');
  if (!pending.factorId) throw wrongStep();
  const code = codeField.safeParse(form.code ?? '');
  const result = await confirmTotpEnrollment(
    mfaDeps(request),
    request.tenant.id,
    user.id,
    pending.factorId,
    code.success ? code.data : '',
    metaOf(request.ctx, details),
  );
  if (!result.ok) {
    if (result.reason === 'throttled') {
      request.ctx.set('Retry-After', String(result.retryAfterSeconds ?? 60));
      return renderStage(request, details, pending, user, throttledMessage(result.retryAfterSeconds ?? 60), 429);
    }
    return renderStage(request, details, pending, user, INVALID_CODE, 422);
  }
  await savePending(request, { userId: user.id, stage: 'done', amr: [firstFactorOf(pending), AMR.oneTimePassword] });
  renderRecoveryCodesPage(request.ctx, request.tenant, { ...common(request, details), codes: result.recoveryCodes });
}

async function submitDone(request: InteractionRequest, kit: MfaKit): Promise<void> {
  const { provider, pending: state } = await openStep(request, kit);
  const { pending, user } = await requireStage(request, state, 'done');
  await dropPending(request);
  return kit.finishLogin(request, provider, user, pending.amr ?? [firstFactorOf(pending), AMR.oneTimePassword]);
}

async function submitRegenerate(request: InteractionRequest, kit: MfaKit): Promise<void> {
  const { details, pending: state } = await openStep(request, kit);
  const { user } = await requireStage(request, state, 'done');
  const meta = metaOf(request.ctx, details);
  const codes = await regenerateRecoveryCodes(mfaDeps(request), request.tenant.id, user.id, { type: 'user', id: user.id }, meta);
  renderRecoveryCodesPage(request.ctx, request.tenant, { ...common(request, details), codes, replaced: true });
}

// ---------------------------------------------------------------- passkeys

const credentialField = z.string().min(2).max(32_768);

/** The assertion page: a second factor after the password, or a sign-in on its own from the login page. */
async function beginPasskey(request: InteractionRequest, kit: MfaKit): Promise<void> {
  const { details, pending } = await openStep(request, kit);
  let userId: string | undefined;
  if (pending) {
    const { user } = await requireStage(request, pending, 'verify');
    userId = user.id;
  } else if (!mfaSettingsOf(request.tenant.settings).passkeys) {
    throw wrongStep();
  }
  const options = await startAuthentication(webauthnDeps(request), request.tenant.id, request.uid, userId);
  renderPasskeyPage(request.ctx, request.tenant, {
    ...common(request, details),
    ceremony: 'get',
    options: JSON.stringify(options),
    action: actionsOf(request).passkey,
    heading: 'Sign in with a passkey',
    lead: 'Use the passkey saved on this device, your phone or your security key.',
    button: 'Use passkey',
    backLabel: userId ? 'Use a code instead' : 'Sign in with your password instead',
  });
}

async function submitPasskey(request: InteractionRequest, kit: MfaKit): Promise<void> {
  const { provider, details, form, pending } = await openStep(request, kit);
  const meta = metaOf(request.ctx, details);
  const credential = credentialField.safeParse(form.credential ?? '');
  const stage = pending ? await requireStage(request, pending, 'verify') : null;
  if (!stage && !mfaSettingsOf(request.tenant.settings).passkeys) throw wrongStep();
  const result = credential.success
    ? await finishAuthentication(webauthnDeps(request), request.tenant.id, request.uid, credential.data)
    : ({ ok: false, reason: 'malformed' } as const);

  if (stage) {
    if (!result.ok || result.factor.userId !== stage.user.id) {
      await recordMfaEvent(request.deps, request.tenant.id, stage.user.id, 'mfa.failed', meta, {
        type: 'webauthn',
        reason: result.ok ? 'other_user' : result.reason,
      });
      return renderStage(request, details, stage.pending, stage.user, 'That passkey could not be verified. Try again or use a code.', 422);
    }
    await recordMfaEvent(request.deps, request.tenant.id, stage.user.id, 'mfa.used', meta, {
      type: 'webauthn',
      factor_id: result.factor.id,
    });
    await dropPending(request);
    return kit.finishLogin(request, provider, stage.user, [firstFactorOf(stage.pending), AMR.hardwareKey]);
  }

  // Passwordless: the passkey alone, with the user verified by the authenticator.
  const user = result.ok && result.userVerified ? await activeUser(request, result.factor.userId) : null;
  if (!result.ok || !user) {
    await recordPasswordlessFailure(
      request,
      meta,
      result.ok ? (result.userVerified ? 'user_disabled' : 'user_not_verified') : result.reason,
      result,
    );
    return kit.showLogin(request, provider, details, { error: 'That passkey could not be used to sign in.' }, 422);
  }
  // The passkey is a first factor like the password, so a domain that requires single sign-on refuses it too.
  const ssoOnly = await ssoRequiredMessage(request.deps.db.prisma, request.tenant.id, user.email);
  if (ssoOnly) {
    await recordPasswordlessFailure(request, meta, 'sso_required', result);
    return kit.showLogin(request, provider, details, { email: user.email, error: ssoOnly }, 403);
  }
  await recordMfaEvent(request.deps, request.tenant.id, user.id, 'mfa.used', meta, {
    type: 'webauthn',
    factor_id: result.factor.id,
    passwordless: true,
  });
  await request.deps.audit.append(request.tenant.id, {
    actor: { type: 'user', id: user.id },
    action: 'auth.sign_in.succeeded',
    resource: { type: 'user', id: user.id },
    ip: meta.ip ?? null,
    userAgent: meta.userAgent ?? null,
    metadata: { method: 'passkey', client_id: meta.clientId ?? null },
  });
  return kit.finishLogin(request, provider, user, [AMR.hardwareKey, AMR.userVerified]);
}

async function recordPasswordlessFailure(
  request: InteractionRequest,
  meta: RequestMeta,
  reason: string,
  result: Awaited<ReturnType<typeof finishAuthentication>> | { ok: false; reason: string },
): Promise<void> {
  const userId = result.ok ? result.factor.userId : 'userId' in result ? result.userId : undefined;
  await request.deps.audit.append(request.tenant.id, {
    actor: { type: 'anonymous' },
    action: 'auth.sign_in.failed',
    resource: userId ? { type: 'user', id: userId } : undefined,
    ip: meta.ip ?? null,
    userAgent: meta.userAgent ?? null,
    metadata: { method: 'passkey', reason, client_id: meta.clientId ?? null },
  });
}

/** Registration during enrollment, when the tenant offers passkeys: instead of an authenticator app. */
async function beginPasskeyRegistration(request: InteractionRequest, kit: MfaKit): Promise<void> {
  const { details, pending: state } = await openStep(request, kit);
  const { user } = await requireStage(request, state, 'enroll');
  if (!mfaSettingsOf(request.tenant.settings).passkeys) throw wrongStep();
  const options = await startRegistration(webauthnDeps(request), request.tenant, user, request.uid);
  renderPasskeyPage(request.ctx, request.tenant, {
    ...common(request, details),
    ceremony: 'create',
    options: JSON.stringify(options),
    action: actionsOf(request).passkeyRegister,
    heading: 'Create a passkey',
    lead: 'Save a passkey on this device, your phone or a security key. You will use it to sign in.',
    button: 'Create passkey',
    backLabel: 'Use an authenticator app instead',
  });
}

async function submitPasskeyRegistration(request: InteractionRequest, kit: MfaKit): Promise<void> {
  const { details, form, pending: state } = await openStep(request, kit);
  const { pending, user } = await requireStage(request, state, 'enroll');
  if (!mfaSettingsOf(request.tenant.settings).passkeys) throw wrongStep();
  const meta = metaOf(request.ctx, details);
  const credential = credentialField.safeParse(form.credential ?? '');
  const result = credential.success
    ? await finishRegistration(webauthnDeps(request), request.tenant.id, user.id, request.uid, credential.data)
    : ({ ok: false, reason: 'malformed' } as const);
  if (!result.ok) {
    await recordMfaEvent(request.deps, request.tenant.id, user.id, 'mfa.failed', meta, {
      type: 'webauthn',
      stage: 'enrollment',
      reason: result.reason,
    });
    return renderStage(request, details, pending, user, 'The passkey could not be created. Try again or use an authenticator app.', 422);
  }
  // The authenticator-app enrollment this replaces is left unconfirmed; drop it.
  await request.deps.db.prisma.mfaFactor.deleteMany({
    where: { tenantId: request.tenant.id, userId: user.id, type: 'totp', confirmedAt: null },
  });
  const codes = await completeWebauthnEnrollment(mfaDeps(request), request.tenant.id, user.id, result.factor.id, meta);
  await savePending(request, { userId: user.id, stage: 'done', amr: [firstFactorOf(pending), AMR.hardwareKey] });
  renderRecoveryCodesPage(request.ctx, request.tenant, { ...common(request, details), codes });
}
