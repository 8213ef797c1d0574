import * as oidc from 'openid-client';
import { type ClientInput, type CreatedClient, createClient } from '../../src/oidc/clients.js';
import type { Prisma } from '../../src/store/db.js';
import { createTenant, onTenantChange, publishTenantChange, type TenantChange } from '../../src/tenants/tenants.js';
import { createUser } from '../../src/users/users.js';
import type { TestApp } from './app.js';

/** A client created for a test, with the tenant it belongs to. */
export interface TenantClient extends CreatedClient {
  tenantId: string;
  slug: string;
}

export async function tenantIdOf(t: TestApp, slug = 'default'): Promise<string> {
  return (await t.deps.db.prisma.tenant.findUniqueOrThrow({ where: { slug }, select: { id: true } })).id;
}

/**
 * publishTenantChange, resolved once the message came back to this node. The
 * store calls a channel's handlers in the order they subscribed, so by then the
 * app's own handlers (subscribed when it was built) have dropped their caches.
 */
export async function announce(t: TestApp, change: TenantChange): Promise<void> {
  let delivered: () => void = () => {};
  const arrived = new Promise<void>((resolve) => {
    delivered = resolve;
  });
  const unsubscribe = await onTenantChange(t.deps.kv, (seen) => {
    if (seen.tenantId === change.tenantId && seen.what === change.what) delivered();
  });
  try {
    await publishTenantChange(t.deps.kv, change);
    await arrived;
  } finally {
    await unsubscribe();
  }
}

/**
 * createClient for tenant `slug`, then what the CLI does after it: announce the
 * change so the tenant's provider is rebuilt (its supported scopes come from its
 * clients).
 */
export async function createTenantClient(t: TestApp, input: ClientInput, slug = 'default'): Promise<TenantClient> {
  const tenantId = await tenantIdOf(t, slug);
  const created = await createClient({ prisma: t.deps.db.prisma, audit: t.deps.audit }, tenantId, input, { type: 'system' });
  await announce(t, { tenantId, slug, what: 'clients' });
  return { ...created, tenantId, slug };
}

/**
 * Raises the tenant's per-IP limits of the token endpoint and the sign-in form
 * (tenant settings `rateLimits`): every request of a suite comes from
 * 127.0.0.1, and protocol suites exercise the endpoints, not the limiter.
 */
export async function relaxRateLimits(t: TestApp, slug = 'default'): Promise<void> {
  const tenant = await t.deps.db.prisma.tenant.findUniqueOrThrow({ where: { slug } });
  const settings = (tenant.settings ?? {}) as Prisma.InputJsonObject;
  await t.deps.db.prisma.tenant.update({
    where: { id: tenant.id },
    data: { settings: { ...settings, rateLimits: { tokenPerMinute: 100_000, signInPerMinute: 10_000 } } },
  });
  await announce(t, { tenantId: tenant.id, slug, what: 'tenant' });
}

/** A second tenant with one user, optionally with settings (signing algorithms, say). */
export async function createTenantWithUser(
  t: TestApp,
  slug: string,
  user: { email: string; password: string; roles?: string[] },
  settings?: Prisma.InputJsonObject,
): Promise<{ tenantId: string; userId: string }> {
  const tenant = await createTenant({ prisma: t.deps.db.prisma, audit: t.deps.audit }, { slug }, { type: 'system' });
  if (settings) await t.deps.db.prisma.tenant.update({ where: { id: tenant.id }, data: { settings } });
  const created = await createUser({ prisma: t.deps.db.prisma, audit: t.deps.audit, passwords: t.deps.passwords }, tenant.id, user, {
    type: 'system',
  });
  await announce(t, { tenantId: tenant.id, slug, what: 'tenant' });
  return { tenantId: tenant.id, userId: created.id };
}

/** openid-client's view of `client`, from discovery; plain http is allowed because the test server has no TLS. */
export async function rpConfig(
  issuer: string,
  client: Pick<CreatedClient, 'clientId' | 'clientSecret' | 'metadata'>,
  metadata: Partial<oidc.ClientMetadata> = {},
): Promise<oidc.Configuration> {
  const method = client.metadata.token_endpoint_auth_method;
  const auth =
    method === 'none'
      ? oidc.None()
      : method === 'client_secret_post'
        ? oidc.ClientSecretPost(client.clientSecret)
        : oidc.ClientSecretBasic(client.clientSecret);
  const { id_token_signed_response_alg: idTokenAlg, redirect_uris: redirectUris } = client.metadata;
  const known: Partial<oidc.ClientMetadata> = {
    ...(typeof idTokenAlg === 'string' ? { id_token_signed_response_alg: idTokenAlg } : {}),
    ...(Array.isArray(redirectUris) ? { redirect_uris: redirectUris.map(String) } : {}),
  };
  return oidc.discovery(new URL(issuer), client.clientId, { ...known, ...metadata }, auth, { execute: [oidc.allowInsecureRequests] });
}

