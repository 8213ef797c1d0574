import { randomBytes } from 'node:crypto';
import type { Context, Middleware } from 'koa';
import type { AuditLog } from '../audit/audit.js';
import type { Clock } from '../clock.js';
import type { PasswordHasher } from '../crypto/passwords.js';
import { AppError, toHttpError } from '../errors.js';
import {
  acceptInvite,
  completePasswordReset,
  completeSignUp,
  type EmailFlowDeps,
  type EmailPurpose,
  findEmailToken,
  passwordRefusedBySso,
  requestPasswordReset,
  SELF_SERVICE_PATHS,
  type SetPasswordResult,
  signUp,
  tenantUrl,
  verifyEmail,
} from '../mail/flows.js';
import type { Mailer } from '../mail/mailer.js';
import type { Logger } from '../observability/logger.js';
import { limitRequest } from '../security/abuse.js';
import { describePasswordProblem, passwordPolicyFrom } from '../security/password-policy.js';
import { DEFAULT_SIGNUP } from '../security/settings.js';
import type { PrismaClient } from '../store/db.js';
import type { User } from '../store/generated/client.js';
import type { KvStore } from '../store/index.js';
import { requireTenant } from '../tenants/edge.js';
import type { TenantContext } from '../tenants/tenants.js';
import { emailSchema } from '../users/users.js';
import { CSRF_FIELD, type CsrfGuard, createCsrfGuard, isSameOrigin } from './csrf.js';
import { readForm } from './form.js';
import { renderErrorPage } from './render.js';
import {
  renderForgotPasswordPage,
  renderNoticePage,
  renderSetPasswordPage,
  renderSignUpPage,
  renderVerifyEmailPage,
} from './self-service-render.js';

/**
 * The hosted pages outside an OIDC interaction, reached from the sign-in page
 * or from a link in a mail: forgot password, reset, sign-up, email
 * verification and invitation. No script, the same layout as the sign-in
 * page; every POST is CSRF-checked and counted against the IP's sign-in limit.
 *
 * Their CSRF tokens are bound to a random nonce in a short-lived cookie (there
 * is no interaction id to bind to): a page sets it, its form carries the HMAC
 * of it, and a cross-site post has neither.
 *
 * "Forgot password" and "sign up" answer the same for every well-formed
 * address (status, page, cookies), and do the lookup and mailing after the
 * response, so neither tells whether an address is registered.
 */

export interface SelfServiceDeps {
  config: { publicUrl: string };
  db: { prisma: PrismaClient };
  kv: KvStore;
  clock: Clock;
  audit: AuditLog;
  passwords: PasswordHasher;
  masterKey: Buffer;
  logger: Logger;
  mailer: Mailer;
}

const FORM_COOKIE = 'idp_form';
const FORM_COOKIE_MAX_AGE_MS = 2 * 60 * 60 * 1000;
const NONCE = /^[A-Za-z0-9_-]{22}$/;

interface PageRequest {
  ctx: Context;
  tenant: TenantContext;
  deps: SelfServiceDeps;
  flows: EmailFlowDeps;
  csrf: CsrfGuard;
}

interface Page {
  show(request: PageRequest): Promise<void>;
  submit(request: PageRequest, form: Record<string, string>): Promise<void>;
}

const PAGES: Readonly<Record<string, Page>> = Object.freeze({
  [SELF_SERVICE_PATHS.forgot]: { show: showForgot, submit: submitForgot },
  [SELF_SERVICE_PATHS.reset]: { show: showReset, submit: submitReset },
  [SELF_SERVICE_PATHS.signup]: { show: showSignUp, submit: submitSignUp },
  [SELF_SERVICE_PATHS.verify]: { show: showVerify, submit: submitVerify },
  [SELF_SERVICE_PATHS.invite]: { show: showInvite, submit: submitInvite },
});

/** The links the sign-in page shows: "forgot password" always, "sign up" when the tenant allows it. */
export function selfServiceLinks(tenant: TenantContext): { forgot: string; signup?: string } {
  const base = `/t/${encodeURIComponent(tenant.slug)}`;
  return {
    forgot: `${base}${SELF_SERVICE_PATHS.forgot}`,
    ...(signUpEnabled(tenant) ? { signup: `${base}${SELF_SERVICE_PATHS.signup}` } : {}),
  };
}

/** True for the paths (after `/t/:tenant`) these pages answer. */
export function isSelfServicePath(subpath: string): boolean {
  return Object.hasOwn(PAGES, subpath);
}

