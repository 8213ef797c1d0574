import { z } from 'zod';
import { badRequest, notFound } from '../../errors.js';
import { samlClientIdFor } from '../../oidc/saml-bridge.js';
import { NAME_ID_FORMATS } from '../../saml-idp/constants.js';
import { idpEndpoints } from '../../saml-idp/idp-metadata.js';
import { rotateSamlKeys, SAML_PURPOSE } from '../../saml-idp/keys.js';
import {
  attributeMappingSchema,
  certificateSchema,
  endpointUrlSchema,
  entityIdSchema,
  ruleViolations,
  type ServiceProviderConfig,
  toServiceProviderConfig,
} from '../../saml-idp/service-providers.js';
import { type ImportedMetadata, readSpMetadata } from '../../saml-idp/sp-metadata.js';
import { SamlRefusal } from '../../saml-idp/xml.js';
import type { Prisma } from '../../store/db.js';
import { conflictOnDuplicate, displayName, iso, nullableTimestamp, page, pageOf, paginationQuery, timestamp, uuidParam } from '../http.js';
import { defineRoute } from '../route.js';

/**
 * SAML service providers (downstream apps that sign in through our SAML IdP)
 * and the IdP's own signing keys. An SP can be registered from its metadata
 * XML (entity ID, ACS URLs, logout URL, certificate), from fields, or both:
 * fields given next to the metadata override what it says.
 */

export const ServiceProvider = z.object({
  id: z.uuid(),
  name: z.string(),
  entity_id: z.string(),
  acs_urls: z.array(z.string()),
  slo_url: z.string().nullable(),
  /** The SP's public certificate (PEM): checks its request signatures, and assertions are encrypted to it. */
  certificate: z.string().nullable(),
  require_signed_requests: z.boolean(),
  encrypt_assertions: z.boolean(),
  sign_response: z.boolean(),
  sign_assertion: z.boolean(),
  name_id_format: z.enum(NAME_ID_FORMATS),
  attribute_mapping: z.record(z.string(), z.string()),
  assertion_lifetime_seconds: z.number().int(),
  allow_idp_initiated: z.boolean(),
  enabled: z.boolean(),
  /** Where this SP starts an IdP-initiated sign-in, when it allows one. */
  idp_initiated_url: z.string().nullable(),
  created_at: timestamp,
  updated_at: timestamp,
});
export const ServiceProviderPage = page(ServiceProvider);

const settings = {
  entity_id: entityIdSchema,
  acs_urls: z.array(endpointUrlSchema).min(1).max(20),
  slo_url: endpointUrlSchema.nullable(),
  certificate: certificateSchema.nullable(),
  require_signed_requests: z.boolean(),
  encrypt_assertions: z.boolean(),
  sign_response: z.boolean(),
  sign_assertion: z.boolean(),
  name_id_format: z.enum(NAME_ID_FORMATS),
  attribute_mapping: attributeMappingSchema.meta({
    description: 'SAML attribute name for each of our values released to the SP: email, name, groups (the user’s roles), roles',
  }),
  assertion_lifetime_seconds: z.number().int().min(30).max(3600),
  allow_idp_initiated: z.boolean(),
  enabled: z.boolean(),
};

const optionalSettings = Object.fromEntries(Object.entries(settings).map(([key, schema]) => [key, schema.optional()])) as {
  [K in keyof typeof settings]: z.ZodOptional<(typeof settings)[K]>;
};

const metadataXml = z
  .string()
  .max(256 * 1024)
  .meta({ description: 'The SP’s SAML metadata (an EntityDescriptor with an SPSSODescriptor)' });

export const ServiceProviderCreate = z.strictObject({ name: displayName, metadata_xml: metadataXml.optional(), ...optionalSettings });
export const ServiceProviderUpdate = z.strictObject({
  name: displayName.optional(),
  metadata_xml: metadataXml.optional(),
  ...optionalSettings,
});
type SettingsInput = Partial<z.output<z.ZodObject<typeof settings>>>;

export const SamlSigningKey = z.object({
  kid: z.string(),
  status: z.enum(['next', 'active', 'previous', 'retired']),
  certificate: z.string(),
  created_at: timestamp,
  activated_at: nullableTimestamp,
  retired_at: nullableTimestamp,
});
export const SamlSigningKeyPage = page(SamlSigningKey);
export const SamlKeyRotation = z.object({ activated: z.string(), previous: z.string().nullable(), next: z.string() });

