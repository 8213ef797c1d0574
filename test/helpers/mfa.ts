import * as oidc from 'openid-client';
import { expect } from 'vitest';
import {
  type AuthorizationRequest,
  type AuthorizeOptions,
  authorizationRequest,
  Browser,
  type Outcome,
  parseForms,
  textOf,
} from './oidc.js';

/**
 * Driving the second sign-in step through the hosted pages: the page after
 * the password, its forms, the values a person reads off it (the manual TOTP
 * key, the recovery codes), and redeeming the code at the end.
 */

export type Page = Extract<Outcome, { kind: 'page' }>;

export interface Started {
  browser: Browser;
  request: AuthorizationRequest;
  outcome: Outcome;
}

/** An authorization request followed through the password form; returns where it ended (an MFA page, usually). */
export async function signInWithPassword(
  issuer: string,
  config: oidc.Configuration,
  credentials: { email: string; password: string },
  options: AuthorizeOptions & { browser?: Browser } = {},
): Promise<Started> {
  const browser = options.browser ?? new Browser(new URL(issuer).origin);
  const request = await authorizationRequest(config, options);
  const outcome = await browser.follow(request.url, { credentials });
  return { browser, request, outcome };
}

export function asPage(outcome: Outcome): Page {
  if (outcome.kind !== 'page') throw new Error(`expected a page, got a redirect to ${outcome.url.href}`);
  return outcome;
}

/** Posts the page's form whose action ends with `/${step}`, with its hidden fields and `fields`. */
export function submitStep(browser: Browser, outcome: Outcome, step: string, fields: Record<string, string> = {}): Promise<Outcome> {
  const page = asPage(outcome);
  const form = parseForms(page.html).find((f) => f.action.endsWith(`/${step}`));
  if (!form) throw new Error(`no form posting to …/${step} on ${page.status} page: ${textOf(page.html)}`);
  return browser.submit(page.url, form, fields);
}

export function hasStep(outcome: Outcome, step: string): boolean {
  return outcome.kind === 'page' && parseForms(outcome.html).some((f) => f.action.endsWith(`/${step}`));
}

/** The base32 key shown for typing by hand, without its grouping spaces. */
export function manualKeyOf(outcome: Outcome): string {
  const match = /<code[^>]*id="manual-key"[^>]*>([A-Z2-7 ]+)<\/code>/.exec(asPage(outcome).html);
  if (!match?.[1]) throw new Error(`no manual key on the page: ${textOf(asPage(outcome).html)}`);
  return match[1].replace(/ /g, '');
}

export function recoveryCodesOf(outcome: Outcome): string[] {
  const list = /<ol[^>]*id="recovery-codes"[^>]*>([\s\S]*?)<\/ol>/.exec(asPage(outcome).html)?.[1] ?? '';
  return [...list.matchAll(/<code>([^<]+)<\/code>/g)].map((m) => m[1] ?? '');
}

/** Redeems the code the browser came back with, checking state, nonce and PKCE like a real client. */
export async function redeem(config: oidc.Configuration, started: Started, outcome: Outcome) {
  if (outcome.kind !== 'redirect' || !outcome.url.href.startsWith(started.request.redirectUri)) {
    throw new Error(`no code: ${outcome.kind === 'page' ? `${outcome.status} ${textOf(outcome.html)}` : outcome.url.href}`);
  }
  return oidc.authorizationCodeGrant(config, outcome.url, {
    pkceCodeVerifier: started.request.codeVerifier,
    expectedState: started.request.state,
    expectedNonce: started.request.nonce,
  });
}

/** The claims of the ID token that tell how the user signed in. */
export function howSignedIn(tokens: Awaited<ReturnType<typeof redeem>>): { amr: unknown; acr: unknown } {
  const claims = tokens.claims();
  expect(claims).toBeDefined();
  return { amr: claims?.amr, acr: claims?.acr };
}
