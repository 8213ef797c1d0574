import type { Context, Middleware } from 'koa';
import { z } from 'zod';
import type { AuditLog } from '../audit/audit.js';
import type { Clock } from '../clock.js';
import type { Config } from '../config.js';
import type { PasswordHasher } from '../crypto/passwords.js';
import type { Vault } from '../crypto/vault.js';
import { AppError, badRequest, toHttpError } from '../errors.js';
import { federationSteps, loginSsoView, ssoRequiredMessage } from '../federation/interaction-steps.js';
import type { Mailer } from '../mail/mailer.js';
import type { Logger } from '../observability/logger.js';
import type { NetworkPolicyCache } from '../security/network-policy.js';
import type { PrismaClient } from '../store/db.js';
import type { User } from '../store/generated/client.js';
import type { KvStore } from '../store/index.js';
import { requireTenant } from '../tenants/edge.js';
import type { TenantContext } from '../tenants/tenants.js';
import { authenticatePassword } from '../users/authenticate.js';
import { applyConsent, consentMetadata, describeConsent } from './consent.js';
import { CSRF_FIELD, type CsrfGuard, createCsrfGuard, isSameOrigin } from './csrf.js';
import { readForm } from './form.js';
import { type MfaKit, mfaSteps, passkeySignInAction, showSecondFactor, startSecondFactor } from './mfa-steps.js';
import type { InteractionDetails, InteractionGrant, InteractionProvider, OidcProviders } from './provider.js';
import { type InteractionActions, renderConsentPage, renderErrorPage, renderLoginPage } from './render.js';
import { selfServiceLinks } from './self-service.js';
import { createSignInProtection, type SignInProtection } from './sign-in-protection.js';

export interface InteractionDeps {
  config: Pick<Config, 'publicUrl'>;
  db: { prisma: PrismaClient };
  passwords: PasswordHasher;
  audit: AuditLog;
  masterKey: Buffer;
  logger: Logger;
  oidc: OidcProviders;
  /** The second step's state and passkey challenges (src/interaction/mfa-steps.ts). */
  kv: KvStore;
  clock: Clock;
  vault: Vault;
  /** The new-device notice (src/interaction/sign-in-protection.ts). */
  mailer: Mailer;
  /** The tenant network policy, which may restrict sign-in (src/interaction/sign-in-protection.ts). */
  networkPolicies: NetworkPolicyCache;
}

/** Authentication context class references this server puts in ID tokens (the provider's `acrValues`). */
export const ACR = Object.freeze({ password: 'urn:idp:acr:pwd', multiFactor: 'urn:idp:acr:mfa' });

/** The one message for every failed sign-in, whatever the reason: nothing here tells which accounts exist. */
export const SIGN_IN_FAILED = 'Incorrect email or password.';
const SIGN_IN_INCOMPLETE = 'Enter your email address and password.';

/** `/t/:tenant/interaction/:uid` and its form targets. oidc-provider's uids are nanoids. */
const INTERACTION_PATH = /^\/t\/[^/]+\/interaction\/([A-Za-z0-9_-]{1,64})(?:\/([a-z][a-z-]{0,31}))?\/?$/;

/** One request to an interaction page: who it is for and how to reach the provider. */
export interface InteractionRequest {
  ctx: Context;
  tenant: TenantContext;
  uid: string;
  deps: InteractionDeps;
  csrf: CsrfGuard;
  protection: SignInProtection;
}

type Step = (request: InteractionRequest) => Promise<void>;

/** What the second-factor steps (mfa-steps.ts) use of this module. */
const MFA_KIT: MfaKit = { loadInteraction, readCheckedForm, finishLogin, showLogin };

/** Single sign-on: `sso` sends the browser upstream, `federated` is where it comes back (src/federation/). */
const FEDERATION_STEPS = federationSteps(MFA_KIT);

/** Form targets by their last path segment; the second-factor ones come from mfa-steps.ts. */
const POST_STEPS: Readonly<Record<string, Step>> = Object.freeze({
  login: submitLogin,
  confirm: submitConsent,
  abort: abortInteraction,
  ...mfaSteps(MFA_KIT),
  ...FEDERATION_STEPS.post,
});

/** Steps the browser reaches by a redirect rather than a form. */
const GET_STEPS: Readonly<Record<string, Step>> = Object.freeze({ ...FEDERATION_STEPS.get });

