import { z } from 'zod';
import { CONNECTION_CLIENT_SECRET, CONNECTION_SP_PRIVATE_KEY } from '../crypto/reencrypt.js';
import type { Vault } from '../crypto/vault.js';
import type { PrismaClient } from '../store/db.js';
import type { Connection } from '../store/generated/client.js';
import { type AttributeMapping, CONNECTION_TYPES, PRESET_NAMES, type PresetName } from './presets.js';

/**
 * A tenant's upstream identity providers as the rest of the federation code
 * sees them: the row's JSON parsed and checked, its URLs on our side, and
 * its secrets opened from the vault only when a flow needs them.
 */

export const httpUrl = z
  .string()
  .max(2048)
  .refine(
    (value) => {
      try {
        const url = new URL(value);
        return (url.protocol === 'https:' || url.protocol === 'http:') && !url.username && !url.password;
      } catch {
        return false;
      }
    },
    { message: 'must be an http(s) URL without credentials' },
  );

/**
 * The IdP's side may be missing while an admin first fetches our SP metadata
 * to set the IdP up; such a connection is listed but cannot sign anyone in.
 */
export const samlConfigSchema = z.object({
  idpEntityId: z.string().min(1).max(1024).optional(),
  ssoUrl: httpUrl.optional(),
  ssoBinding: z.enum(['redirect', 'post']),
  /** Base64 DER bodies; several during a rollover. */
  certificates: z.array(z.string().min(16).max(16_384)).max(10),
  metadataUrl: httpUrl.optional(),
  signRequests: z.boolean(),
  nameIdFormat: z.string().min(1).max(200),
});
export type SamlConfig = z.infer<typeof samlConfigSchema>;

/** What a SAML connection needs before it can sign anyone in. */
export interface ReadySamlConfig extends SamlConfig {
  idpEntityId: string;
  ssoUrl: string;
}

export function isSamlReady(config: SamlConfig): config is ReadySamlConfig {
  return Boolean(config.idpEntityId && config.ssoUrl && config.certificates.length > 0);
}

export const oidcConfigSchema = z.object({
  issuer: httpUrl,
  clientId: z.string().min(1).max(512),
  scopes: z
    .array(z.string().regex(/^[\x21\x23-\x5b\x5d-\x7e]{1,128}$/))
    .min(1)
    .max(30),
  tokenEndpointAuthMethod: z.enum(['client_secret_basic', 'client_secret_post', 'none']),
  /** Fetch the userinfo endpoint after the code exchange (for providers that keep claims out of the ID token). */
  userinfo: z.boolean(),
  /** See OidcPreset.domainClaim. */
  domainClaim: z.string().max(64).optional(),
});
export type OidcConfig = z.infer<typeof oidcConfigSchema>;

const nameList = z.array(z.string().min(1).max(512)).max(20);
export const attributeMappingSchema = z.object({
  subject: nameList.optional(),
  email: nameList,
  emailVerified: nameList.optional(),
  name: nameList,
  givenName: nameList,
  familyName: nameList,
  groups: nameList,
});

/** Upstream group (or attribute value) → names of our roles. */
export const roleMappingSchema = z.record(
  z.string().min(1).max(512),
  z.union([z.string().min(1).max(200), z.array(z.string().min(1).max(200)).max(50)]).transform((v) => (Array.isArray(v) ? v : [v])),
);
export type RoleMapping = z.infer<typeof roleMappingSchema>;

interface ConnectionBase {
  id: string;
  tenantId: string;
  name: string;
  preset: PresetName;
  enabled: boolean;
  domains: string[];
  requireSso: boolean;
  enforcesMfa: boolean;
  mapping: AttributeMapping;
  roleMapping: RoleMapping;
  updatedAt: Date;
}

export interface SamlConnection extends ConnectionBase {
  type: 'saml';
  saml: SamlConfig;
  spCertificate: string | null;
  /** Vault ciphertext. */
  spPrivateKey: string | null;
}

export interface OidcConnection extends ConnectionBase {
  type: 'oidc';
  oidc: OidcConfig;
  /** Vault ciphertext. */
  clientSecret: string | null;
}

export type FederationConnection = SamlConnection | OidcConnection;

