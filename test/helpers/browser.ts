/**
 * Just enough of a browser to drive the hosted pages over HTTP: a cookie jar
 * that honours Path, Max-Age and Expires, redirects followed by hand (so a test
 * can stop at the client's redirect URI), and form helpers that read the
 * fields out of the server-rendered HTML. No JavaScript, like our pages.
 */

interface StoredCookie {
  name: string;
  value: string;
  path: string;
  expiresAt?: number;
}

export interface BrowserResponse {
  status: number;
  url: string;
  location?: string;
  headers: Headers;
  text: string;
}

function parseSetCookie(header: string, requestPath: string): StoredCookie {
  const [pair = '', ...attributes] = header.split(';').map((part) => part.trim());
  const eq = pair.indexOf('=');
  const cookie: StoredCookie = { name: pair.slice(0, eq), value: pair.slice(eq + 1), path: defaultPath(requestPath) };
  for (const attribute of attributes) {
    const [key = '', ...rest] = attribute.split('=');
    const value = rest.join('=');
    switch (key.toLowerCase()) {
      case 'path':
        cookie.path = value || '/';
        break;
      case 'max-age':
        cookie.expiresAt = Date.now() + Number(value) * 1000;
        break;
      case 'expires':
        cookie.expiresAt ??= Date.parse(value);
        break;
    }
  }
  return cookie;
}

/** RFC 6265 5.1.4: the directory of the request path. */
function defaultPath(path: string): string {
  const slash = path.lastIndexOf('/');
  return slash <= 0 ? '/' : path.slice(0, slash);
}

function pathMatches(requestPath: string, cookiePath: string): boolean {
  if (requestPath === cookiePath) return true;
  if (!requestPath.startsWith(cookiePath)) return false;
  return cookiePath.endsWith('/') || requestPath.charAt(cookiePath.length) === '/';
}

export class Browser {
  private readonly cookies = new Map<string, StoredCookie>();

  constructor(readonly origin: string) {}

  /** Cookies this browser would send to `path`, most specific path first (as browsers order them). */
  cookiesFor(path: string): StoredCookie[] {
    const now = Date.now();
    return [...this.cookies.values()]
      .filter((cookie) => (cookie.expiresAt === undefined || cookie.expiresAt > now) && pathMatches(path, cookie.path))
      .sort((a, b) => b.path.length - a.path.length);
  }

  cookie(name: string): string | undefined {
    return [...this.cookies.values()].find((cookie) => cookie.name === name)?.value;
  }

  private store(response: Response, path: string): void {
    for (const header of response.headers.getSetCookie()) {
      const cookie = parseSetCookie(header, path);
      const key = `${cookie.name}|${cookie.path}`;
      if (!cookie.value || (cookie.expiresAt !== undefined && cookie.expiresAt <= Date.now())) this.cookies.delete(key);
      else this.cookies.set(key, cookie);
    }
  }

  async request(url: string, init: { method?: string; form?: Record<string, string> } = {}): Promise<BrowserResponse> {
    const target = new URL(url, this.origin);
    const headers: Record<string, string> = { 'User-Agent': 'idp-test-browser/1.0', Accept: 'text/html' };
    const cookies = this.cookiesFor(target.pathname);
    if (cookies.length) headers.Cookie = cookies.map((cookie) => `${cookie.name}=${cookie.value}`).join('; ');
    let body: string | undefined;
    if (init.form) {
      headers['Content-Type'] = 'application/x-www-form-urlencoded';
      // Our pages send `Referrer-Policy: same-origin`, so a browser names its origin on their posts.
      headers.Origin = this.origin;
      body = new URLSearchParams(init.form).toString();
    }
    const response = await fetch(target, { method: init.method ?? (init.form ? 'POST' : 'GET'), headers, body, redirect: 'manual' });
    this.store(response, target.pathname);
    const location = response.headers.get('location') ?? undefined;
    return {
      status: response.status,
      url: target.toString(),
      location: location ? new URL(location, target).toString() : undefined,
      headers: response.headers,
      text: await response.text(),
    };
  }

  /** Follows redirects until a page answers, or until the next hop starts with `stopAt` (the client's redirect URI). */
  async follow(url: string, stopAt?: string, init: { method?: string; form?: Record<string, string> } = {}): Promise<BrowserResponse> {
    let response = await this.request(url, init);
    for (let hops = 0; hops < 10 && response.location && response.status >= 300 && response.status < 400; hops += 1) {
      if (stopAt && response.location.startsWith(stopAt)) return response;
      response = await this.request(response.location);
    }
    return response;
  }

  /** Submits the form whose action ends with `actionSuffix`, with its hidden fields and `fields`. */
  submit(page: BrowserResponse, actionSuffix: string, fields: Record<string, string> = {}, stopAt?: string): Promise<BrowserResponse> {
    const form = findForm(page.text, actionSuffix);
    return this.follow(new URL(form.action, page.url).toString(), stopAt, { form: { ...form.hidden, ...fields } });
  }
}

const decode = (value: string) =>
  value
    .replace(/&quot;/g, '"')
    .replace(/&#39;/g, "'")
    .replace(/&lt;/g, '<')
    .replace(/&gt;/g, '>')
    .replace(/&amp;/g, '&');

/** The action and hidden inputs of the form posting to `...actionSuffix` in server-rendered HTML. */
export function findForm(html: string, actionSuffix: string): { action: string; hidden: Record<string, string> } {
  for (const match of html.matchAll(/<form\b([^>]*)>([\s\S]*?)<\/form>/g)) {
    const action = decode(/\baction="([^"]*)"/.exec(match[1] ?? '')?.[1] ?? '');
    if (!action.endsWith(actionSuffix)) continue;
    const hidden: Record<string, string> = {};
    for (const input of (match[2] ?? '').matchAll(/<input\b([^>]*)>/g)) {
      const attrs = input[1] ?? '';
      if (!/\btype="hidden"/.test(attrs)) continue;
      const name = /\bname="([^"]*)"/.exec(attrs)?.[1];
      if (name) hidden[decode(name)] = decode(/\bvalue="([^"]*)"/.exec(attrs)?.[1] ?? '');
    }
    return { action, hidden };
  }
  throw new Error(`no form posting to …${actionSuffix} in:\n${html.slice(0, 2000)}`);
}
