import type { Context, Middleware } from 'koa';
import { AppError, toHttpError } from '../errors.js';
import { readForm } from '../interaction/form.js';
import { renderErrorPage } from '../interaction/render.js';
import { requireTenant } from '../tenants/edge.js';
import type { TenantContext } from '../tenants/tenants.js';
import { type FederationConnection, findConnection, type OidcConnection, type SamlConnection } from './connections.js';
import { loadOidcRp, loadSamlSp } from './engines.js';
import { consumeFlow, type FederationFlow } from './flows.js';
import { FederationRejection, reject } from './rejection.js';
import { decodePostMessage, decodeRedirectMessage, MAX_SAML_MESSAGE_BYTES } from './saml-message.js';
import { completeFederatedSignIn, endpointsFor, type FederationDeps, refuse } from './sign-in.js';

/**
 * Where upstream IdPs send the browser back, under /t/:tenant/federation/:
 *
 * - GET  saml/:id/metadata   our SP metadata for the connection
 * - POST saml/:id/acs        SAML Response, HTTP-POST binding
 * - GET  saml/:id/acs        SAML Response, HTTP-Redirect binding (size-capped inflate)
 * - GET  oidc/:id/callback   OIDC authorization response
 */

const FEDERATION_PATH = /^\/t\/[^/]+\/federation\/(saml|oidc)\/([0-9a-fA-F-]{36})\/(metadata|acs|callback)$/;

/** A form carrying the largest response we accept, base64-encoded, plus RelayState. */
const ACS_FORM_LIMIT = Math.ceil(MAX_SAML_MESSAGE_BYTES / 3) * 4 + 16 * 1024;

type Handler = (deps: FederationDeps, ctx: Context, tenant: TenantContext, connectionId: string) => Promise<void>;

const HANDLERS: Record<string, { methods: string[]; handle: Handler }> = {
  'saml/metadata': { methods: ['GET', 'HEAD'], handle: serveSpMetadata },
  'saml/acs': { methods: ['GET', 'POST'], handle: receiveSamlResponse },
  'oidc/callback': { methods: ['GET'], handle: receiveOidcCallback },
};

export function federationRoutes(deps: FederationDeps): Middleware {
  return async function federation(ctx, next) {
    const match = FEDERATION_PATH.exec(ctx.path);
    const route = match ? HANDLERS[`${match[1]}/${match[3]}`] : undefined;
    if (!match?.[2] || !route) return next();
    const tenant = requireTenant(ctx.state);
    ctx.set('Cache-Control', 'no-store');
    try {
      if (!route.methods.includes(ctx.method)) {
        throw new AppError(405, 'method_not_allowed', 'This page cannot be used that way.', { Allow: route.methods.join(', ') });
      }
      await route.handle(deps, ctx, tenant, match[2].toLowerCase());
    } catch (error) {
      const mapped = toHttpError(error);
      if (mapped.unexpected) deps.logger.error({ err: error, requestId: ctx.state.requestId }, 'federation endpoint failed');
      ctx.status = mapped.status;
      ctx.set(mapped.headers);
      renderErrorPage(ctx, mapped.body, tenant);
    }
  };
}

const noSuchConnection = () => new AppError(404, 'not_found', 'There is no such sign-in connection.');

async function serveSpMetadata(deps: FederationDeps, ctx: Context, tenant: TenantContext, connectionId: string): Promise<void> {
  const connection = await findConnection(deps.db.prisma, tenant.id, connectionId);
  if (connection?.type !== 'saml') throw noSuchConnection();
  ctx.type = 'application/samlmetadata+xml';
  ctx.set('Cache-Control', 'public, max-age=300');
  const { spMetadataXml } = await loadSamlSp();
  ctx.body = spMetadataXml(deps, connection, endpointsFor(deps, tenant, connection));
}

/**
 * The connection of the URL and the flow its answer names must go together:
 * same tenant, same connection, same protocol. The flow is consumed first,
 * so a second answer for the same flow finds nothing, whatever it contains.
 */
