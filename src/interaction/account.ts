import type { Context, Middleware } from 'koa';
import type { AuditLog } from '../audit/audit.js';
import type { Config } from '../config.js';
import { randomToken, sha256 } from '../crypto/random.js';
import { AppError, toHttpError } from '../errors.js';
import type { Logger } from '../observability/logger.js';
import { ACCOUNT_CLIENT_SCOPE, type AccountPageOidc, accountPageUrl, createAccountPageOidc } from '../oidc/account-client.js';
import { loadAccount } from '../oidc/accounts.js';
import type { OidcRegistry } from '../oidc/registry.js';
import type { PrismaClient } from '../store/db.js';
import type { KvStore } from '../store/index.js';
import { requireTenant } from '../tenants/edge.js';
import type { TenantContext } from '../tenants/tenants.js';
import { renderAccountPage, renderErrorPage } from './render.js';

export interface AccountDeps {
  config: Pick<Config, 'publicUrl'>;
  db: { prisma: PrismaClient };
  kv: KvStore;
  audit: AuditLog;
  logger: Logger;
  oidc: OidcRegistry;
}

interface AccountRequest {
  ctx: Context;
  tenant: TenantContext;
  deps: AccountDeps;
  oidc: AccountPageOidc;
  /** `${PUBLIC_URL}/t/<slug>/account`: the built-in client's redirect and post-logout URI. */
  pageUrl: string;
}

type Page = (request: AccountRequest) => Promise<void>;

/**
 * The tenant's account page, the URL `npm start` prints:
 * GET `/t/<slug>/account` shows who is signed in to the tenant in this browser
 * (with a sign-out link) or a sign-in button; GET `/t/<slug>/account/login`
 * starts the sign-in through the hosted pages. Anything else goes on to `next`.
 */
export function accountRoutes(deps: AccountDeps): Middleware {
  const oidc = createAccountPageOidc({
    registry: deps.oidc,
    prisma: deps.db.prisma,
    kv: deps.kv,
    audit: deps.audit,
    publicUrl: deps.config.publicUrl,
  });
  return async function account(ctx, next) {
    const tenant = requireTenant(ctx.state);
    const base = `/t/${tenant.slug}/account`;
    const page: Page | undefined = ctx.path === base ? showAccount : ctx.path === `${base}/login` ? startSignIn : undefined;
    if (!page) return next();
    const request: AccountRequest = { ctx, tenant, deps, oidc, pageUrl: accountPageUrl(deps.config.publicUrl, tenant.slug) };
    ctx.set('Cache-Control', 'no-store');
    await withErrorPage(request, async () => {
      if (ctx.method !== 'GET' && ctx.method !== 'HEAD') {
        throw new AppError(405, 'method_not_allowed', 'This page cannot be used that way.', { Allow: 'GET, HEAD' });
      }
      await page(request);
    });
  };
}

/** A person is looking at this page: failures are the tenant's error page, and only bugs are logged. */
async function withErrorPage(request: AccountRequest, work: () => Promise<void>): Promise<void> {
  const { ctx, tenant, deps } = request;
  try {
    await work();
  } catch (error) {
    const mapped = toHttpError(error);
    if (mapped.unexpected) deps.logger.error({ err: error, requestId: ctx.state.requestId }, 'account page failed');
    if (ctx.headerSent) return;
    ctx.status = mapped.status;
    ctx.set(mapped.headers);
    renderErrorPage(ctx, mapped.body, tenant);
  }
}

/** What the authorization endpoint may append when it sends the browser back here. */
const CALLBACK_PARAMS = ['code', 'state', 'iss', 'error', 'error_description'];

/** Fixed sentences only: the error parameter comes from the query string and is never echoed. */
function noticeFor(error: unknown): string | undefined {
  if (error === undefined) return undefined;
  return error === 'access_denied' ? 'Sign-in was cancelled.' : 'Sign-in did not complete. Please try again.';
}

async function showAccount(request: AccountRequest): Promise<void> {
  const { ctx, tenant, deps, oidc, pageUrl } = request;
  const { query } = ctx;
  if (query.error === undefined && CALLBACK_PARAMS.some((name) => query[name] !== undefined)) {
    // Back from a sign-in. The code is of no use to anyone (see startSignIn), but a clean URL keeps it out of history and bookmarks.
    ctx.status = 303;
    ctx.redirect(pageUrl);
    return;
  }
  const endpoints = await oidc.endpoints(tenant);
  const accountId = await oidc.signedInAccountId(tenant, ctx.req, ctx.res);
  // A disabled or deleted user's session is still there, but it no longer signs anyone in.
  const account = accountId ? await loadAccount(deps.db.prisma, tenant.id, accountId) : null;
  const common = { issuer: endpoints.issuer, discoveryUrl: endpoints.discovery, signInUrl: `/t/${tenant.slug}/account/login` };
  if (!account) {
    renderAccountPage(ctx, tenant, { ...common, notice: noticeFor(query.error) });
    return;
  }
  // RP-initiated logout: oidc-provider asks for confirmation on our logout page, ends the session, and comes back here.
  const signOut = new URL(endpoints.endSession);
  signOut.search = new URLSearchParams({ client_id: await oidc.clientIdFor(tenant), post_logout_redirect_uri: pageUrl }).toString();
  renderAccountPage(ctx, tenant, {
    ...common,
    account: { email: account.email, name: account.name ?? undefined, roles: account.roles },
    signOutUrl: signOut.href,
  });
}

/**
 * Sends the browser to the authorization endpoint as the built-in account
 * client. The page never redeems the code: the point is only that the hosted
 * pages sign the person in and oidc-provider sets its session cookie, which
 * showAccount reads. The PKCE verifier is therefore thrown away at once, and
 * the unredeemed code is harmless: the client is public, so the code is
 * redeemable only with that verifier, which nobody has, and it expires after
 * 60 s. `state` is sent as the protocol expects; nothing checks it on return
 * because returning changes nothing (no token, no cookie of ours).
 */
async function startSignIn(request: AccountRequest): Promise<void> {
  const { ctx, tenant, oidc, pageUrl } = request;
  const clientId = await oidc.clientIdFor(tenant);
  const target = new URL((await oidc.endpoints(tenant)).authorization);
  target.search = new URLSearchParams({
    client_id: clientId,
    response_type: 'code',
    scope: ACCOUNT_CLIENT_SCOPE,
    redirect_uri: pageUrl,
    code_challenge: sha256(randomToken(32)),
    code_challenge_method: 'S256',
    state: randomToken(16),
  }).toString();
  ctx.redirect(target.href);
}