// ---------------------------------------------------------------- a cookie-keeping browser without JavaScript

interface StoredCookie {
  name: string;
  value: string;
  path: string;
}

/** Cookies of one origin, scoped by Path as a browser scopes them (RFC 6265 §5.1.4). */
export class CookieJar {
  private readonly cookies = new Map<string, StoredCookie>();

  store(setCookies: string[], requestUrl: URL): void {
    for (const header of setCookies) {
      const [pair = '', ...attributes] = header.split(';');
      const eq = pair.indexOf('=');
      if (eq <= 0) continue;
      const name = pair.slice(0, eq).trim();
      const value = pair.slice(eq + 1).trim();
      let path = defaultPath(requestUrl);
      let expired = value === '';
      for (const attribute of attributes) {
        const [key = '', ...rest] = attribute.split('=');
        const attributeValue = rest.join('=').trim();
        const lower = key.trim().toLowerCase();
        if (lower === 'path' && attributeValue.startsWith('/')) path = attributeValue;
        if (lower === 'max-age' && Number(attributeValue) <= 0) expired = true;
        if (lower === 'expires' && Date.parse(attributeValue) <= Date.now()) expired = true;
      }
      const key = `${name}\0${path}`;
      if (expired) this.cookies.delete(key);
      else this.cookies.set(key, { name, value, path });
    }
  }

  header(url: URL): string {
    return [...this.cookies.values()]
      .filter((cookie) => pathMatches(url.pathname, cookie.path))
      .sort((a, b) => b.path.length - a.path.length)
      .map((cookie) => `${cookie.name}=${cookie.value}`)
      .join('; ');
  }

  names(url: URL): string[] {
    return [...this.cookies.values()].filter((cookie) => pathMatches(url.pathname, cookie.path)).map((cookie) => cookie.name);
  }

  clone(): CookieJar {
    const copy = new CookieJar();
    for (const [key, cookie] of this.cookies) copy.cookies.set(key, { ...cookie });
    return copy;
  }
}

function defaultPath(url: URL): string {
  const slash = url.pathname.lastIndexOf('/');
  return slash <= 0 ? '/' : url.pathname.slice(0, slash);
}

function pathMatches(requestPath: string, cookiePath: string): boolean {
  if (requestPath === cookiePath) return true;
  if (!requestPath.startsWith(cookiePath)) return false;
  return cookiePath.endsWith('/') || requestPath.charAt(cookiePath.length) === '/';
}

export interface HtmlForm {
  id?: string;
  action: string;
  method: string;
  /** Named inputs with their values (hidden fields and pre-filled ones). */
  fields: Record<string, string>;
}