async function openAnswer<T extends FederationConnection>(
  deps: FederationDeps,
  tenant: TenantContext,
  connectionId: string,
  type: T['type'],
  handle: unknown,
): Promise<{ connection: T; flow: FederationFlow }> {
  const flow = await consumeFlow(deps.kv, handle);
  const connection = await findConnection(deps.db.prisma, tenant.id, connectionId);
  if (!connection || connection.type !== type) throw reject('unknown_connection', connectionId);
  if (!connection.enabled) throw reject('connection_disabled', connection.name);
  if (!flow || flow.tenantId !== tenant.id || flow.connectionId !== connection.id || flow.protocol !== type) {
    throw reject('unknown_state', 'no pending sign-in for this answer (unknown, used or expired RelayState/state)');
  }
  return { connection: connection as T, flow };
}

/** Runs `work`, turning a rejection into its audit event and the generic page. */
async function answering(
  deps: FederationDeps,
  ctx: Context,
  tenant: TenantContext,
  connectionId: string,
  work: (setConnection: (c: FederationConnection) => void) => Promise<void>,
): Promise<void> {
  const seen: { connection: FederationConnection | null } = { connection: null };
  try {
    await work((connection) => {
      seen.connection = connection;
    });
  } catch (error) {
    if (!(error instanceof FederationRejection)) throw error;
    const connection = seen.connection ?? (await findConnection(deps.db.prisma, tenant.id, connectionId));
    await refuse(deps, ctx, tenant, connection, error);
  }
}

/** The SAML message and RelayState of either binding, decoded with the size and DTD checks of saml-message.ts. */
async function samlMessageOf(ctx: Context): Promise<{ xml: string; relayState: unknown }> {
  if (ctx.method === 'POST') {
    let form: Record<string, string>;
    try {
      form = await readForm(ctx, ACS_FORM_LIMIT);
    } catch (error) {
      const status = (error as { status?: unknown }).status;
      throw reject(status === 413 ? 'message_too_large' : 'malformed', error instanceof Error ? error.message : undefined);
    }
    if (typeof form.SAMLResponse !== 'string') throw reject('malformed', 'no SAMLResponse');
    return { xml: decodePostMessage(form.SAMLResponse), relayState: form.RelayState };
  }
  const response = ctx.query.SAMLResponse;
  if (typeof response !== 'string') throw reject('malformed', 'no SAMLResponse');
  return { xml: decodeRedirectMessage(response), relayState: ctx.query.RelayState };
}

async function receiveSamlResponse(deps: FederationDeps, ctx: Context, tenant: TenantContext, connectionId: string): Promise<void> {
  await answering(deps, ctx, tenant, connectionId, async (setConnection) => {
    const { xml, relayState } = await samlMessageOf(ctx);
    const { connection, flow } = await openAnswer<SamlConnection>(deps, tenant, connectionId, 'saml', relayState);
    setConnection(connection);
    if (!flow.requestId) throw reject('unknown_state', 'the flow has no AuthnRequest');
    const { validateSamlResponse } = await loadSamlSp();
    const claims = await validateSamlResponse(deps, connection, endpointsFor(deps, tenant, connection), xml, flow.requestId);
    await completeFederatedSignIn(deps, ctx, tenant, connection, flow, claims);
  });
}

async function receiveOidcCallback(deps: FederationDeps, ctx: Context, tenant: TenantContext, connectionId: string): Promise<void> {
  await answering(deps, ctx, tenant, connectionId, async (setConnection) => {
    const state = ctx.query.state;
    const { connection, flow } = await openAnswer<OidcConnection>(deps, tenant, connectionId, 'oidc', state);
    setConnection(connection);
    if (typeof state !== 'string' || !flow.nonce || !flow.codeVerifier) throw reject('unknown_state', 'the flow has no nonce or verifier');
    const endpoints = endpointsFor(deps, tenant, connection);
    // Our public redirect URI with the query as sent: what openid-client compares against what it registered.
    const callbackUrl = new URL(`${endpoints.oidcRedirectUri}${ctx.querystring ? `?${ctx.querystring}` : ''}`);
    const { completeOidcSignIn } = await loadOidcRp();
    const claims = await completeOidcSignIn(deps, connection, endpoints, callbackUrl, {
      state,
      nonce: flow.nonce,
      codeVerifier: flow.codeVerifier,
    });
    await completeFederatedSignIn(deps, ctx, tenant, connection, flow, claims);
  });
}