export function selfServiceRoutes(deps: SelfServiceDeps): Middleware {
  const csrf = createCsrfGuard(deps.masterKey);
  const flows: EmailFlowDeps = { ...deps, prisma: deps.db.prisma };
  return async function selfService(ctx, next) {
    const tenant = requireTenant(ctx.state);
    const page = PAGES[ctx.path.slice(`/t/${tenant.slug}`.length)];
    if (!page) return next();
    const request: PageRequest = { ctx, tenant, deps, flows, csrf };
    ctx.set('Cache-Control', 'no-store');
    await withErrorPage(request, async () => {
      if (ctx.method === 'GET' || ctx.method === 'HEAD') return page.show(request);
      if (ctx.method !== 'POST')
        throw new AppError(405, 'method_not_allowed', 'This page cannot be used that way.', { Allow: 'GET, HEAD, POST' });
      // Counted before anything else, so even refused forms use up the allowance.
      await limitRequest(deps, tenant, ctx.ip, 'sign_in');
      return page.submit(request, await readCheckedForm(request));
    });
  };
}

// ---------------------------------------------------------------- errors and forms

const HEADINGS: Record<number, string> = {
  400: 'This request cannot be completed',
  403: 'This form cannot be accepted',
  404: 'This page does not exist',
  405: 'This request cannot be completed',
  413: 'This form is too large',
  415: 'This form cannot be read',
  429: 'Too many attempts',
  503: 'Temporarily unavailable',
};

async function withErrorPage(request: PageRequest, work: () => Promise<void>): Promise<void> {
  const { ctx, tenant, deps } = request;
  try {
    await work();
  } catch (error) {
    const mapped = toHttpError(error);
    if (mapped.unexpected) deps.logger.error({ err: error, requestId: ctx.state.requestId }, 'self-service page failed');
    if (ctx.headerSent) return;
    ctx.status = mapped.status;
    ctx.set(mapped.headers);
    const body =
      mapped.status === 429
        ? { ...mapped.body, error_description: 'Too many attempts from your network. Wait a while and try again.' }
        : mapped.body;
    renderErrorPage(ctx, body, tenant, HEADINGS[mapped.status] ?? 'Something went wrong');
  }
}

const formExpired = () =>
  new AppError(403, 'forbidden', 'This form has expired or was not sent from this site. Go back, reload the page and try again.');

const invalidLink = () =>
  new AppError(400, 'invalid_link', 'This link is not valid: it has expired or was already used. Ask for a new one.');

const ssoRequired = () =>
  new AppError(
    403,
    'sso_required',
    'Your organization signs in with single sign-on, so this link cannot set a password. Sign in with single sign-on instead.',
  );

const notFoundPage = () => new AppError(404, 'not_found', 'This page does not exist.');

function nonceOf(ctx: Context): string | null {
  const nonce = ctx.cookies.get(FORM_COOKIE);
  return nonce && NONCE.test(nonce) ? nonce : null;
}

/** The CSRF token for this browser's forms; sets the nonce cookie when there is none yet. */
function csrfToken(request: PageRequest): string {
  const { ctx, tenant, deps, csrf } = request;
  let nonce = nonceOf(ctx);
  if (!nonce) {
    nonce = randomBytes(16).toString('base64url');
    const secure = deps.config.publicUrl.startsWith('https:');
    if (secure) ctx.cookies.secure = true;
    ctx.cookies.set(FORM_COOKIE, nonce, {
      httpOnly: true,
      secure,
      sameSite: 'lax',
      path: `/t/${tenant.slug}`,
      maxAge: FORM_COOKIE_MAX_AGE_MS,
      overwrite: true,
    });
  }
  return csrf.tokenFor(tenant.id, `form:${nonce}`);
}

async function readCheckedForm(request: PageRequest): Promise<Record<string, string>> {
  const { ctx, tenant, deps, csrf } = request;
  if (!isSameOrigin(ctx, deps.config.publicUrl)) throw formExpired();
  const form = await readForm(ctx);
  const nonce = nonceOf(ctx);
  if (!nonce || !csrf.verify(tenant.id, `form:${nonce}`, form[CSRF_FIELD])) throw formExpired();
  return form;
}

const action = (request: PageRequest, path: string) => `/t/${encodeURIComponent(request.tenant.slug)}${path}`;

const meta = (ctx: Context) => ({ ip: ctx.ip || null, userAgent: ctx.get('User-Agent') || null });

/** What was typed into an email field, trimmed and bounded, to show it again. */
function typedEmail(form: Record<string, string>): string {
  return typeof form.email === 'string' ? form.email.trim().slice(0, 254) : '';
}

