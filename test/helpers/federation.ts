import { createServer, type Server } from 'node:http';
import { exportJWK, generateKeyPair } from 'jose';
import Provider from 'oidc-provider';
import type * as oidc from 'openid-client';
import { expect } from 'vitest';
import type { TestApp } from './app.js';
import { type AuthorizationRequest, authorizationRequest, Browser, type Outcome, parseForms } from './oidc.js';
import type { ResponseOptions, SamlIdp, SamlUser } from './saml-idp.js';

/**
 * Driving federated sign-ins in tests: from the client's authorization
 * request through our login page to the upstream and back, with the upstream
 * played by samlify (saml-idp.ts) or by a second oidc-provider (below).
 */

/** Starts the code flow and presses "Sign in with <connection>" (or submits `email` for home-realm discovery). */
export async function startSso(
  config: oidc.Configuration,
  origin: string,
  choice: { connectionId: string } | { email: string },
  browser = new Browser(origin),
): Promise<{ browser: Browser; request: AuthorizationRequest; upstream: Outcome }> {
  const request = await authorizationRequest(config);
  const page = await browser.follow(request.url);
  if (page.kind !== 'page') throw new Error(`expected the login page, got a redirect to ${page.url.href}`);
  const forms = parseForms(page.html).filter((form) => form.action.endsWith('/sso'));
  const form =
    'connectionId' in choice ? forms.find((f) => f.fields.connection === choice.connectionId) : forms.find((f) => 'email' in f.fields);
  if (!form) throw new Error(`no single sign-on form on the login page:\n${page.html.slice(0, 3000)}`);
  const extra: Record<string, string> = 'email' in choice ? { email: choice.email } : {};
  const upstream = await browser.submit(page.url, form, extra);
  return { browser, request, upstream };
}

export function upstreamUrl(outcome: Outcome): string {
  if (outcome.kind !== 'redirect')
    throw new Error(`expected a redirect to the upstream, got a ${outcome.status} page: ${outcome.html.slice(0, 500)}`);
  return outcome.url.href;
}

/** Posts a SAML Response (XML text) to our ACS the way the IdP's auto-post page would, then follows our redirects. */
export async function postToAcs(browser: Browser, acsUrl: string, xml: string, relayState: string): Promise<Outcome> {
  const response = await browser.request(new URL(acsUrl), {
    form: { SAMLResponse: Buffer.from(xml, 'utf8').toString('base64'), RelayState: relayState },
  });
  const location = response.headers.get('location');
  if (response.status >= 300 && response.status < 400 && location) {
    await response.body?.cancel();
    return browser.follow(new URL(location, acsUrl));
  }
  return { kind: 'page', url: new URL(acsUrl), status: response.status, html: await response.text() };
}

export interface SamlSignIn {
  outcome: Outcome;
  browser: Browser;
  request: AuthorizationRequest;
  xml: string;
  relayState: string;
  acsUrl: string;
  authnRequestUrl: string;
}

/** A whole SAML sign-in: SSO button, samlify's response (optionally changed by `tamper`), ACS, our redirects. */
export async function samlSignIn(
  t: TestApp,
  config: oidc.Configuration,
  idp: SamlIdp,
  connectionId: string,
  user: SamlUser,
  options: Pick<ResponseOptions, 'encrypt' | 'signResponse' | 'override' | 'signingKey' | 'assertionUnsigned'> & {
    tamper?: (xml: string) => string;
    /** The IdP's clock (default: the app's). */
    now?: number;
    /** Runs between the IdP's answer and its arrival at our ACS (move the clock there). */
    beforePost?: () => void | Promise<void>;
  } = {},
): Promise<SamlSignIn> {
  const { browser, request, upstream } = await startSso(config, t.url, { connectionId });
  const authnRequestUrl = upstreamUrl(upstream);
  const spMetadata = await (await fetch(`${t.url}/t/default/federation/saml/${connectionId}/metadata`)).text();
  const response = await idp.respond({
    authnRequestUrl,
    spMetadata,
    user,
    now: options.now ?? t.deps.clock.now(),
    encrypt: options.encrypt,
    signResponse: options.signResponse,
    override: options.override,
    signingKey: options.signingKey,
    assertionUnsigned: options.assertionUnsigned,
  });
  const xml = options.tamper ? options.tamper(response.xml) : response.xml;
  await options.beforePost?.();
  const outcome = await postToAcs(browser, response.request.acsUrl, xml, response.request.relayState);
  return { outcome, browser, request, xml, relayState: response.request.relayState, acsUrl: response.request.acsUrl, authnRequestUrl };
}

/** The audit events of `action` in the tenant, oldest first. */
export async function auditEvents(t: TestApp, action: string) {
  return t.deps.db.prisma.auditEvent.findMany({ where: { action }, orderBy: { seq: 'asc' } });
}

/** The reason of the last `federation.response.rejected` event. */
export async function lastRejection(t: TestApp): Promise<string | undefined> {
  const events = await auditEvents(t, 'federation.response.rejected');
  const metadata = events.at(-1)?.metadata as { reason?: string } | undefined;
  return metadata?.reason;
}

