import { randomUUID } from 'node:crypto';
import { z } from 'zod';
import { CONNECTION_CLIENT_SECRET, CONNECTION_SP_PRIVATE_KEY } from '../../crypto/reencrypt.js';
import { badRequest, conflict, notFound } from '../../errors.js';
import { generateSpKeyPair, summarizeCertificate } from '../../federation/certificates.js';
import {
  attributeMappingSchema,
  connectionEndpoints,
  type FederationConnection,
  httpUrl,
  type OidcConfig,
  roleMappingSchema,
  type SamlConfig,
  toConnection,
} from '../../federation/connections.js';
import { fetchMetadataXml, type IdpMetadata, parseIdpMetadata } from '../../federation/metadata.js';
import { CONNECTION_TYPES, defaultMapping, mergeMapping, PRESET_NAMES, PRESETS } from '../../federation/presets.js';
import { testConnection } from '../../federation/test-connection.js';
import type { Prisma, PrismaClient } from '../../store/db.js';
import type { Connection as ConnectionRow } from '../../store/generated/client.js';
import type { TenantContext } from '../../tenants/tenants.js';
import { conflictOnDuplicate, displayName, iso, page, pageOf, paginationQuery, timestamp, uuidParam } from '../http.js';
import { type AdminDeps, defineRoute, type RouteContext } from '../route.js';

type RouteAudit = RouteContext<unknown, unknown, unknown>['audit'];

/**
 * Upstream identity providers of a tenant (src/federation/): SAML IdPs
 * imported from their metadata (XML or URL) and OpenID Providers by issuer,
 * each starting from a preset. Client secrets and our SP keys live in the
 * vault and never leave it through this API; what an IdP admin needs from us
 * (entity ID, ACS URL, metadata URL, redirect URI) is in every response.
 */