/** The row as a typed connection; null when its stored JSON does not fit (it is then unusable, not half-usable). */
export function toConnection(row: Connection): FederationConnection | null {
  const type = CONNECTION_TYPES.find((t) => t === row.type);
  const preset = PRESET_NAMES.find((p) => p === row.preset) ?? 'custom';
  const mapping = attributeMappingSchema.safeParse(row.attributeMapping);
  const roles = roleMappingSchema.safeParse(row.roleMapping);
  if (!type || !mapping.success || !roles.success) return null;
  const base: ConnectionBase = {
    id: row.id,
    tenantId: row.tenantId,
    name: row.name,
    preset,
    enabled: row.enabled,
    domains: row.domains,
    requireSso: row.requireSso,
    enforcesMfa: row.enforcesMfa,
    mapping: mapping.data,
    roleMapping: roles.data,
    updatedAt: row.updatedAt,
  };
  if (type === 'saml') {
    const saml = samlConfigSchema.safeParse(row.config);
    return saml.success ? { ...base, type, saml: saml.data, spCertificate: row.spCertificate, spPrivateKey: row.spPrivateKey } : null;
  }
  const oidc = oidcConfigSchema.safeParse(row.config);
  return oidc.success ? { ...base, type, oidc: oidc.data, clientSecret: row.clientSecret } : null;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** A tenant's connection by id, enabled or not; null for anything else (including another tenant's). */
export async function findConnection(prisma: PrismaClient, tenantId: string, id: string): Promise<FederationConnection | null> {
  if (!UUID.test(id)) return null;
  const row = await prisma.connection.findFirst({ where: { id, tenantId } });
  return row ? toConnection(row) : null;
}

export async function enabledConnections(prisma: PrismaClient, tenantId: string): Promise<FederationConnection[]> {
  const rows = await prisma.connection.findMany({ where: { tenantId, enabled: true }, orderBy: { name: 'asc' }, take: 50 });
  return rows.map(toConnection).filter((c): c is FederationConnection => c !== null);
}

/** The lower-cased domain of an address, or null when it has none. */
export function emailDomain(email: string): string | null {
  const at = email.lastIndexOf('@');
  // A NUL byte is in no stored domain, and PostgreSQL refuses it in a query (a 500).
  if (at < 1 || at === email.length - 1 || email.includes('\u0000')) return null;
  return email
    .slice(at + 1)
    .trim()
    .toLowerCase();
}

/** The enabled connection that claims `email`'s domain (the management API keeps a domain on one connection). */
export async function connectionForEmail(prisma: PrismaClient, tenantId: string, email: string): Promise<FederationConnection | null> {
  const domain = emailDomain(email);
  if (!domain) return null;
  const row = await prisma.connection.findFirst({ where: { tenantId, enabled: true, domains: { has: domain } } });
  return row ? toConnection(row) : null;
}

/** A connection that can sign someone in (a SAML one needs its IdP side imported). */
export function isUsable(connection: FederationConnection | null): connection is FederationConnection {
  if (!connection?.enabled) return false;
  return connection.type === 'oidc' || isSamlReady(connection.saml);
}

/**
 * The connection through which `email` must sign in, or null. Every way to
 * sign in or to set a password asks this, so a domain's policy has one
 * definition. A connection that cannot sign anyone in does not count: it
 * would lock its domain out altogether.
 */
export async function ssoRequiredFor(prisma: PrismaClient, tenantId: string, email: string): Promise<FederationConnection | null> {
  const connection = await connectionForEmail(prisma, tenantId, email);
  return connection?.requireSso && isUsable(connection) ? connection : null;
}

/** Our side of a connection: what an IdP admin configures there. */
export interface ConnectionEndpoints {
  /** Our SAML SP entity ID, which is also where our SP metadata is served. */
  spEntityId: string;
  spMetadataUrl: string;
  acsUrl: string;
  oidcRedirectUri: string;
}

export function connectionEndpoints(publicUrl: string, tenantSlug: string, connectionId: string): ConnectionEndpoints {
  const base = `${publicUrl}/t/${encodeURIComponent(tenantSlug)}/federation`;
  const metadata = `${base}/saml/${connectionId}/metadata`;
  return {
    spEntityId: metadata,
    spMetadataUrl: metadata,
    acsUrl: `${base}/saml/${connectionId}/acs`,
    oidcRedirectUri: `${base}/oidc/${connectionId}/callback`,
  };
}

export function openClientSecret(vault: Vault, connection: OidcConnection): string | undefined {
  if (!connection.clientSecret) return undefined;
  return vault.decryptString(connection.clientSecret, CONNECTION_CLIENT_SECRET.binding(connection.tenantId, connection.id));
}

export function openSpPrivateKey(vault: Vault, connection: SamlConnection): string | undefined {
  if (!connection.spPrivateKey) return undefined;
  return vault.decryptString(connection.spPrivateKey, CONNECTION_SP_PRIVATE_KEY.binding(connection.tenantId, connection.id));
}

/** The connection's domain is one it is trusted for (its admin listed it). */
export function trustsDomain(connection: Pick<FederationConnection, 'domains'>, email: string): boolean {
  const domain = emailDomain(email);
  return domain !== null && connection.domains.includes(domain);
}
