import { randomBytes } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import * as oidc from 'openid-client';

/**
 * A tiny relying party for the browser tests, as a real application would be
 * written with openid-client: `/login` starts the authorization code flow with
 * PKCE, state and nonce; `/callback` redeems the code and shows who signed
 * in; `/logout` starts RP-initiated logout; `/signed-out` is where the
 * provider sends the browser afterwards. It keeps its pending requests in
 * memory by state (one process, loopback only) and its signed-in user in a
 * cookie of its own.
 */

export interface RpApp {
  url: string;
  redirectUri: string;
  postLogoutRedirectUri: string;
  /** Registers a client the app can sign in with, by name (`/login?app=<name>`). */
  use(name: string, config: oidc.Configuration): void;
  close(): Promise<void>;
}

interface Pending {
  app: string;
  codeVerifier: string;
  nonce: string;
}

interface SignedIn {
  app: string;
  idToken: string;
}

const escapeHtml = (value: unknown) =>
  String(value).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c] ?? c);

const page = (title: string, body: string) =>
  `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>${escapeHtml(title)}</title></head><body><h1>${escapeHtml(title)}</h1>${body}</body></html>`;

export async function startRpApp(): Promise<RpApp> {
  const configs = new Map<string, oidc.Configuration>();
  const pending = new Map<string, Pending>();
  const sessions = new Map<string, SignedIn>();
  let base = '';

  const server: Server = createServer((req, res) => {
    const send = (status: number, html: string, headers: Record<string, string> = {}) => {
      res.writeHead(status, { 'content-type': 'text/html; charset=utf-8', ...headers });
      res.end(html);
    };
    const redirect = (location: string, headers: Record<string, string> = {}) => {
      res.writeHead(302, { location, ...headers });
      res.end();
    };
    const url = new URL(req.url ?? '/', base);
    const sessionId = /(?:^|;\s*)rp_session=([^;]+)/.exec(req.headers.cookie ?? '')?.[1];
    const handle = async () => {
      if (url.pathname === '/login') {
        const app = url.searchParams.get('app') ?? 'web';
        const config = configs.get(app);
        if (!config) return send(404, page('Unknown app', ''));
        const codeVerifier = oidc.randomPKCECodeVerifier();
        const state = oidc.randomState();
        const nonce = oidc.randomNonce();
        pending.set(state, { app, codeVerifier, nonce });
        const authorizationUrl = oidc.buildAuthorizationUrl(config, {
          redirect_uri: `${base}/callback`,
          scope: 'openid email profile',
          code_challenge: await oidc.calculatePKCECodeChallenge(codeVerifier),
          code_challenge_method: 'S256',
          state,
          nonce,
        });
        return redirect(authorizationUrl.href);
      }
      if (url.pathname === '/callback') {
        const state = url.searchParams.get('state') ?? '';
        const started = pending.get(state);
        const config = started && configs.get(started.app);
        if (!started || !config)
          return send(400, page('Unknown sign-in', `<p id="error">${escapeHtml(url.searchParams.get('error'))}</p>`));
        pending.delete(state);
        const tokens = await oidc.authorizationCodeGrant(config, url, {
          pkceCodeVerifier: started.codeVerifier,
          expectedState: state,
          expectedNonce: started.nonce,
        });
        const claims = tokens.claims();
        const id = randomBytes(16).toString('hex');
        sessions.set(id, { app: started.app, idToken: tokens.id_token ?? '' });
        return send(
          200,
          page(
            'Signed in to the test app',
            `<p>Signed in as <strong id="email">${escapeHtml(claims?.email)}</strong></p>` +
              `<p>Authentication methods: <span id="amr">${escapeHtml(Array.isArray(claims?.amr) ? claims.amr.join(' ') : '')}</span></p>` +
              '<p><a id="sign-out" href="/logout">Sign out</a></p>',
          ),
          { 'set-cookie': `rp_session=${id}; Path=/; HttpOnly; SameSite=Lax` },
        );
      }
      if (url.pathname === '/logout') {
        const session = sessionId ? sessions.get(sessionId) : undefined;
        const config = session && configs.get(session.app);
        if (!session || !config) return redirect('/signed-out');
        if (sessionId) sessions.delete(sessionId);
        const endSession = oidc.buildEndSessionUrl(config, {
          id_token_hint: session.idToken,
          post_logout_redirect_uri: `${base}/signed-out`,
        });
        return redirect(endSession.href, { 'set-cookie': 'rp_session=; Path=/; Max-Age=0' });
      }
      if (url.pathname === '/signed-out')
        return send(200, page('Signed out of the test app', '<p id="signed-out">You are signed out.</p>'));
      return send(404, page('Not found', ''));
    };
    handle().catch((error: unknown) => send(500, page('The test app failed', `<pre id="error">${escapeHtml(String(error))}</pre>`)));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  base = `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`;
  return {
    url: base,
    redirectUri: `${base}/callback`,
    postLogoutRedirectUri: `${base}/signed-out`,
    use: (name, config) => {
      configs.set(name, config);
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
