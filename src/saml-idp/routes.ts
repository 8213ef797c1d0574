import type { Middleware } from 'koa';
import { AppError, toHttpError } from '../errors.js';
import { renderErrorPage } from '../interaction/render.js';
import { createSamlBridge } from '../oidc/saml-bridge.js';
import { requireTenant } from '../tenants/edge.js';
import { recordRefusal } from './audit.js';
import { keyDeps, type RequestTrace, type SamlIdpDeps, type SamlRequest } from './context.js';
import { idpEndpoints, idpMetadataXml } from './idp-metadata.js';
import { publishedCertificates } from './keys.js';
import { findServiceProviderByEntityId } from './service-providers.js';
import { SamlRefusal } from './xml.js';

/**
 * The tenant's SAML 2.0 IdP under `/t/<slug>/saml/`: metadata, SSO (both
 * bindings), the return from the hosted pages, IdP-initiated sign-in and
 * single logout. Anything else under that path goes on to `next`.
 */

type Handler = (request: SamlRequest) => Promise<void>;

interface Route {
  methods: readonly string[];
  endpoint: RequestTrace['endpoint'];
  handle: Handler;
}

// sso.ts and slo.ts sign, verify and encrypt with xml-crypto and xml-encryption (~20 MB
// resident): they load on a process's first SAML sign-in or logout, not at start-up (issue 8).
const sso = () => import('./sso.js');
const slo = () => import('./slo.js');

const ROUTES: Readonly<Record<string, Route>> = Object.freeze({
  metadata: { methods: ['GET', 'HEAD'], endpoint: 'metadata', handle: serveMetadata },
  sso: { methods: ['GET', 'POST'], endpoint: 'sso', handle: async (request) => (await sso()).handleSso(request) },
  continue: { methods: ['GET'], endpoint: 'continue', handle: async (request) => (await sso()).handleContinue(request) },
  'idp-initiated': {
    methods: ['GET'],
    endpoint: 'idp-initiated',
    handle: async (request) => (await sso()).handleIdpInitiated(request),
  },
  slo: { methods: ['GET', 'POST'], endpoint: 'slo', handle: async (request) => (await slo()).handleSlo(request) },
  'slo/continue': {
    methods: ['GET'],
    endpoint: 'slo-continue',
    handle: async (request) => (await slo()).handleLogoutContinue(request),
  },
});

export const isSamlIdpPath = (subpath: string) => subpath.startsWith('/saml/');

export function samlIdpRoutes(deps: SamlIdpDeps): Middleware {
  const bridge = createSamlBridge({ registry: deps.oidc, prisma: deps.db.prisma, kv: deps.kv, audit: deps.audit });
  return async function samlIdp(ctx, next) {
    const tenant = requireTenant(ctx.state);
    const prefix = `/t/${tenant.slug}/saml/`;
    const name = ctx.path.startsWith(prefix) ? ctx.path.slice(prefix.length) : '';
    const route = Object.hasOwn(ROUTES, name) ? ROUTES[name] : undefined;
    if (!route) return next();
    const request: SamlRequest = {
      ctx,
      tenant,
      deps,
      bridge,
      endpoints: idpEndpoints(deps.config.publicUrl, tenant.slug),
      trace: { endpoint: route.endpoint },
    };
    ctx.set('Cache-Control', 'no-store');
    await withErrorPage(request, async () => {
      if (!route.methods.includes(ctx.method)) {
        throw new AppError(405, 'method_not_allowed', 'This page cannot be used that way.', { Allow: route.methods.join(', ') });
      }
      await route.handle(request);
    });
  };
}

/** Refusals are audited with their reason and shown as the tenant's error page; bugs are logged, never shown. */
async function withErrorPage(request: SamlRequest, work: () => Promise<void>): Promise<void> {
  const { ctx, deps, tenant } = request;
  try {
    await work();
  } catch (error) {
    if (error instanceof SamlRefusal) {
      await recordRefusal(request, error).catch((auditError: unknown) => {
        deps.logger.error({ err: auditError, requestId: ctx.state.requestId }, 'audit of a refused SAML request failed');
      });
    }
    const mapped = toHttpError(error);
    if (mapped.unexpected) deps.logger.error({ err: error, requestId: ctx.state.requestId }, 'SAML endpoint failed');
    if (ctx.headerSent) return;
    ctx.status = mapped.status;
    ctx.set(mapped.headers);
    renderErrorPage(ctx, mapped.body, tenant, mapped.status < 500 ? 'This sign-in request cannot be completed' : 'Something went wrong');
  }
}

async function serveMetadata(request: SamlRequest): Promise<void> {
  const { ctx, deps, tenant, endpoints } = request;
  const certificates = await publishedCertificates(keyDeps(deps), tenant);
  const entityId = typeof ctx.query.sp === 'string' ? ctx.query.sp : undefined;
  const sp = entityId ? await findServiceProviderByEntityId(deps.db.prisma, tenant.id, entityId) : undefined;
  // Public and the same for every SP; a short cache keeps a rotation's new next key visible soon.
  ctx.set('Cache-Control', 'public, max-age=300');
  ctx.set('Access-Control-Allow-Origin', '*');
  ctx.type = 'application/samlmetadata+xml; charset=utf-8';
  ctx.body = idpMetadataXml(endpoints, certificates, { wantAuthnRequestsSigned: Boolean(sp?.enabled && sp.requireSignedRequests) });
}