const ENTER_EMAIL = 'Enter a valid email address, like name@example.com.';

function signInLink(request: PageRequest) {
  return { href: tenantUrl(request.deps, request.tenant, '/account'), label: 'Sign in' };
}

// ---------------------------------------------------------------- forgot password

async function showForgot(request: PageRequest): Promise<void> {
  renderForgotPasswordPage(request.ctx, request.tenant, { csrf: csrfToken(request), action: action(request, SELF_SERVICE_PATHS.forgot) });
}

async function submitForgot(request: PageRequest, form: Record<string, string>): Promise<void> {
  const { ctx, tenant, deps, flows } = request;
  const email = typedEmail(form);
  if (!emailSchema.safeParse(email).success) {
    return renderForgotPasswordPage(
      ctx,
      tenant,
      { csrf: csrfToken(request), action: action(request, SELF_SERVICE_PATHS.forgot), email, error: ENTER_EMAIL },
      400,
    );
  }
  const source = meta(ctx);
  deps.mailer.later('password reset request', () => requestPasswordReset(flows, tenant, email, source));
  renderNoticePage(ctx, tenant, {
    heading: 'Check your email',
    paragraphs: [
      `If ${email} belongs to an account here, we have sent a link to it. The link works for 30 minutes.`,
      'Nothing arrived? Check your spam folder, or make sure you typed the address you signed up with.',
    ],
  });
}

// ---------------------------------------------------------------- links from mails

function tokenOf(ctx: Context, form?: Record<string, string>): string {
  const value = form ? form.token : ctx.query.token;
  return typeof value === 'string' ? value : '';
}

async function validToken(request: PageRequest, purpose: EmailPurpose, token: string): Promise<User> {
  const found = await findEmailToken(request.flows, request.tenant.id, purpose, token);
  if (!found) throw invalidLink();
  return found.user;
}

/** Says so when the link is opened, rather than after a password was typed for nothing. */
async function refuseIfSsoOnly(request: PageRequest, user: User, purpose: EmailPurpose): Promise<void> {
  if (await passwordRefusedBySso(request.flows, request.tenant.id, user, purpose)) throw ssoRequired();
}

interface PasswordPage {
  purpose: EmailPurpose;
  path: string;
  heading: string;
  lead: string;
  button: string;
}

const RESET_PAGE: PasswordPage = {
  purpose: 'reset_password',
  path: SELF_SERVICE_PATHS.reset,
  heading: 'Choose a new password',
  lead: 'Choose the new password of your account. You will be signed out everywhere and sign in again with it.',
  button: 'Change my password',
};

const INVITE_PAGE: PasswordPage = {
  purpose: 'invite',
  path: SELF_SERVICE_PATHS.invite,
  heading: 'Accept the invitation',
  lead: 'Choose the password of your new account.',
  button: 'Create my password',
};

const SIGN_UP_PAGE: PasswordPage = {
  purpose: 'verify_email',
  path: SELF_SERVICE_PATHS.verify,
  heading: 'Choose your password',
  lead: 'Your address is confirmed once you choose the password of your new account.',
  button: 'Create my account',
};

function showPasswordForm(request: PageRequest, page: PasswordPage, token: string, email: string, error?: string, status?: number): void {
  renderSetPasswordPage(
    request.ctx,
    request.tenant,
    {
      csrf: csrfToken(request),
      action: action(request, page.path),
      token,
      email,
      heading: page.heading,
      lead: page.lead,
      button: page.button,
      minLength: passwordPolicyFrom(request.tenant.settings).minLength,
      error,
    },
    status,
  );
}

/** A password set with a link: done, the link is no good, or the password breaks the policy (the form again). */
async function finishPasswordForm(
  request: PageRequest,
  page: PasswordPage,
  token: string,
  result: SetPasswordResult,
  done: () => void,
): Promise<void> {
  if (result.ok) return done();
  if (result.reason === 'invalid_token') throw invalidLink();
  if (result.reason === 'sso_required') throw ssoRequired();
  const user = await validToken(request, page.purpose, token);
  showPasswordForm(
    request,
    page,
    token,
    user.email,
    describePasswordProblem(result.reason, passwordPolicyFrom(request.tenant.settings)),
    422,
  );
}

function passwordOf(form: Record<string, string>): string {
  return typeof form.password === 'string' ? form.password : '';
}