const ENTITIES: Record<string, string> = { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'", '#39': "'", '#x27': "'", '#x2F': '/' };

function decodeEntities(text: string): string {
  return text.replace(/&(#x?[0-9a-f]+|[a-z]+);/gi, (whole, entity: string) => {
    const named = ENTITIES[entity] ?? ENTITIES[entity.toLowerCase()];
    if (named) return named;
    if (entity.startsWith('#x') || entity.startsWith('#X')) return String.fromCodePoint(Number.parseInt(entity.slice(2), 16));
    if (entity.startsWith('#')) return String.fromCodePoint(Number.parseInt(entity.slice(1), 10));
    return whole;
  });
}

function attributesOf(tag: string): Record<string, string> {
  const attributes: Record<string, string> = {};
  for (const match of tag.matchAll(/([a-zA-Z_:][-a-zA-Z0-9_:.]*)(?:\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'=<>`]+)))?/g)) {
    const [, name = '', doubleQuoted, singleQuoted, bare] = match;
    attributes[name.toLowerCase()] = decodeEntities(doubleQuoted ?? singleQuoted ?? bare ?? '');
  }
  return attributes;
}

/** The forms of a page: enough of HTML for pug's and oidc-provider's own markup, which is all a test meets. */
export function parseForms(html: string): HtmlForm[] {
  const forms: HtmlForm[] = [];
  for (const match of html.matchAll(/<form\b([^>]*)>([\s\S]*?)<\/form>/gi)) {
    const attributes = attributesOf((match[1] ?? '').trim());
    const fields: Record<string, string> = {};
    for (const input of (match[2] ?? '').matchAll(/<input\b([^>]*)>/gi)) {
      const inputAttributes = attributesOf((input[1] ?? '').replace(/\/$/, ''));
      if (inputAttributes.name) fields[inputAttributes.name] = inputAttributes.value ?? '';
    }
    forms.push({ id: attributes.id, action: attributes.action ?? '', method: (attributes.method ?? 'get').toLowerCase(), fields });
  }
  return forms;
}

/** The result of following a navigation: a redirect leaving our server, or the page it ended on. */
export type Outcome = { kind: 'redirect'; url: URL } | { kind: 'page'; url: URL; status: number; html: string };

export interface Credentials {
  email: string;
  password: string;
}

export interface FollowOptions {
  /** Typed into the sign-in form when it shows up (once; a second sign-in form is returned as the page). */
  credentials?: Credentials;
  /** Press "Allow" on a consent page (default true). */
  consent?: boolean;
}

const MAX_STEPS = 20;

/**
 * A browser without JavaScript: fetch with manual redirects and a cookie jar,
 * bound to the server under test. It never requests another origin: a redirect
 * elsewhere (the client's redirect_uri) ends the navigation.
 */
export class Browser {
  readonly jar: CookieJar;

  constructor(
    readonly origin: string,
    jar?: CookieJar,
  ) {
    this.jar = jar ?? new CookieJar();
  }

  /** A second browser with a copy of this one's cookies (the same session, diverging from here on). */
  fork(): Browser {
    return new Browser(this.origin, this.jar.clone());
  }

  async request(url: URL, init: { method?: string; form?: Record<string, string> } = {}): Promise<Response> {
    const headers: Record<string, string> = {};
    const cookie = this.jar.header(url);
    if (cookie) headers.cookie = cookie;
    let body: string | undefined;
    if (init.form) {
      headers['content-type'] = 'application/x-www-form-urlencoded';
      // What a browser sends on a form post from one of our pages.
      headers.origin = this.origin;
      body = new URLSearchParams(init.form).toString();
    }
    const response = await fetch(url, { method: init.method ?? (init.form ? 'POST' : 'GET'), headers, body, redirect: 'manual' });
    this.jar.store(response.headers.getSetCookie(), url);
    return response;
  }

  /** Loads `start` and follows redirects and our forms (sign-in, consent) until a redirect leaves the server or a page stays. */
  async follow(start: URL | string, options: FollowOptions = {}): Promise<Outcome> {
    let url = new URL(start);
    let response = await this.request(url);
    let signedIn = false;
    for (let step = 0; step < MAX_STEPS; step++) {
      const location = response.headers.get('location');
      if (response.status >= 300 && response.status < 400 && location) {
        await response.body?.cancel();
        url = new URL(location, url);
        if (url.origin !== this.origin) return { kind: 'redirect', url };
        response = await this.request(url);
        continue;
      }
      const html = await response.text();
      const page: Outcome = { kind: 'page', url, status: response.status, html };
      if (response.status !== 200) return page;
      const forms = parseForms(html);
      // The hosted pages' forms post to /interaction/<uid>/login and …/confirm (oidc-provider's logout form ends in /confirm too).
      const login = forms.find((form) => /\/interaction\/[^/]+\/login$/.test(form.action));
      const confirm = forms.find((form) => /\/interaction\/[^/]+\/confirm$/.test(form.action));
      if (login && options.credentials && !signedIn) {
        signedIn = true;
        url = new URL(login.action, url);
        response = await this.request(url, { form: { ...login.fields, ...options.credentials } });
        continue;
      }
      if (confirm && options.consent !== false) {
        url = new URL(confirm.action, url);
        response = await this.request(url, { form: confirm.fields });
        continue;
      }
      return page;
    }
    throw new Error(`more than ${MAX_STEPS} steps from ${String(start)}`);
  }

  /** Submits a form of a page, then follows like `follow`. */
  async submit(pageUrl: URL, form: HtmlForm, extra: Record<string, string> = {}, options: FollowOptions = {}): Promise<Outcome> {
    const url = new URL(form.action, pageUrl);
    const response = await this.request(url, { form: { ...form.fields, ...extra } });
    const location = response.headers.get('location');
    if (response.status >= 300 && response.status < 400 && location) {
      await response.body?.cancel();
      const next = new URL(location, url);
      if (next.origin !== this.origin) return { kind: 'redirect', url: next };
      return this.follow(next, options);
    }
    return { kind: 'page', url, status: response.status, html: await response.text() };
  }
}

// ---------------------------------------------------------------- the authorization code flow

export interface AuthorizationRequest {
  url: URL;
  codeVerifier: string;
  state: string;
  nonce: string;
  redirectUri: string;
}

export interface AuthorizeOptions {
  redirectUri?: string;
  scope?: string;
  /** Added to (or, when a value is null, removed from) the authorization request. */
  extraParams?: Record<string, string | null>;
}

/** An authorization request with PKCE (S256), state and nonce, built by openid-client. */
export async function authorizationRequest(config: oidc.Configuration, options: AuthorizeOptions = {}): Promise<AuthorizationRequest> {
  const redirectUri = options.redirectUri ?? firstRedirectUri(config);
  const codeVerifier = oidc.randomPKCECodeVerifier();
  const state = oidc.randomState();
  const nonce = oidc.randomNonce();
  const params: Record<string, string> = {
    redirect_uri: redirectUri,
    scope: options.scope ?? 'openid email profile',
    code_challenge: await oidc.calculatePKCECodeChallenge(codeVerifier),
    code_challenge_method: 'S256',
    state,
    nonce,
  };
  const url = oidc.buildAuthorizationUrl(config, params);
  for (const [name, value] of Object.entries(options.extraParams ?? {})) {
    if (value === null) url.searchParams.delete(name);
    else url.searchParams.set(name, value);
  }
  return { url, codeVerifier, state, nonce, redirectUri };
}

function firstRedirectUri(config: oidc.Configuration): string {
  const uris = config.clientMetadata().redirect_uris;
  const first = Array.isArray(uris) ? uris[0] : undefined;
  if (typeof first === 'string') return first;
  throw new Error('pass redirectUri: the client metadata given to openid-client names none');
}

export interface SignInOptions extends AuthorizeOptions {
  email?: string;
  password?: string;
  /** Reuse a browser (and its session): no sign-in form then appears for a signed-in user. */
  browser?: Browser;
  consent?: boolean;
}

export interface SignInResult {
  tokens: Awaited<ReturnType<typeof oidc.authorizationCodeGrant>>;
  callbackUrl: URL;
  browser: Browser;
  request: AuthorizationRequest;
}

/** Runs the browser part of the code flow and returns the redirect to the client's redirect_uri (not yet redeemed). */
export async function authorize(
  issuerUrl: string,
  config: oidc.Configuration,
  options: SignInOptions = {},
): Promise<{ callbackUrl: URL; browser: Browser; request: AuthorizationRequest }> {
  const browser = options.browser ?? new Browser(new URL(issuerUrl).origin);
  const request = await authorizationRequest(config, options);
  const credentials =
    options.email !== undefined && options.password !== undefined ? { email: options.email, password: options.password } : undefined;
  const outcome = await browser.follow(request.url, { credentials, consent: options.consent });
  if (outcome.kind !== 'redirect' || !outcome.url.href.startsWith(request.redirectUri)) {
    const detail =
      outcome.kind === 'page' ? `${outcome.status} page at ${outcome.url.pathname}: ${textOf(outcome.html)}` : outcome.url.href;
    throw new Error(`the authorization did not come back to ${request.redirectUri}: ${detail}`);
  }
  return { callbackUrl: outcome.url, browser, request };
}

/** A real code + PKCE flow through the hosted HTML pages, redeemed by openid-client. */
export async function signIn(issuerUrl: string, config: oidc.Configuration, options: SignInOptions = {}): Promise<SignInResult> {
  const { callbackUrl, browser, request } = await authorize(issuerUrl, config, options);
  const tokens = await oidc.authorizationCodeGrant(config, callbackUrl, {
    pkceCodeVerifier: request.codeVerifier,
    expectedState: request.state,
    expectedNonce: request.nonce,
  });
  return { tokens, callbackUrl, browser, request };
}

/** The visible text of a page, for assertion messages. */
export function textOf(html: string): string {
  return decodeEntities(
    html
      .replace(/<(script|style)[\s\S]*?<\/\1>/gi, ' ')
      .replace(/<[^>]+>/g, ' ')
      .replace(/\s+/g, ' '),
  )
    .trim()
    .slice(0, 500);
}

/** A stack frame or a source path in a response body means internals leaked. */
export const LEAK_PATTERNS: readonly RegExp[] = [
  /\n\s*at\s+\S/,
  /\bat\s+\S+\s+\([^)]*:\d+:\d+\)/,
  /node_modules/,
  /\/work\//,
  /\.(ts|js|mjs):\d+/,
  /\bsrc\/oidc\//,
];

export function leaksInternals(body: string): boolean {
  return LEAK_PATTERNS.some((pattern) => pattern.test(body));
}
