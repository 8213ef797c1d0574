import { createHash, randomBytes } from 'node:crypto';

/**
 * Just enough of a browser to sign in through the hosted pages, lean enough
 * that the load driver is not what limits the measurement: cookies by path, redirects followed by
 * hand, the sign-in and consent forms read out of the HTML (hidden fields such
 * as `_csrf` included), then the code redeemed with its PKCE verifier.
 */

export interface SignInTarget {
  /** PUBLIC_URL: what forms' Origin must be. */
  publicUrl: string;
  /** The server process to send this sign-in to (its origin replaces PUBLIC_URL's in redirects). */
  baseUrl: string;
  slug: string;
  clientId: string;
  redirectUri: string;
}

export interface TokenResponse {
  access_token: string;
  refresh_token?: string;
  id_token?: string;
}

const MAX_STEPS = 12;
const TIMEOUT_MS = 30_000;

class CookieJar {
  private readonly cookies = new Map<string, { value: string; path: string }>();

  store(response: Response): void {
    for (const header of response.headers.getSetCookie()) {
      const [pair = '', ...attributes] = header.split(';');
      const eq = pair.indexOf('=');
      const name = pair.slice(0, eq).trim();
      const value = pair.slice(eq + 1).trim();
      const path =
        attributes
          .map((a) => a.trim())
          .find((a) => a.toLowerCase().startsWith('path='))
          ?.slice(5) || '/';
      const expired = value === '' || attributes.some((a) => /^\s*max-age=0\s*$/i.test(a));
      if (expired) this.cookies.delete(`${name};${path}`);
      else this.cookies.set(`${name};${path}`, { value, path });
    }
  }

  header(path: string): string {
    const parts: string[] = [];
    for (const [key, cookie] of this.cookies) {
      if (path === cookie.path || path.startsWith(cookie.path.endsWith('/') ? cookie.path : `${cookie.path}/`)) {
        parts.push(`${key.slice(0, key.indexOf(';'))}=${cookie.value}`);
      }
    }
    return parts.join('; ');
  }
}

interface Form {
  action: string;
  fields: Record<string, string>;
}

const unescapeHtml = (text: string) =>
  text
    .replace(/&quot;/g, '"')
    .replace(/&#39;/g, "'")
    .replace(/&lt;/g, '<')
    .replace(/&gt;/g, '>')
    .replace(/&amp;/g, '&');

/** The form posting to `…suffix` and its named inputs' values. */
function findForm(html: string, suffix: string): Form | undefined {
  for (const match of html.matchAll(/<form\b([^>]*)>([\s\S]*?)<\/form>/g)) {
    const action = unescapeHtml(/\baction="([^"]*)"/.exec(match[1] ?? '')?.[1] ?? '');
    if (!action.endsWith(suffix)) continue;
    const fields: Record<string, string> = {};
    for (const input of (match[2] ?? '').matchAll(/<input\b([^>]*)>/g)) {
      const name = /\bname="([^"]*)"/.exec(input[1] ?? '')?.[1];
      if (name) fields[unescapeHtml(name)] = unescapeHtml(/\bvalue="([^"]*)"/.exec(input[1] ?? '')?.[1] ?? '');
    }
    return { action, fields };
  }
  return undefined;
}

function pkce(): { verifier: string; challenge: string } {
  const verifier = randomBytes(32).toString('base64url');
  return { verifier, challenge: createHash('sha256').update(verifier).digest('base64url') };
}

class SignInBrowser {
  private readonly jar = new CookieJar();

  constructor(private readonly target: SignInTarget) {}

  /** Same path on the chosen process, whichever origin the server wrote. */
  private resolve(location: string, current: URL): URL {
    const url = new URL(location, current);
    return new URL(`${url.pathname}${url.search}`, this.target.baseUrl);
  }

  async request(url: URL, form?: Record<string, string>): Promise<Response> {
    const headers: Record<string, string> = { accept: 'text/html', 'user-agent': 'idp-bench/1.0' };
    const cookie = this.jar.header(url.pathname);
    if (cookie) headers.cookie = cookie;
    let body: string | undefined;
    if (form) {
      headers['content-type'] = 'application/x-www-form-urlencoded';
      headers.origin = this.target.publicUrl;
      body = new URLSearchParams(form).toString();
    }
    const response = await fetch(url, {
      method: form ? 'POST' : 'GET',
      headers,
      body,
      redirect: 'manual',
      signal: AbortSignal.timeout(TIMEOUT_MS),
    });
    this.jar.store(response);
    return response;
  }

  /** Follows redirects and fills the sign-in (then, if asked, consent) form until the client's redirect URI; returns the code. */
  async authorize(start: URL, credentials: { email: string; password: string }): Promise<string> {
    let url = start;
    let response = await this.request(url);
    let signedIn = false;
    for (let step = 0; step < MAX_STEPS; step++) {
      const location = response.headers.get('location');
      if (response.status >= 300 && response.status < 400 && location) {
        await response.body?.cancel();
        if (location.startsWith(this.target.redirectUri)) return codeFrom(new URL(location));
        url = this.resolve(location, url);
        response = await this.request(url);
        continue;
      }
      const html = await response.text();
      if (response.status !== 200) throw new Error(`sign-in stopped at ${response.status} ${url.pathname}: ${html.slice(0, 300)}`);
      const login: Form | undefined = signedIn ? undefined : findForm(html, '/login');
      const form = login ?? findForm(html, '/confirm');
      if (!form) throw new Error(`no sign-in or consent form at ${url.pathname}`);
      signedIn ||= login !== undefined;
      url = this.resolve(form.action, url);
      response = await this.request(url, login ? { ...form.fields, ...credentials } : form.fields);
    }
    throw new Error(`more than ${MAX_STEPS} steps to sign in`);
  }
}

function codeFrom(callback: URL): string {
  const code = callback.searchParams.get('code');
  if (!code) throw new Error(`the client was called back without a code: ${callback.search}`);
  return code;
}

async function redeem(target: SignInTarget, code: string, verifier: string): Promise<TokenResponse> {
  const response = await fetch(`${target.baseUrl}/t/${target.slug}/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({
      grant_type: 'authorization_code',
      code,
      redirect_uri: target.redirectUri,
      code_verifier: verifier,
      client_id: target.clientId,
    }).toString(),
    signal: AbortSignal.timeout(TIMEOUT_MS),
  });
  const body = (await response.json()) as TokenResponse & { error?: string };
  if (!response.ok || !body.access_token) throw new Error(`code redemption failed: ${response.status} ${JSON.stringify(body)}`);
  return body;
}

/**
 * authorize (code + PKCE S256) → sign-in form → (consent form) → code → token.
 * `offline` asks for a refresh token (offline_access needs prompt=consent).
 */
export async function signIn(
  target: SignInTarget,
  credentials: { email: string; password: string },
  offline = false,
): Promise<TokenResponse> {
  const { verifier, challenge } = pkce();
  const start = new URL(`/t/${target.slug}/auth`, target.baseUrl);
  start.search = new URLSearchParams({
    client_id: target.clientId,
    response_type: 'code',
    redirect_uri: target.redirectUri,
    scope: offline ? 'openid email offline_access' : 'openid email',
    state: randomBytes(12).toString('base64url'),
    nonce: randomBytes(12).toString('base64url'),
    code_challenge: challenge,
    code_challenge_method: 'S256',
    ...(offline ? { prompt: 'consent' } : {}),
  }).toString();
  const code = await new SignInBrowser(target).authorize(start, credentials);
  return redeem(target, code, verifier);
}