function toServiceProvider(sp: ServiceProviderConfig, idpInitiatedUrl: string): z.input<typeof ServiceProvider> {
  return {
    id: sp.id,
    name: sp.name,
    entity_id: sp.entityId,
    acs_urls: sp.acsUrls,
    slo_url: sp.sloUrl,
    certificate: sp.certificate,
    require_signed_requests: sp.requireSignedRequests,
    encrypt_assertions: sp.encryptAssertions,
    sign_response: sp.signResponse,
    sign_assertion: sp.signAssertion,
    name_id_format: sp.nameIdFormat,
    attribute_mapping: Object.fromEntries(
      Object.entries(sp.attributeMapping).filter((entry): entry is [string, string] => Boolean(entry[1])),
    ),
    assertion_lifetime_seconds: sp.assertionLifetimeSeconds,
    allow_idp_initiated: sp.allowIdpInitiated,
    enabled: sp.enabled,
    idp_initiated_url: sp.allowIdpInitiated ? `${idpInitiatedUrl}?sp=${encodeURIComponent(sp.entityId)}` : null,
    created_at: iso(sp.createdAt),
    updated_at: iso(sp.updatedAt),
  };
}

/** Metadata as settings; a malformed document is the caller's 400, with what was wrong. */
function settingsFromMetadata(xml: string): { imported: SettingsInput; metadata: ImportedMetadata } {
  let metadata: ImportedMetadata;
  try {
    metadata = readSpMetadata(xml);
  } catch (error) {
    if (error instanceof SamlRefusal) throw badRequest(`body.metadata_xml: ${error.description}`, 'invalid_metadata');
    throw error;
  }
  const parsed = z
    .object({ entity_id: settings.entity_id, acs_urls: settings.acs_urls, slo_url: settings.slo_url.optional() })
    .safeParse({ entity_id: metadata.entityId, acs_urls: metadata.acsUrls, slo_url: metadata.sloUrl });
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw badRequest(`body.metadata_xml: ${issue?.path.join('.') ?? 'metadata'}: ${issue?.message ?? 'is invalid'}`, 'invalid_metadata');
  }
  const imported: SettingsInput = {
    ...parsed.data,
    ...(metadata.certificate ? { certificate: metadata.certificate } : {}),
    ...(metadata.requireSignedRequests ? { require_signed_requests: true } : {}),
    ...(metadata.wantAssertionsSigned ? { sign_assertion: true } : {}),
    ...(metadata.nameIdFormat ? { name_id_format: metadata.nameIdFormat } : {}),
  };
  return { imported, metadata };
}

/** The body's settings over the metadata's, over what is stored (on update). */
function mergedSettings(body: SettingsInput & { metadata_xml?: string }): SettingsInput {
  const { metadata_xml, ...explicit } = body;
  const fromMetadata = metadata_xml ? settingsFromMetadata(metadata_xml) : undefined;
  if (fromMetadata?.metadata.separateEncryptionCertificate && (explicit.encrypt_assertions ?? false) && !explicit.certificate) {
    throw badRequest(
      'body.metadata_xml: the SP encrypts with a different certificate than it signs with; give certificate explicitly',
      'invalid_metadata',
    );
  }
  const defined = Object.fromEntries(Object.entries(explicit).filter(([, value]) => value !== undefined)) as SettingsInput;
  return { ...fromMetadata?.imported, ...defined };
}

function rowData(input: SettingsInput) {
  return {
    ...(input.entity_id !== undefined ? { entityId: input.entity_id } : {}),
    ...(input.acs_urls !== undefined ? { acsUrls: input.acs_urls } : {}),
    ...(input.slo_url !== undefined ? { sloUrl: input.slo_url } : {}),
    ...(input.certificate !== undefined ? { certificate: input.certificate } : {}),
    ...(input.require_signed_requests !== undefined ? { requireSignedRequests: input.require_signed_requests } : {}),
    ...(input.encrypt_assertions !== undefined ? { encryptAssertions: input.encrypt_assertions } : {}),
    ...(input.sign_response !== undefined ? { signResponse: input.sign_response } : {}),
    ...(input.sign_assertion !== undefined ? { signAssertion: input.sign_assertion } : {}),
    ...(input.name_id_format !== undefined ? { nameIdFormat: input.name_id_format } : {}),
    ...(input.attribute_mapping !== undefined ? { attributeMapping: input.attribute_mapping as Prisma.InputJsonObject } : {}),
    ...(input.assertion_lifetime_seconds !== undefined ? { assertionLifetimeSeconds: input.assertion_lifetime_seconds } : {}),
    ...(input.allow_idp_initiated !== undefined ? { allowIdpInitiated: input.allow_idp_initiated } : {}),
    ...(input.enabled !== undefined ? { enabled: input.enabled } : {}),
  };
}