/**
 * The hosted sign-in and consent pages of oidc-provider interactions:
 * GET `/t/:tenant/interaction/:uid` shows what the prompt asks for; the forms
 * post to `…/login`, `…/confirm` and `…/abort`. Every failure is a page with a
 * 4xx status (or a generic 5xx one), never a stack trace or JSON.
 */
export function interactionRoutes(deps: InteractionDeps): Middleware {
  // Built once: both derive their keys from the master key (HKDF), which is not per-request work.
  const csrf = createCsrfGuard(deps.masterKey);
  const protection = createSignInProtection(deps);
  return async function interaction(ctx, next) {
    const match = INTERACTION_PATH.exec(ctx.path);
    if (!match?.[1]) return next();
    const step = match[2];
    if (step !== undefined && !Object.hasOwn(POST_STEPS, step) && !Object.hasOwn(GET_STEPS, step)) return next();
    const request: InteractionRequest = { ctx, tenant: requireTenant(ctx.state), uid: match[1], deps, csrf, protection };
    ctx.set('Cache-Control', 'no-store');
    await withErrorPage(request, () => dispatch(request, step));
  };
}

async function dispatch(request: InteractionRequest, step: string | undefined): Promise<void> {
  const { method } = request.ctx;
  if (step === undefined) {
    if (method !== 'GET' && method !== 'HEAD') throw methodNotAllowed('GET, HEAD');
    return showInteraction(request);
  }
  if (Object.hasOwn(GET_STEPS, step)) {
    if (method !== 'GET') throw methodNotAllowed('GET');
    return GET_STEPS[step]?.(request);
  }
  if (method !== 'POST') throw methodNotAllowed('POST');
  const handler = POST_STEPS[step];
  if (!handler) throw badRequest('This page does not exist.');
  return handler(request);
}

// ---------------------------------------------------------------- errors

const methodNotAllowed = (allow: string) => new AppError(405, 'method_not_allowed', 'This page cannot be used that way.', { Allow: allow });

const interactionExpired = () =>
  new AppError(
    400,
    'interaction_expired',
    'This sign-in request has expired or is no longer valid. Return to the application and start again.',
  );

const csrfRejected = () =>
  new AppError(403, 'forbidden', 'This form has expired or was not sent from this site. Go back, reload the page and try again.');

const wrongStep = () =>
  new AppError(400, 'invalid_request', 'This step does not match the sign-in request. Return to the application and start again.');

const HEADINGS: Record<number, string> = {
  400: 'This request cannot be completed',
  403: 'This form cannot be accepted',
  405: 'This request cannot be completed',
  413: 'This form is too large',
  415: 'This form cannot be read',
  429: 'Too many attempts',
  503: 'Temporarily unavailable',
};

/** Renders whatever went wrong as the tenant's error page; only bugs are logged, and never shown. */
async function withErrorPage(request: InteractionRequest, work: () => Promise<void>): Promise<void> {
  const { ctx, tenant, deps } = request;
  try {
    await work();
  } catch (error) {
    const mapped = toHttpError(error);
    if (mapped.unexpected) deps.logger.error({ err: error, requestId: ctx.state.requestId }, 'interaction failed');
    if (ctx.headerSent) return;
    ctx.status = mapped.status;
    ctx.set(mapped.headers);
    renderErrorPage(ctx, mapped.body, tenant, HEADINGS[mapped.status] ?? 'Something went wrong');
  }
}

/** oidc-provider signals a missing, expired or foreign interaction with a 4xx error of its own (SessionNotFound). */
function isInteractionGone(error: unknown): boolean {
  if (!error || typeof error !== 'object') return false;
  const { name, status } = error as { name?: unknown; status?: unknown };
  return name === 'SessionNotFound' || (typeof status === 'number' && status >= 400 && status < 500);
}

/**
 * The interaction the browser's cookie points at, which must be the one in the
 * URL: a second tab or a stale link otherwise acts on the wrong request.
 */
async function loadInteraction(request: InteractionRequest): Promise<{ provider: InteractionProvider; details: InteractionDetails }> {
  const { ctx, deps, tenant, uid } = request;
  const provider = await deps.oidc.providerFor(tenant);
  let details: InteractionDetails;
  try {
    details = await provider.interactionDetails(ctx.req, ctx.res);
  } catch (error) {
    if (isInteractionGone(error)) throw interactionExpired();
    throw error;
  }
  if (details.uid !== uid) throw interactionExpired();
  return { provider, details };
}