async function showReset(request: PageRequest): Promise<void> {
  const token = tokenOf(request.ctx);
  const user = await validToken(request, 'reset_password', token);
  await refuseIfSsoOnly(request, user, 'reset_password');
  showPasswordForm(request, RESET_PAGE, token, user.email);
}

async function submitReset(request: PageRequest, form: Record<string, string>): Promise<void> {
  const token = tokenOf(request.ctx, form);
  const result = await completePasswordReset(request.flows, request.tenant, token, passwordOf(form), meta(request.ctx));
  await finishPasswordForm(request, RESET_PAGE, token, result, () =>
    renderNoticePage(request.ctx, request.tenant, {
      heading: 'Your password has been changed',
      paragraphs: [
        'You have been signed out everywhere. Sign in again with your new password.',
        'If you use two-step verification, you will still be asked for your second factor.',
      ],
      link: signInLink(request),
    }),
  );
}

async function showInvite(request: PageRequest): Promise<void> {
  const token = tokenOf(request.ctx);
  const user = await validToken(request, 'invite', token);
  showPasswordForm(request, INVITE_PAGE, token, user.email);
}

async function submitInvite(request: PageRequest, form: Record<string, string>): Promise<void> {
  const token = tokenOf(request.ctx, form);
  const result = await acceptInvite(request.flows, request.tenant, token, passwordOf(form), meta(request.ctx));
  await finishPasswordForm(request, INVITE_PAGE, token, result, () =>
    renderNoticePage(request.ctx, request.tenant, {
      heading: 'Your account is ready',
      paragraphs: ['Your password is set. Sign in with your email address and this password.'],
      link: signInLink(request),
    }),
  );
}

/**
 * A verification link: for an account that already has a password, a
 * "confirm" button; for one made by sign-up (no password yet), the form that
 * chooses it, which confirms the address too.
 */
async function showVerify(request: PageRequest): Promise<void> {
  const token = tokenOf(request.ctx);
  const user = await validToken(request, 'verify_email', token);
  if (!user.passwordHash) {
    await refuseIfSsoOnly(request, user, 'verify_email');
    return showPasswordForm(request, SIGN_UP_PAGE, token, user.email);
  }
  renderVerifyEmailPage(request.ctx, request.tenant, {
    csrf: csrfToken(request),
    action: action(request, SELF_SERVICE_PATHS.verify),
    token,
    email: user.email,
  });
}

async function submitVerify(request: PageRequest, form: Record<string, string>): Promise<void> {
  const { ctx, tenant, flows } = request;
  const token = tokenOf(ctx, form);
  if (typeof form.password === 'string') {
    const result = await completeSignUp(flows, tenant, token, form.password, meta(ctx));
    return finishPasswordForm(request, SIGN_UP_PAGE, token, result, () =>
      renderNoticePage(ctx, tenant, {
        heading: 'Your account is ready',
        paragraphs: ['Your address is confirmed and your password is set. Sign in with them.'],
        link: signInLink(request),
      }),
    );
  }
  if (!(await verifyEmail(flows, tenant, token, meta(ctx)))) throw invalidLink();
  renderNoticePage(ctx, tenant, { heading: 'Your address is confirmed', paragraphs: ['Thank you. There is nothing else to do.'] });
}

// ---------------------------------------------------------------- sign-up

function signUpEnabled(tenant: TenantContext): boolean {
  return (tenant.settings.signup ?? DEFAULT_SIGNUP).enabled;
}

async function showSignUp(request: PageRequest): Promise<void> {
  if (!signUpEnabled(request.tenant)) throw notFoundPage();
  renderSignUpPage(request.ctx, request.tenant, { csrf: csrfToken(request), action: action(request, SELF_SERVICE_PATHS.signup) });
}

async function submitSignUp(request: PageRequest, form: Record<string, string>): Promise<void> {
  const { ctx, tenant, deps, flows } = request;
  if (!signUpEnabled(tenant)) throw notFoundPage();
  const email = typedEmail(form);
  if (!emailSchema.safeParse(email).success) {
    return renderSignUpPage(
      ctx,
      tenant,
      { csrf: csrfToken(request), action: action(request, SELF_SERVICE_PATHS.signup), email, error: ENTER_EMAIL },
      400,
    );
  }
  const source = meta(ctx);
  deps.mailer.later('sign-up', () => signUp(flows, tenant, email, source));
  renderNoticePage(ctx, tenant, {
    heading: 'Check your email',
    paragraphs: [
      `We have sent a message to ${email}. Follow the link in it to continue. It works for 24 hours.`,
      'Nothing arrived? Check your spam folder, or make sure you typed your address correctly.',
    ],
  });
}