export function expectRefusedPage(outcome: Outcome): void {
  expect(outcome.kind).toBe('page');
  if (outcome.kind === 'page') {
    expect(outcome.status).toBeGreaterThanOrEqual(400);
    expect(outcome.status).toBeLessThan(500);
  }
}

// ---------------------------------------------------------------- upstream OIDC provider

export interface UpstreamAccount {
  sub: string;
  email?: string;
  email_verified?: boolean;
  name?: string;
  groups?: string[];
  hd?: string;
}

export interface UpstreamOidc {
  issuer: string;
  clientId: string;
  clientSecret: string;
  /** Who the next interaction signs in (the upstream's own login is not what these tests are about). */
  signInAs(account: UpstreamAccount): void;
  /** Registers our client with its redirect URI (known once the connection exists) and starts answering. */
  register(redirectUri: string): Promise<void>;
  close(): Promise<void>;
}

/**
 * A second oidc-provider on its own loopback port, in-memory adapter, one
 * confidential client registered with our redirect URI. Its interaction signs
 * in whichever account the test chose and consents at once.
 */
export async function startUpstreamOidc(): Promise<UpstreamOidc> {
  const accounts = new Map<string, UpstreamAccount>();
  let current: UpstreamAccount | undefined;
  const server: Server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const address = server.address();
  const issuer = `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`;
  const clientId = 'idp-federation-test';
  const clientSecret = 'a-long-upstream-client-secret-for-tests-only';
  const { privateKey } = await generateKeyPair('RS256', { extractable: true });
  const jwk = { ...(await exportJWK(privateKey)), kid: 'upstream-1', alg: 'RS256', use: 'sig' };
  const build = (redirectUri: string) =>
    new Provider(issuer, {
      clients: [
        {
          client_id: clientId,
          client_secret: clientSecret,
          redirect_uris: [redirectUri],
          grant_types: ['authorization_code'],
          response_types: ['code'],
        },
      ],
      jwks: { keys: [jwk] },
      cookies: { keys: ['upstream-cookie-key-for-tests'] },
      features: { devInteractions: { enabled: false } },
      interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
      // Google puts `hd` beside the email claims; so does this stand-in.
      claims: { openid: ['sub'], email: ['email', 'email_verified', 'hd'], profile: ['name'], groups: ['groups'] },
      scopes: ['openid', 'email', 'profile', 'groups'],
      conformIdTokenClaims: false,
      pkce: { required: () => true },
      async findAccount(_ctx, sub) {
        const account = accounts.get(sub);
        return account ? { accountId: sub, claims: async () => ({ ...account }) } : undefined;
      },
    });
  let provider: Provider | undefined;
  server.on('request', (req, res) => {
    if (!provider) {
      res.statusCode = 503;
      return void res.end('not registered yet');
    }
    const match = /^\/interaction\/([^/?]+)/.exec(req.url ?? '');
    if (!match) return void provider.callback()(req, res);
    const upstream = provider;
    void (async () => {
      try {
        const details = await upstream.interactionDetails(req, res);
        if (!current) throw new Error('the test did not choose an upstream account');
        accounts.set(current.sub, current);
        const grant = new upstream.Grant({ accountId: current.sub, clientId: String(details.params.client_id) });
        grant.addOIDCScope(String(details.params.scope));
        const grantId = await grant.save();
        await upstream.interactionFinished(
          req,
          res,
          { login: { accountId: current.sub }, consent: { grantId } },
          { mergeWithLastSubmission: false },
        );
      } catch (error) {
        res.statusCode = 500;
        res.end(String(error));
      }
    })();
  });
  return {
    issuer,
    clientId,
    clientSecret,
    signInAs(account) {
      current = account;
    },
    async register(redirectUri) {
      provider = build(redirectUri);
    },
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** Follows the upstream's redirects (its own browser, its own cookies) until it sends the browser back to us. */
export async function throughUpstream(upstreamAuthorizeUrl: string, ourOrigin: string): Promise<URL> {
  const upstream = new Browser(new URL(upstreamAuthorizeUrl).origin);
  const outcome = await upstream.follow(upstreamAuthorizeUrl);
  if (outcome.kind !== 'redirect' || outcome.url.origin !== ourOrigin) {
    throw new Error(
      `the upstream did not send the browser back: ${outcome.kind === 'page' ? outcome.html.slice(0, 500) : outcome.url.href}`,
    );
  }
  return outcome.url;
}

/**
 * The row of an OIDC connection that requires single sign-on for `domain`,
 * for `prisma.connection.create`. Nobody signs in through it: it only has to
 * be usable, which is what makes the policy apply.
 */
export function ssoOnlyConnection(tenantId: string, domain: string) {
  return {
    tenantId,
    name: 'Corp SSO',
    type: 'oidc',
    domains: [domain],
    requireSso: true,
    config: {
      issuer: 'https://login.corp.example',
      clientId: 'our-idp',
      scopes: ['openid', 'email'],
      tokenEndpointAuthMethod: 'client_secret_basic',
      userinfo: false,
    },
    attributeMapping: { email: ['email'], name: ['name'], givenName: ['given_name'], familyName: ['family_name'], groups: ['groups'] },
  };
}