/** Every POST: same origin when the browser says where it comes from, and the interaction's token. */
async function readCheckedForm(request: InteractionRequest): Promise<Record<string, string>> {
  const { ctx, deps, csrf, tenant, uid } = request;
  if (!isSameOrigin(ctx, deps.config.publicUrl)) throw csrfRejected();
  const form = await readForm(ctx);
  if (!csrf.verify(tenant.id, uid, form[CSRF_FIELD])) throw csrfRejected();
  return form;
}

// ---------------------------------------------------------------- pages

function actionsFor(request: InteractionRequest): InteractionActions {
  const base = `/t/${encodeURIComponent(request.tenant.slug)}/interaction/${request.uid}`;
  return { login: `${base}/login`, confirm: `${base}/confirm`, abort: `${base}/abort` };
}

async function clientNameOf(provider: InteractionProvider, details: InteractionDetails): Promise<string> {
  const clientId = typeof details.params.client_id === 'string' ? details.params.client_id : '';
  const client = clientId ? await provider.Client.find(clientId) : undefined;
  return client?.clientName || client?.clientId || clientId || 'the application';
}

function loginHint(details: InteractionDetails): string | undefined {
  const hint = details.params.login_hint;
  return typeof hint === 'string' && hint.length <= 254 ? hint : undefined;
}

async function showInteraction(request: InteractionRequest): Promise<void> {
  const { provider, details } = await loadInteraction(request);
  switch (details.prompt.name) {
    case 'login':
      if (await showSecondFactor(request, details)) return;
      return showLogin(request, provider, details, { email: loginHint(details) });
    case 'consent':
      return showConsent(request, provider, details);
    default:
      throw wrongStep();
  }
}