/** The stored row must keep the rules (ruleViolations) after the change; the first broken one is the 400. */
function checkRules(sp: ServiceProviderConfig): void {
  const [problem] = ruleViolations(sp);
  if (problem) throw badRequest(`body.${problem}`, 'invalid_service_provider');
}

const spParams = z.object({ serviceProviderId: uuidParam });
const DUPLICATE = 'a service provider with this name or entity ID already exists';

const endpointsOf = (publicUrl: string, slug: string) => idpEndpoints(publicUrl, slug);

/** What the audit trail keeps of a registration: its settings, never more than the certificate's public part. */
function auditedSettings(sp: ServiceProviderConfig) {
  return {
    name: sp.name,
    entity_id: sp.entityId,
    acs_urls: sp.acsUrls,
    slo_url: sp.sloUrl,
    has_certificate: Boolean(sp.certificate),
    require_signed_requests: sp.requireSignedRequests,
    encrypt_assertions: sp.encryptAssertions,
    sign_response: sp.signResponse,
    sign_assertion: sp.signAssertion,
    name_id_format: sp.nameIdFormat,
    attributes: Object.keys(sp.attributeMapping),
    allow_idp_initiated: sp.allowIdpInitiated,
    enabled: sp.enabled,
  };
}

export const serviceProviderRoutes = [
  defineRoute({
    method: 'GET',
    path: '/tenants/{tenant}/service-providers',
    operationId: 'listServiceProviders',
    summary: 'List SAML service providers (apps that sign in through the tenant’s SAML IdP)',
    tag: 'saml',
    permission: 'connections.read',
    query: z.object(paginationQuery),
    response: ServiceProviderPage,
    async handler({ deps, tenant, query, cursor }) {
      const after = cursor.decode(query.cursor);
      const rows = await deps.db.prisma.serviceProvider.findMany({
        where: { tenantId: tenant.id, ...(after ? { id: { gt: after } } : {}) },
        orderBy: { id: 'asc' },
        take: query.limit + 1,
      });
      const result = pageOf(rows, query.limit, (row) => row.id, cursor.encode);
      const { idpInitiated } = endpointsOf(deps.config.publicUrl, tenant.slug);
      return {
        data: result.data.map((row) => toServiceProvider(toServiceProviderConfig(row), idpInitiated)),
        next_cursor: result.next_cursor,
      };
    },
  }),
  defineRoute({
    method: 'POST',
    path: '/tenants/{tenant}/service-providers',
    operationId: 'createServiceProvider',
    summary: 'Register a SAML service provider, from its metadata XML and/or fields',
    tag: 'saml',
    permission: 'connections.write',
    body: ServiceProviderCreate,
    response: ServiceProvider,
    status: 201,
    async handler({ deps, tenant, body, audit }) {
      const input = mergedSettings(body);
      if (!input.entity_id || !input.acs_urls) throw badRequest('body: entity_id and acs_urls (or metadata_xml) are required');
      const sp = await deps.db.prisma
        .$transaction(async (tx) => {
          const row = await tx.serviceProvider.create({
            data: {
              tenantId: tenant.id,
              name: body.name,
              entityId: input.entity_id ?? '',
              acsUrls: input.acs_urls ?? [],
              ...rowData(input),
            },
          });
          const created = toServiceProviderConfig(row);
          checkRules(created);
          await audit(
            {
              action: 'saml.service_provider.created',
              resource: { type: 'service_provider', id: row.id },
              metadata: auditedSettings(created),
            },
            tx,
          );
          return created;
        })
        .catch(conflictOnDuplicate(DUPLICATE));
      return toServiceProvider(sp, endpointsOf(deps.config.publicUrl, tenant.slug).idpInitiated);
    },
  }),
  defineRoute({
    method: 'GET',
    path: '/tenants/{tenant}/service-providers/{serviceProviderId}',
    operationId: 'getServiceProvider',
    summary: 'Read a SAML service provider',
    tag: 'saml',
    permission: 'connections.read',
    params: spParams,
    response: ServiceProvider,
    async handler({ deps, tenant, params }) {
      const row = await deps.db.prisma.serviceProvider.findFirst({ where: { tenantId: tenant.id, id: params.serviceProviderId } });
      if (!row) throw notFound('no such service provider');
      return toServiceProvider(toServiceProviderConfig(row), endpointsOf(deps.config.publicUrl, tenant.slug).idpInitiated);
    },
  }),
  defineRoute({
    method: 'PATCH',
    path: '/tenants/{tenant}/service-providers/{serviceProviderId}',
    operationId: 'updateServiceProvider',
    summary: 'Change a SAML service provider (metadata_xml re-imports its entity ID, URLs and certificate)',
    tag: 'saml',
    permission: 'connections.write',
    params: spParams,
    body: ServiceProviderUpdate,
    response: ServiceProvider,
    async handler({ deps, tenant, params, body, audit }) {
      const input = mergedSettings(body);
      const sp = await deps.db.prisma
        .$transaction(async (tx) => {
          const before = await tx.serviceProvider.findFirst({ where: { tenantId: tenant.id, id: params.serviceProviderId } });
          if (!before) throw notFound('no such service provider');
          const row = await tx.serviceProvider.update({
            where: { id: before.id },
            data: { ...(body.name !== undefined ? { name: body.name } : {}), ...rowData(input) },
          });
          const updated = toServiceProviderConfig(row);
          checkRules(updated);
          await audit(
            {
              action: 'saml.service_provider.updated',
              resource: { type: 'service_provider', id: row.id },
              metadata: { before: auditedSettings(toServiceProviderConfig(before)), after: auditedSettings(updated) },
            },
            tx,
          );
          return updated;
        })
        .catch(conflictOnDuplicate(DUPLICATE));
      return toServiceProvider(sp, endpointsOf(deps.config.publicUrl, tenant.slug).idpInitiated);
    },
  }),
  defineRoute({
    method: 'DELETE',
    path: '/tenants/{tenant}/service-providers/{serviceProviderId}',
    operationId: 'deleteServiceProvider',
    summary: 'Delete a SAML service provider, its built-in sign-in client and the grants issued through it',
    tag: 'saml',
    permission: 'connections.write',
    params: spParams,
    async handler({ deps, tenant, params, audit, announce }) {
      await deps.db.prisma.$transaction(async (tx) => {
        const sp = await tx.serviceProvider.findFirst({ where: { tenantId: tenant.id, id: params.serviceProviderId } });
        if (!sp) throw notFound('no such service provider');
        const clientId = samlClientIdFor(sp.id);
        await tx.serviceProvider.delete({ where: { id: sp.id } });
        await tx.client.deleteMany({ where: { tenantId: tenant.id, clientId } });
        const revoked = await tx.$executeRaw`
          DELETE FROM "OidcPayload" WHERE "tenantId" = ${tenant.id}::uuid AND payload->>'clientId' = ${clientId}`;
        await audit(
          {
            action: 'saml.service_provider.deleted',
            resource: { type: 'service_provider', id: sp.id },
            metadata: { name: sp.name, entity_id: sp.entityId, revoked_records: revoked },
          },
          tx,
        );
      });
      await announce('clients');
      return undefined;
    },
  }),
  defineRoute({
    method: 'GET',
    path: '/tenants/{tenant}/saml/signing-keys',
    operationId: 'listSamlSigningKeys',
    summary: 'List the SAML IdP’s signing keys and their certificates (public parts only)',
    tag: 'saml',
    permission: 'keys.read',
    query: z.object(paginationQuery),
    response: SamlSigningKeyPage,
    async handler({ deps, tenant, query, cursor }) {
      const after = cursor.decode(query.cursor);
      const rows = await deps.db.prisma.signingKey.findMany({
        where: { tenantId: tenant.id, purpose: SAML_PURPOSE, ...(after ? { id: { gt: after } } : {}) },
        // The private key (vault ciphertext) is never read here.
        select: { id: true, kid: true, status: true, certificate: true, createdAt: true, activatedAt: true, retiredAt: true },
        orderBy: { id: 'asc' },
        take: query.limit + 1,
      });
      const result = pageOf(rows, query.limit, (row) => row.id, cursor.encode);
      return {
        data: result.data.map((row) => ({
          kid: row.kid,
          status: row.status as 'next' | 'active' | 'previous' | 'retired',
          certificate: row.certificate ?? '',
          created_at: iso(row.createdAt),
          activated_at: iso(row.activatedAt),
          retired_at: iso(row.retiredAt),
        })),
        next_cursor: result.next_cursor,
      };
    },
  }),
  defineRoute({
    method: 'POST',
    path: '/tenants/{tenant}/saml/signing-keys/rotate',
    operationId: 'rotateSamlSigningKeys',
    summary: 'Rotate the SAML signing key: the published next key signs from now on, the active one stays published as previous',
    tag: 'saml',
    permission: 'keys.write',
    response: SamlKeyRotation,
    async handler({ deps, tenant, actor }) {
      // rotateSamlKeys records saml.keys.rotated with the caller as actor.
      return rotateSamlKeys({ prisma: deps.db.prisma, vault: deps.vault, clock: deps.clock, audit: deps.audit }, tenant, actor);
    },
  }),
];
