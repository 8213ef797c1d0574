import { X509Certificate } from 'node:crypto';
import { z } from 'zod';
import { redirectUriSchema } from '../oidc/clients.js';
import type { PrismaClient } from '../store/db.js';
import type { ServiceProvider } from '../store/generated/client.js';
import { NAME_ID_FORMATS, type NameIdFormat } from './constants.js';

/**
 * Downstream SAML apps registered with a tenant: what we trust about each
 * (entity ID, exact ACS URLs, certificate) and what we send it (NameID format,
 * attributes, signing and encryption choices). The management API edits them
 * (src/admin/resources/service-providers.ts); the SSO and SLO endpoints read them.
 */

/** Our user data an SP may receive, each under the attribute name the SP expects. */
export const ATTRIBUTE_SOURCES = ['email', 'name', 'groups', 'roles'] as const;
export type AttributeSource = (typeof ATTRIBUTE_SOURCES)[number];
export type AttributeMapping = Partial<Record<AttributeSource, string>>;

/** SAML attribute names: short names (`email`) or URIs (`http://schemas.xmlsoap.org/…/emailaddress`). */
export const attributeNameSchema = z
  .string()
  .trim()
  .min(1)
  .max(256)
  .regex(/^[^\p{Cc}\s<>"&]+$/u, { message: 'must be a SAML attribute name (no spaces, control characters or markup)' });

export const attributeMappingSchema = z.partialRecord(z.enum(ATTRIBUTE_SOURCES), attributeNameSchema);

export const entityIdSchema = z
  .string()
  .trim()
  .min(1)
  .max(1024)
  .regex(/^[^\p{Cc}\s]+$/u, { message: 'must be a URI without spaces or control characters' });

/** ACS and SLO endpoints: exact URLs, https (http only on loopback), like OIDC redirect URIs. */
export const endpointUrlSchema = redirectUriSchema;

export interface ServiceProviderConfig {
  id: string;
  tenantId: string;
  name: string;
  entityId: string;
  acsUrls: string[];
  sloUrl: string | null;
  certificate: string | null;
  requireSignedRequests: boolean;
  encryptAssertions: boolean;
  signResponse: boolean;
  signAssertion: boolean;
  nameIdFormat: NameIdFormat;
  attributeMapping: AttributeMapping;
  assertionLifetimeSeconds: number;
  allowIdpInitiated: boolean;
  enabled: boolean;
  createdAt: Date;
  updatedAt: Date;
}

export function toServiceProviderConfig(row: ServiceProvider): ServiceProviderConfig {
  const mapping = attributeMappingSchema.safeParse(row.attributeMapping);
  return {
    ...row,
    nameIdFormat: NAME_ID_FORMATS.includes(row.nameIdFormat as NameIdFormat) ? (row.nameIdFormat as NameIdFormat) : 'email',
    // A hand-edited, unreadable mapping releases nothing rather than something unintended.
    attributeMapping: mapping.success ? mapping.data : {},
  };
}

export async function findServiceProviderByEntityId(
  prisma: PrismaClient,
  tenantId: string,
  entityId: string,
): Promise<ServiceProviderConfig | undefined> {
  const row = await prisma.serviceProvider.findFirst({ where: { tenantId, entityId } });
  return row ? toServiceProviderConfig(row) : undefined;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export async function findServiceProviderById(
  prisma: PrismaClient,
  tenantId: string,
  id: string,
): Promise<ServiceProviderConfig | undefined> {
  if (!UUID.test(id)) return undefined;
  const row = await prisma.serviceProvider.findFirst({ where: { tenantId, id } });
  return row ? toServiceProviderConfig(row) : undefined;
}

// ---------------------------------------------------------------- certificates

const PEM_BLOCK = /-----BEGIN CERTIFICATE-----([\s\S]+?)-----END CERTIFICATE-----/;

/** A certificate as PEM, whether given as PEM or as the bare base64 that metadata carries; undefined when it does not parse. */
export function normalizeCertificate(value: string): string | undefined {
  const body = (PEM_BLOCK.exec(value)?.[1] ?? value).replace(/\s+/g, '');
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(body)) return undefined;
  const pem = `-----BEGIN CERTIFICATE-----\n${body.match(/.{1,64}/g)?.join('\n') ?? ''}\n-----END CERTIFICATE-----\n`;
  try {
    new X509Certificate(pem);
    return pem;
  } catch {
    return undefined;
  }
}

export const certificateSchema = z
  .string()
  .max(16 * 1024)
  .transform((value, ctx) => {
    const pem = normalizeCertificate(value);
    if (!pem) {
      ctx.addIssue({ code: 'custom', message: 'must be an X.509 certificate (PEM or base64 DER)' });
      return z.NEVER;
    }
    return pem;
  });

const isRsa = (pem: string) => new X509Certificate(pem).publicKey.asymmetricKeyType === 'rsa';

/** The fields whose combination matters, as stored. */
export interface ServiceProviderRules {
  certificate: string | null;
  requireSignedRequests: boolean;
  encryptAssertions: boolean;
  signResponse: boolean;
  signAssertion: boolean;
  acsUrls: string[];
}

/** What no combination of settings may break; a sentence per problem, empty when none. */
export function ruleViolations(sp: ServiceProviderRules): string[] {
  const problems: string[] = [];
  if (sp.acsUrls.length === 0) problems.push('acs_urls: at least one Assertion Consumer Service URL is needed');
  if (sp.requireSignedRequests && !sp.certificate) problems.push('certificate: needed to check signed requests');
  if (sp.encryptAssertions && !sp.certificate) problems.push('certificate: needed to encrypt assertions');
  if (sp.encryptAssertions && sp.certificate && !isRsa(sp.certificate)) problems.push('certificate: encryption needs an RSA key');
  // An assertion that nothing signs is a bearer token anyone could have written.
  if (!sp.signResponse && !sp.signAssertion) problems.push('sign_response, sign_assertion: at least one must be signed');
  return problems;
}