async function showLogin(
  request: InteractionRequest,
  provider: InteractionProvider,
  details: InteractionDetails,
  form: { email?: string; error?: string },
  status?: number,
): Promise<void> {
  const { ctx, tenant, csrf, uid } = request;
  renderLoginPage(
    ctx,
    tenant,
    {
      csrf: csrf.tokenFor(tenant.id, uid),
      actions: actionsFor(request),
      clientName: await clientNameOf(provider, details),
      email: form.email,
      error: form.error,
      passkeyAction: passkeySignInAction(request),
      links: selfServiceLinks(tenant),
      sso: await loginSsoView(request),
      redirectUri: details.params.redirect_uri,
    },
    status,
  );
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

async function accountEmail(request: InteractionRequest, accountId: string | undefined): Promise<string | undefined> {
  if (!accountId || !UUID.test(accountId)) return undefined;
  const user = await request.deps.db.prisma.user.findFirst({
    where: { id: accountId, tenantId: request.tenant.id },
    select: { email: true },
  });
  return user?.email;
}

async function showConsent(request: InteractionRequest, provider: InteractionProvider, details: InteractionDetails): Promise<void> {
  const { ctx, tenant, csrf, uid } = request;
  renderConsentPage(ctx, tenant, {
    csrf: csrf.tokenFor(tenant.id, uid),
    actions: actionsFor(request),
    clientName: await clientNameOf(provider, details),
    accountEmail: await accountEmail(request, details.session?.accountId),
    ...describeConsent(details.prompt.details),
    redirectUri: details.params.redirect_uri,
  });
}

// ---------------------------------------------------------------- sign-in

/** Bounds well above any real address or password; longer input is not a sign-in attempt. */
const loginForm = z.object({
  email: z.string().trim().min(1).max(320),
  password: z.string().min(1).max(4096),
});

function requestMeta(ctx: Context, details: InteractionDetails) {
  return {
    ip: ctx.ip || null,
    userAgent: ctx.get('User-Agent') || null,
    clientId: typeof details.params.client_id === 'string' ? details.params.client_id : null,
  };
}

async function submitLogin(request: InteractionRequest): Promise<void> {
  const { protection } = request;
  // Counted before anything else, so that refused and malformed posts use up the allowance too.
  await protection.admit(request.ctx, request.tenant);
  const form = await readCheckedForm(request);
  const { provider, details } = await loadInteraction(request);
  if (details.prompt.name !== 'login') throw wrongStep();
  const input = loginForm.safeParse(form);
  if (!input.success) {
    const email = typeof form.email === 'string' ? form.email.slice(0, 254) : undefined;
    return showLogin(request, provider, details, { email, error: SIGN_IN_INCOMPLETE }, 400);
  }
  const { deps, ctx, tenant } = request;
  // A domain that requires single sign-on gets no password check at all, whoever the address belongs to.
  const ssoOnly = await ssoRequiredMessage(deps.db.prisma, tenant.id, input.data.email);
  if (ssoOnly) return showLogin(request, provider, details, { email: input.data.email, error: ssoOnly }, 403);
  const guard = protection.guard(ctx, tenant);
  const result = await authenticatePassword(
    authDeps(deps),
    tenant,
    input.data.email,
    input.data.password,
    requestMeta(ctx, details),
    guard,
  );
  if (!result.ok) {
    await protection.failed(ctx, tenant, input.data.email);
    return showLogin(request, provider, details, { email: input.data.email, error: SIGN_IN_FAILED }, 422);
  }
  await protection.succeeded(ctx, tenant, result.user);
  await finishLogin(request, provider, result.user, ['pwd'], details);
}

function authDeps(deps: InteractionDeps) {
  return { prisma: deps.db.prisma, passwords: deps.passwords, audit: deps.audit };
}

/**
 * The user is known. With one factor so far, the second step comes first
 * when the user has one or must enroll one (mfa-steps.ts), which calls this
 * again with the combined `amr` once it passes; otherwise the interaction ends.
 * `details`: the interaction as this request already loaded it, which saves
 * loading it again (two KvStore reads).
 */
async function finishLogin(
  request: InteractionRequest,
  provider: InteractionProvider,
  user: User,
  amr: string[],
  details?: InteractionDetails,
): Promise<void> {
  const { ctx } = request;
  if (amr.length < 2) {
    const current = details ?? (await loadInteraction(request)).details;
    if (await startSecondFactor(request, current, user, amr)) return;
  }
  const acr = amr.length > 1 ? ACR.multiFactor : ACR.password;
  await provider.interactionFinished(
    ctx.req,
    ctx.res,
    { login: { accountId: user.id, amr, acr, remember: true } },
    { mergeWithLastSubmission: false },
  );
}

// ---------------------------------------------------------------- consent

async function grantFor(provider: InteractionProvider, details: InteractionDetails, accountId: string): Promise<InteractionGrant> {
  const existing = details.grantId ? await provider.Grant.find(details.grantId) : undefined;
  if (existing) return existing;
  const clientId = details.params.client_id;
  if (typeof clientId !== 'string') throw interactionExpired();
  return new provider.Grant({ accountId, clientId });
}

async function submitConsent(request: InteractionRequest): Promise<void> {
  await readCheckedForm(request);
  const { provider, details } = await loadInteraction(request);
  const accountId = details.session?.accountId;
  if (details.prompt.name !== 'consent' || !accountId) throw wrongStep();
  const grant = await grantFor(provider, details, accountId);
  applyConsent(grant, details.prompt.details);
  const grantId = await grant.save();
  await recordConsent(request, details, accountId, 'auth.consent.granted');
  await provider.interactionFinished(request.ctx.req, request.ctx.res, { consent: { grantId } }, { mergeWithLastSubmission: true });
}

/** "Deny" on the consent page and "Cancel" on the sign-in page: the client gets access_denied. */
async function abortInteraction(request: InteractionRequest): Promise<void> {
  await readCheckedForm(request);
  const { provider, details } = await loadInteraction(request);
  const accountId = details.session?.accountId;
  if (details.prompt.name === 'consent' && accountId) await recordConsent(request, details, accountId, 'auth.consent.denied');
  else await recordSignInCancelled(request, details);
  await provider.interactionFinished(
    request.ctx.req,
    request.ctx.res,
    { error: 'access_denied', error_description: 'End-User aborted interaction' },
    { mergeWithLastSubmission: false },
  );
}

function recordConsent(request: InteractionRequest, details: InteractionDetails, accountId: string, action: string) {
  const meta = requestMeta(request.ctx, details);
  return request.deps.audit.append(request.tenant.id, {
    actor: { type: 'user', id: accountId },
    action,
    resource: { type: 'client', id: meta.clientId },
    ip: meta.ip,
    userAgent: meta.userAgent,
    metadata: { client_id: meta.clientId, ...consentMetadata(details.prompt.details) },
  });
}

function recordSignInCancelled(request: InteractionRequest, details: InteractionDetails) {
  const meta = requestMeta(request.ctx, details);
  return request.deps.audit.append(request.tenant.id, {
    actor: details.session?.accountId ? { type: 'user', id: details.session.accountId } : { type: 'anonymous' },
    action: 'auth.sign_in.cancelled',
    resource: { type: 'client', id: meta.clientId },
    ip: meta.ip,
    userAgent: meta.userAgent,
    metadata: { client_id: meta.clientId, prompt: details.prompt.name },
  });
}
