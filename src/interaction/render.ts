import { createHash } from 'node:crypto';
import path from 'node:path';
import type { Context } from 'koa';
import pug from 'pug';
import type { LoginSso } from '../federation/interaction-steps.js';
import type { TenantContext } from '../tenants/tenants.js';
import { STYLESHEET_HREF, VIEWS_DIR } from './assets.js';
import { type CspAdditions, formActionSource, widenCsp } from './csp.js';

type View = 'login' | 'consent' | 'error' | 'logout' | 'logout-success' | 'account';

/** Compiled once per process: a compiled template is a pure function of its locals. */
const TEMPLATES: Readonly<Record<View, pug.compileTemplate>> = Object.freeze({
  login: compile('login'),
  consent: compile('consent'),
  error: compile('error'),
  logout: compile('logout'),
  'logout-success': compile('logout-success'),
  account: compile('account'),
});

function compile(view: View): pug.compileTemplate {
  return pug.compileFile(path.join(VIEWS_DIR, `${view}.pug`), { basedir: VIEWS_DIR });
}

/** What a page needs to know about its tenant; TenantContext has it. */
export type BrandSource = Pick<TenantContext, 'displayName' | 'settings'>;

interface Brand {
  displayName: string;
  logoUrl?: string;
  /** `:root{…}` with the tenant colours; allowed by its hash in the page's CSP. */
  themeCss?: string;
}

// ---------------------------------------------------------------- branding

const HEX_COLOUR = /^#[0-9a-f]{6}$/i;

/** WCAG relative luminance of a #rrggbb colour. */
function luminance(hex: string): number {
  const channel = (offset: number) => {
    const c = Number.parseInt(hex.slice(offset, offset + 2), 16) / 255;
    return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4;
  };
  return 0.2126 * channel(1) + 0.7152 * channel(3) + 0.0722 * channel(5);
}

/** Black or white, whichever contrasts more with the tenant colour, so button labels stay readable. */
export function contrastingText(hex: string): '#000000' | '#ffffff' {
  const l = luminance(hex);
  return (l + 0.05) / 0.05 >= 1.05 / (l + 0.05) ? '#000000' : '#ffffff';
}

/**
 * The tenant colour as a tiny `<style>` block. An inline `style` attribute
 * would need `'unsafe-inline'`; a hash source allows exactly this block, and
 * the colour is re-validated here so nothing else can reach the CSS.
 */
function themeFor(colour: unknown): { css: string; hashSource: string } | null {
  if (typeof colour !== 'string' || !HEX_COLOUR.test(colour)) return null;
  const brand = colour.toLowerCase();
  const css = `:root{--brand:${brand};--brand-contrast:${contrastingText(brand)}}`;
  return { css, hashSource: `'sha256-${createHash('sha256').update(css).digest('base64')}'` };
}

/** https only and without credentials; anything else shows the display name instead. */
function logoFor(logoUrl: unknown): URL | null {
  if (typeof logoUrl !== 'string') return null;
  try {
    const url = new URL(logoUrl);
    return url.protocol === 'https:' && !url.username && !url.password ? url : null;
  } catch {
    return null;
  }
}

function brandFor(tenant: BrandSource): { brand: Brand; csp: CspAdditions } {
  const theme = themeFor(tenant.settings.branding?.primaryColor);
  const logo = logoFor(tenant.settings.branding?.logoUrl);
  return {
    brand: { displayName: tenant.displayName, logoUrl: logo?.href, themeCss: theme?.css },
    csp: { styleSrc: theme ? [theme.hashSource] : [], imgSrc: logo ? [logo.origin] : [] },
  };
}

// ---------------------------------------------------------------- core

export interface PageOptions {
  status?: number;
  /** Where this page's forms may lead after redirects (the client's redirect URI, say). */
  formActions?: readonly (string | null)[];
  /** Script sources: only the passkey pages have one (`'self'`); every other page runs no script. */
  scriptSrc?: readonly string[];
}

/**
 * Renders a view into ctx with the headers every hosted page carries: its own
 * CSP (the default plus what its branding and forms need), no caching, and a
 * same-origin referrer policy so the browser sends a real `Origin` on our POSTs.
 */
function renderView(ctx: Context, view: View, tenant: BrandSource, title: string, locals: object, options: PageOptions = {}): void {
  renderTemplate(ctx, TEMPLATES[view], tenant, title, locals, options);
}

/** renderView for templates compiled elsewhere (the MFA pages, src/interaction/mfa-render.ts). */
export function renderTemplate(
  ctx: Context,
  template: pug.compileTemplate,
  tenant: BrandSource,
  title: string,
  locals: object,
  options: PageOptions = {},
): void {
  const { brand, csp } = brandFor(tenant);
  const formAction = (options.formActions ?? []).filter((source): source is string => Boolean(source));
  ctx.set('Content-Security-Policy', widenCsp({ ...csp, formAction, scriptSrc: options.scriptSrc }));
  ctx.set('Cache-Control', 'no-store');
  ctx.set('Pragma', 'no-cache');
  ctx.set('Referrer-Policy', 'same-origin');
  if (options.status) ctx.status = options.status;
  ctx.type = 'html';
  ctx.body = template({ ...locals, title, brand, stylesheetHref: STYLESHEET_HREF });
}

// ---------------------------------------------------------------- login and consent

export interface InteractionActions {
  login: string;
  confirm: string;
  abort: string;
}