const domainName = z
  .string()
  .trim()
  .toLowerCase()
  .regex(/^(?=.{1,253}$)(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$/, { message: 'must be a domain name like example.com' });

const partialMapping = attributeMappingSchema.partial();

const oidcInput = z.strictObject({
  issuer: httpUrl,
  client_id: z.string().min(1).max(512),
  client_secret: z.string().min(1).max(4096).nullable().optional(),
  scopes: z
    .array(z.string().regex(/^[\x21\x23-\x5b\x5d-\x7e]{1,128}$/))
    .min(1)
    .max(30)
    .optional(),
  token_endpoint_auth_method: z.enum(['client_secret_basic', 'client_secret_post', 'none']).optional(),
  userinfo: z.boolean().optional(),
});

const samlInput = z.strictObject({
  metadata_xml: z
    .string()
    .min(1)
    .max(1024 * 1024)
    .optional(),
  metadata_url: httpUrl.optional(),
  entity_id: z.string().min(1).max(1024).optional(),
  sso_url: httpUrl.optional(),
  sso_binding: z.enum(['redirect', 'post']).optional(),
  certificates: z.array(z.string().min(16).max(16_384)).min(1).max(10).optional(),
  sign_requests: z.boolean().optional(),
  name_id_format: z.string().min(1).max(200).optional(),
});

const common = {
  enabled: z.boolean().optional(),
  domains: z.array(domainName).max(50).optional(),
  require_sso: z.boolean().optional(),
  enforces_mfa: z.boolean().optional(),
  attribute_mapping: partialMapping.optional(),
  role_mapping: roleMappingSchema.optional(),
};

export const ConnectionCreate = z.strictObject({
  name: displayName,
  type: z.enum(CONNECTION_TYPES),
  preset: z.enum(PRESET_NAMES).default('custom'),
  ...common,
  oidc: oidcInput.optional(),
  saml: samlInput.optional(),
});

export const ConnectionUpdate = z.strictObject({
  name: displayName.optional(),
  ...common,
  oidc: oidcInput.partial().optional(),
  saml: samlInput.optional(),
});

const CertificateInfo = z.object({
  subject: z.string(),
  not_after: z.string(),
  fingerprint_sha256: z.string(),
});

export const Connection = z.object({
  id: z.uuid(),
  name: z.string(),
  type: z.enum(CONNECTION_TYPES),
  preset: z.enum(PRESET_NAMES),
  enabled: z.boolean(),
  domains: z.array(z.string()),
  require_sso: z.boolean(),
  enforces_mfa: z.boolean(),
  attribute_mapping: attributeMappingSchema,
  role_mapping: z.record(z.string(), z.array(z.string())),
  oidc: z
    .object({
      issuer: z.string(),
      client_id: z.string(),
      scopes: z.array(z.string()),
      token_endpoint_auth_method: z.string(),
      userinfo: z.boolean(),
      has_client_secret: z.boolean(),
      redirect_uri: z.string(),
    })
    .nullable(),
  saml: z
    .object({
      idp_entity_id: z.string().nullable(),
      sso_url: z.string().nullable(),
      sso_binding: z.enum(['redirect', 'post']),
      metadata_url: z.string().nullable(),
      certificates: z.array(CertificateInfo.nullable()),
      sign_requests: z.boolean(),
      name_id_format: z.string(),
      sp_entity_id: z.string(),
      acs_url: z.string(),
      sp_metadata_url: z.string(),
      sp_certificate: z.string().nullable(),
    })
    .nullable(),
  created_at: timestamp,
  updated_at: timestamp,
});
export const ConnectionPage = page(Connection);

export const ConnectionTestReport = z.object({
  ok: z.boolean(),
  checks: z.array(z.object({ check: z.string(), ok: z.boolean(), detail: z.string() })),
});

type Body = z.output<typeof ConnectionCreate>;
type Patch = z.output<typeof ConnectionUpdate>;

function certificateInfo(body: string, now: number) {
  const summary = summarizeCertificate(body, now);
  return summary ? { subject: summary.subject, not_after: summary.notAfter, fingerprint_sha256: summary.fingerprintSha256 } : null;
}

function toApi(deps: AdminDeps, tenant: TenantContext, connection: FederationConnection, row: ConnectionRow): z.input<typeof Connection> {
  const endpoints = connectionEndpoints(deps.config.publicUrl, tenant.slug, connection.id);
  const now = deps.clock.now();
  return {
    id: connection.id,
    name: connection.name,
    type: connection.type,
    preset: connection.preset,
    enabled: connection.enabled,
    domains: connection.domains,
    require_sso: connection.requireSso,
    enforces_mfa: connection.enforcesMfa,
    attribute_mapping: connection.mapping,
    role_mapping: connection.roleMapping,
    oidc:
      connection.type === 'oidc'
        ? {
            issuer: connection.oidc.issuer,
            client_id: connection.oidc.clientId,
            scopes: connection.oidc.scopes,
            token_endpoint_auth_method: connection.oidc.tokenEndpointAuthMethod,
            userinfo: connection.oidc.userinfo,
            has_client_secret: connection.clientSecret !== null,
            redirect_uri: endpoints.oidcRedirectUri,
          }
        : null,
    saml:
      connection.type === 'saml'
        ? {
            idp_entity_id: connection.saml.idpEntityId ?? null,
            sso_url: connection.saml.ssoUrl ?? null,
            sso_binding: connection.saml.ssoBinding,
            metadata_url: connection.saml.metadataUrl ?? null,
            certificates: connection.saml.certificates.map((c) => certificateInfo(c, now)),
            sign_requests: connection.saml.signRequests,
            name_id_format: connection.saml.nameIdFormat,
            sp_entity_id: endpoints.spEntityId,
            acs_url: endpoints.acsUrl,
            sp_metadata_url: endpoints.spMetadataUrl,
            sp_certificate: connection.spCertificate,
          }
        : null,
    created_at: iso(row.createdAt),
    updated_at: iso(row.updatedAt),
  };
}

function parsedRow(row: ConnectionRow): FederationConnection {
  const connection = toConnection(row);
  // Only this API writes connections, always through the schemas: a row that does not parse is a bug.
  if (!connection) throw new Error(`connection ${row.id} has an invalid stored configuration`);
  return connection;
}

async function findRow(db: PrismaClient | Prisma.TransactionClient, tenantId: string, id: string): Promise<ConnectionRow> {
  const row = await db.connection.findFirst({ where: { id, tenantId } });
  if (!row) throw notFound('no such connection');
  return row;
}

/** A domain leads home-realm discovery and SSO enforcement to one connection only. */
async function assertDomainsFree(db: Prisma.TransactionClient, tenantId: string, domains: string[], exceptId?: string): Promise<void> {
  if (domains.length === 0) return;
  const taken = await db.connection.findFirst({
    where: { tenantId, domains: { hasSome: domains }, ...(exceptId ? { id: { not: exceptId } } : {}) },
    select: { name: true, domains: true },
  });
  if (taken) {
    const overlap = taken.domains.filter((d) => domains.includes(d));
    throw conflict(`domain ${overlap.join(', ')} already belongs to connection ${taken.name}`);
  }
}

// ---------------------------------------------------------------- protocol settings

async function importedMetadata(input: z.output<typeof samlInput>): Promise<IdpMetadata | null> {
  if (input.metadata_xml && input.metadata_url) throw badRequest('body.saml: give metadata_xml or metadata_url, not both');
  if (input.metadata_xml) return parseIdpMetadata(input.metadata_xml, input.entity_id);
  if (input.metadata_url) return parseIdpMetadata(await fetchMetadataXml(input.metadata_url), input.entity_id);
  return null;
}

/** SAML settings from metadata and/or explicit fields, over `previous` (for updates). */
async function samlConfigFrom(input: z.output<typeof samlInput>, preset: Body['preset'], previous?: SamlConfig): Promise<SamlConfig> {
  const metadata = await importedMetadata(input);
  return {
    idpEntityId: metadata?.entityId ?? input.entity_id ?? previous?.idpEntityId,
    ssoUrl: metadata?.ssoUrl ?? input.sso_url ?? previous?.ssoUrl,
    ssoBinding: metadata?.ssoBinding ?? input.sso_binding ?? previous?.ssoBinding ?? 'redirect',
    certificates: metadata?.certificates ?? input.certificates?.map(certificateOrThrow) ?? previous?.certificates ?? [],
    metadataUrl: input.metadata_url ?? (input.metadata_xml ? undefined : previous?.metadataUrl),
    signRequests: input.sign_requests ?? previous?.signRequests ?? false,
    nameIdFormat: input.name_id_format ?? previous?.nameIdFormat ?? PRESETS[preset].saml.nameIdFormat,
  };
}

function certificateOrThrow(certificate: string): string {
  const body = certificate.replace(/-----(BEGIN|END) CERTIFICATE-----|\s+/g, '');
  if (!summarizeCertificate(body, Date.now()))
    throw badRequest('body.saml.certificates: not a valid X.509 certificate', 'invalid_certificate');
  return body;
}

function oidcConfigFrom(input: Partial<z.output<typeof oidcInput>>, preset: Body['preset'], previous?: OidcConfig): OidcConfig {
  const issuer = input.issuer ?? previous?.issuer;
  const clientId = input.client_id ?? previous?.clientId;
  if (!issuer || !clientId) throw badRequest('body.oidc: issuer and client_id are required');
  return {
    issuer,
    clientId,
    scopes: input.scopes ?? previous?.scopes ?? PRESETS[preset].oidc.scopes,
    tokenEndpointAuthMethod: input.token_endpoint_auth_method ?? previous?.tokenEndpointAuthMethod ?? 'client_secret_basic',
    userinfo: input.userinfo ?? previous?.userinfo ?? false,
    domainClaim: previous?.domainClaim ?? PRESETS[preset].oidc.domainClaim,
  };
}

function checkTypeBody(type: Body['type'], body: { oidc?: object; saml?: object }): void {
  if (type === 'oidc' && body.saml) throw badRequest('body.saml: this is an OIDC connection');
  if (type === 'saml' && body.oidc) throw badRequest('body.oidc: this is a SAML connection');
}

// ---------------------------------------------------------------- routes

const connectionParams = z.object({ connectionId: uuidParam });

async function createConnection(deps: AdminDeps, tenant: TenantContext, body: Body, audit: RouteAudit) {
  checkTypeBody(body.type, body);
  if (body.type === 'oidc' && !body.oidc) throw badRequest('body.oidc: required for an OIDC connection');
  const id = randomUUID();
  const mapping = mergeMapping(defaultMapping(body.preset, body.type), body.attribute_mapping);
  const config = body.type === 'oidc' ? oidcConfigFrom(body.oidc ?? {}, body.preset) : await samlConfigFrom(body.saml ?? {}, body.preset);
  const spKeys = body.type === 'saml' ? await generateSpKeyPair(`${tenant.slug} ${body.name}`.slice(0, 64), deps.clock.now()) : null;
  const secret = body.oidc?.client_secret;
  return deps.db.prisma
    .$transaction(async (tx) => {
      await assertDomainsFree(tx, tenant.id, body.domains ?? []);
      const row = await tx.connection.create({
        data: {
          id,
          tenantId: tenant.id,
          name: body.name,
          type: body.type,
          preset: body.preset,
          enabled: body.enabled ?? true,
          config: config as Prisma.InputJsonObject,
          domains: body.domains ?? [],
          requireSso: body.require_sso ?? false,
          enforcesMfa: body.enforces_mfa ?? false,
          attributeMapping: mapping as unknown as Prisma.InputJsonObject,
          roleMapping: (body.role_mapping ?? {}) as Prisma.InputJsonObject,
          clientSecret: secret ? deps.vault.encrypt(secret, CONNECTION_CLIENT_SECRET.binding(tenant.id, id)) : null,
          spPrivateKey: spKeys ? deps.vault.encrypt(spKeys.privateKeyPem, CONNECTION_SP_PRIVATE_KEY.binding(tenant.id, id)) : null,
          spCertificate: spKeys?.certificatePem ?? null,
        },
      });
      await audit(
        {
          action: 'connection.created',
          resource: { type: 'connection', id },
          metadata: { name: body.name, type: body.type, preset: body.preset },
        },
        tx,
      );
      return row;
    })
    .catch(conflictOnDuplicate(`a connection named ${body.name} already exists`));
}

async function updateConnection(deps: AdminDeps, tenant: TenantContext, id: string, body: Patch, audit: RouteAudit) {
  const before = parsedRow(await findRow(deps.db.prisma, tenant.id, id));
  checkTypeBody(before.type, body);
  // Fetching metadata happens before the transaction: a slow IdP must not hold a database transaction open.
  const config =
    before.type === 'oidc'
      ? body.oidc
        ? oidcConfigFrom(body.oidc, before.preset, before.oidc)
        : before.oidc
      : body.saml
        ? await samlConfigFrom(body.saml, before.preset, before.saml)
        : before.saml;
  const secret = body.oidc?.client_secret;
  return deps.db.prisma
    .$transaction(async (tx) => {
      if (body.domains) await assertDomainsFree(tx, tenant.id, body.domains, id);
      const row = await tx.connection.update({
        where: { id },
        data: {
          ...(body.name !== undefined ? { name: body.name } : {}),
          ...(body.enabled !== undefined ? { enabled: body.enabled } : {}),
          ...(body.domains !== undefined ? { domains: body.domains } : {}),
          ...(body.require_sso !== undefined ? { requireSso: body.require_sso } : {}),
          ...(body.enforces_mfa !== undefined ? { enforcesMfa: body.enforces_mfa } : {}),
          ...(body.attribute_mapping
            ? { attributeMapping: mergeMapping(before.mapping, body.attribute_mapping) as unknown as Prisma.InputJsonObject }
            : {}),
          ...(body.role_mapping ? { roleMapping: body.role_mapping as Prisma.InputJsonObject } : {}),
          ...(secret !== undefined
            ? { clientSecret: secret === null ? null : deps.vault.encrypt(secret, CONNECTION_CLIENT_SECRET.binding(tenant.id, id)) }
            : {}),
          config: config as Prisma.InputJsonObject,
        },
      });
      const changed = Object.keys(body);
      await audit(
        {
          action: 'connection.updated',
          resource: { type: 'connection', id },
          metadata: { name: row.name, changed, client_secret_replaced: secret !== undefined },
        },
        tx,
      );
      return row;
    })
    .catch(conflictOnDuplicate(`a connection named ${body.name ?? ''} already exists`));
}

export const connectionRoutes = [
  defineRoute({
    method: 'GET',
    path: '/tenants/{tenant}/connections',
    operationId: 'listConnections',
    summary: 'List the upstream SAML and OIDC identity providers',
    tag: 'connections',
    permission: 'connections.read',
    query: z.object({ ...paginationQuery }),
    response: ConnectionPage,
    async handler({ deps, tenant, query, cursor }) {
      const after = cursor.decode(query.cursor);
      const rows = await deps.db.prisma.connection.findMany({
        where: { tenantId: tenant.id, ...(after ? { id: { gt: after } } : {}) },
        orderBy: { id: 'asc' },
        take: query.limit + 1,
      });
      const result = pageOf(rows, query.limit, (row) => row.id, cursor.encode);
      return { data: result.data.map((row) => toApi(deps, tenant, parsedRow(row), row)), next_cursor: result.next_cursor };
    },
  }),
  defineRoute({
    method: 'POST',
    path: '/tenants/{tenant}/connections',
    operationId: 'createConnection',
    summary: 'Connect an upstream identity provider (SAML from its metadata XML or URL, or OIDC by issuer)',
    tag: 'connections',
    permission: 'connections.write',
    body: ConnectionCreate,
    response: Connection,
    status: 201,
    async handler({ deps, tenant, body, audit }) {
      const row = await createConnection(deps, tenant, body, audit);
      return toApi(deps, tenant, parsedRow(row), row);
    },
  }),
  defineRoute({
    method: 'GET',
    path: '/tenants/{tenant}/connections/{connectionId}',
    operationId: 'getConnection',
    summary: 'Read a connection (secrets are never returned)',
    tag: 'connections',
    permission: 'connections.read',
    params: connectionParams,
    response: Connection,
    async handler({ deps, tenant, params }) {
      const row = await findRow(deps.db.prisma, tenant.id, params.connectionId);
      return toApi(deps, tenant, parsedRow(row), row);
    },
  }),
  defineRoute({
    method: 'PATCH',
    path: '/tenants/{tenant}/connections/{connectionId}',
    operationId: 'updateConnection',
    summary: 'Change a connection: enable or disable it, re-import metadata, replace the client secret, mappings, domains',
    tag: 'connections',
    permission: 'connections.write',
    params: connectionParams,
    body: ConnectionUpdate,
    response: Connection,
    async handler({ deps, tenant, params, body, audit }) {
      const row = await updateConnection(deps, tenant, params.connectionId, body, audit);
      return toApi(deps, tenant, parsedRow(row), row);
    },
  }),
  defineRoute({
    method: 'DELETE',
    path: '/tenants/{tenant}/connections/{connectionId}',
    operationId: 'deleteConnection',
    summary: 'Delete a connection and the links of its users (the users stay)',
    tag: 'connections',
    permission: 'connections.write',
    params: connectionParams,
    async handler({ deps, tenant, params, audit }) {
      await deps.db.prisma.$transaction(async (tx) => {
        const row = await findRow(tx, tenant.id, params.connectionId);
        await tx.connection.delete({ where: { id: row.id } });
        await audit(
          { action: 'connection.deleted', resource: { type: 'connection', id: row.id }, metadata: { name: row.name, type: row.type } },
          tx,
        );
      });
      return undefined;
    },
  }),
  defineRoute({
    method: 'POST',
    path: '/tenants/{tenant}/connections/{connectionId}/test',
    operationId: 'testConnection',
    summary: 'Test a connection: OIDC discovery and JWKS; SAML metadata and certificate validity',
    tag: 'connections',
    permission: 'connections.read',
    params: connectionParams,
    response: ConnectionTestReport,
    async handler({ deps, tenant, params }) {
      const connection = parsedRow(await findRow(deps.db.prisma, tenant.id, params.connectionId));
      return testConnection(deps, connection, connectionEndpoints(deps.config.publicUrl, tenant.slug, connection.id));
    },
  }),
];