export interface LoginView {
  csrf: string;
  actions: InteractionActions;
  clientName?: string;
  /** Pre-filled address: what was typed before, or the client's login_hint. */
  email?: string;
  /** Shown above the form and tied to both inputs with aria-describedby. */
  error?: string;
  /** Where "Sign in with a passkey" posts; absent when the tenant does not offer passkeys. */
  passkeyAction?: string;
  /** "Forgot your password?" and, when the tenant allows sign-up, "Create an account" (self-service.ts). */
  links?: { forgot: string; signup?: string };
  /** Single sign-on buttons and home-realm discovery, when the tenant has connections (src/federation/). */
  sso?: LoginSso;
  /** The client's redirect URI, which the browser reaches through redirects after the post. */
  redirectUri?: unknown;
}

export function renderLoginPage(ctx: Context, tenant: BrandSource, view: LoginView, status?: number): void {
  const { redirectUri, ...locals } = view;
  const formActions = [formActionSource(redirectUri), ...(view.sso?.formActions ?? [])];
  renderView(ctx, 'login', tenant, 'Sign in', locals, { status, formActions });
}

export interface ConsentView {
  csrf: string;
  actions: InteractionActions;
  clientName: string;
  accountEmail?: string;
  /** Human sentences, one per scope or claim asked for. */
  permissions: string[];
  resources: { indicator: string; scopes: string[] }[];
  redirectUri?: unknown;
}

export function renderConsentPage(ctx: Context, tenant: BrandSource, view: ConsentView): void {
  const { redirectUri, ...locals } = view;
  renderView(ctx, 'consent', tenant, 'Allow access', locals, { formActions: [formActionSource(redirectUri)] });
}

// ---------------------------------------------------------------- errors

export interface ErrorOut {
  error: string;
  error_description?: string;
}

const MAX_DESCRIPTION = 300;
const GENERIC_MESSAGE = 'Something unexpected happened on our side. Please try again later.';

/** The words a person sees: never details of a server error, never more than a short, escaped description. */
function errorMessage(out: ErrorOut): string {
  if (out.error === 'server_error' || typeof out.error_description !== 'string' || !out.error_description.trim()) return GENERIC_MESSAGE;
  const description = out.error_description.trim();
  const sentence = description.length > MAX_DESCRIPTION ? `${description.slice(0, MAX_DESCRIPTION)}…` : description;
  return `${sentence.charAt(0).toUpperCase()}${sentence.slice(1)}${/[.!?…]$/.test(sentence) ? '' : '.'}`;
}

const ERROR_CODE = /^[a-z0-9_]{1,64}$/;

/**
 * oidc-provider's `renderError`, and the hosted pages' own error page. The
 * status is left as the caller set it; every value shown is escaped by pug.
 */
export function renderErrorPage(ctx: Context, out: ErrorOut, tenant: BrandSource, heading = 'Something went wrong'): void {
  const code = typeof out.error === 'string' && ERROR_CODE.test(out.error) ? out.error : 'server_error';
  renderView(ctx, 'error', tenant, heading, { heading, message: errorMessage({ ...out, error: code }), code });
}

// ---------------------------------------------------------------- logout

/** What oidc-provider put on ctx.oidc that the logout pages show; read defensively, it is untyped. */
function logoutDetails(ctx: Context): { clientName?: string; postLogoutRedirectUri?: string } {
  const oidc: unknown = Reflect.get(ctx, 'oidc');
  if (!oidc || typeof oidc !== 'object') return {};
  const client: unknown = Reflect.get(oidc, 'client');
  const params: unknown = Reflect.get(oidc, 'params');
  const name = client && typeof client === 'object' ? (Reflect.get(client, 'clientName') ?? Reflect.get(client, 'clientId')) : undefined;
  const redirect = params && typeof params === 'object' ? Reflect.get(params, 'post_logout_redirect_uri') : undefined;
  return {
    clientName: typeof name === 'string' && name ? name : undefined,
    postLogoutRedirectUri: typeof redirect === 'string' ? redirect : undefined,
  };
}

/**
 * oidc-provider's `logoutSource`. `form` is its own hidden form (action and
 * anti-forgery secret), included verbatim; the buttons submit it by id, so no
 * script is needed. The post-logout redirect URI was validated by the provider
 * before this runs; its origin is allowed as a form target because the
 * browser reaches it by redirect after the post.
 */
export function renderLogoutPage(ctx: Context, form: string, tenant: BrandSource): void {
  const { clientName, postLogoutRedirectUri } = logoutDetails(ctx);
  renderView(
    ctx,
    'logout',
    tenant,
    'Sign out',
    { logoutForm: form, clientName, displayName: tenant.displayName },
    { formActions: [formActionSource(postLogoutRedirectUri)] },
  );
}

/** oidc-provider's `postLogoutSuccessSource`. */
export function renderLogoutSuccess(ctx: Context, tenant: BrandSource): void {
  renderView(ctx, 'logout-success', tenant, 'Signed out', { clientName: logoutDetails(ctx).clientName });
}

// ---------------------------------------------------------------- account page

export interface AccountView {
  /** Absent when nobody is signed in to the tenant in this browser. */
  account?: { email: string; name?: string; roles: string[] };
  issuer: string;
  discoveryUrl: string;
  /** The sign-in start (signed out) or RP-initiated logout (signed in); plain links, so no form target is needed. */
  signInUrl: string;
  signOutUrl?: string;
  /** A fixed sentence about how the last sign-in ended; never text from the request. */
  notice?: string;
}

export function renderAccountPage(ctx: Context, tenant: BrandSource, view: AccountView): void {
  renderView(ctx, 'account', tenant, view.account ? 'Your account' : 'Sign in', view);
}
