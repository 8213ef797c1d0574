import { z } from 'zod';
import type { AuditEventInput, AuditLog } from '../audit/audit.js';
import { randomToken, sha256 } from '../crypto/random.js';
import { badRequest } from '../errors.js';
import type { Prisma, PrismaClient } from '../store/db.js';

export const GRANT_TYPES = ['authorization_code', 'client_credentials', 'refresh_token'] as const;
export const AUTH_METHODS = ['client_secret_basic', 'client_secret_post', 'private_key_jwt', 'none'] as const;
const LOOPBACK_HOSTS = new Set(['127.0.0.1', '[::1]', 'localhost']);

/** Exact URIs only: https anywhere, http only on the loopback interface, never a fragment. */
export const redirectUriSchema = z
  .string()
  .max(2000)
  .refine(
    (value) => {
      try {
        const url = new URL(value);
        if (url.hash || url.username || url.password) return false;
        return url.protocol === 'https:' || (url.protocol === 'http:' && LOOPBACK_HOSTS.has(url.hostname));
      } catch {
        return false;
      }
    },
    { message: 'must be an absolute https URL (http only for loopback), without fragment or credentials' },
  );

const scopeToken = /^[\x21\x23-\x5B\x5D-\x7E]+$/;

export const clientInputSchema = z
  .object({
    name: z.string().trim().min(1).max(200),
    grantTypes: z.array(z.enum(GRANT_TYPES)).min(1).default(['authorization_code', 'refresh_token']),
    redirectUris: z.array(redirectUriSchema).max(20).default([]),
    postLogoutRedirectUris: z.array(redirectUriSchema).max(20).default([]),
    scope: z
      .string()
      .max(1000)
      .refine((s) => s.split(' ').every((token) => scopeToken.test(token)), { message: 'must be space-separated scope tokens' })
      .optional(),
    public: z.boolean().default(false),
    tokenEndpointAuthMethod: z.enum(AUTH_METHODS).optional(),
    jwks: z.object({ keys: z.array(z.record(z.string(), z.unknown())).min(1).max(10) }).optional(),
    firstParty: z.boolean().default(false),
    resourceServer: z.boolean().default(false),
    backchannelLogoutUri: redirectUriSchema.optional(),
    idTokenSignedResponseAlg: z.enum(['RS256', 'ES256', 'EdDSA']).optional(),
  })
  .superRefine((input, ctx) => {
    if (input.grantTypes.includes('authorization_code') && input.redirectUris.length === 0) {
      ctx.addIssue({ code: 'custom', path: ['redirectUris'], message: 'the authorization_code grant needs at least one redirect URI' });
    }
    if (input.public && input.grantTypes.includes('client_credentials')) {
      ctx.addIssue({ code: 'custom', path: ['grantTypes'], message: 'a public client cannot use client_credentials' });
    }
    if (input.tokenEndpointAuthMethod === 'private_key_jwt' && !input.jwks) {
      ctx.addIssue({ code: 'custom', path: ['jwks'], message: 'private_key_jwt needs the client’s public keys (jwks)' });
    }
  });

export type ClientInput = z.input<typeof clientInputSchema>;

const DEFAULT_SCOPE = 'openid profile email offline_access roles';

function authMethodOf(input: z.output<typeof clientInputSchema>): (typeof AUTH_METHODS)[number] {
  if (input.public) return 'none';
  return input.tokenEndpointAuthMethod ?? 'client_secret_basic';
}

/** oidc-provider client metadata, minus id and secret (those are columns). */
export function metadataOf(input: z.output<typeof clientInputSchema>): Record<string, unknown> {
  const method = authMethodOf(input);
  const grants = input.grantTypes;
  return {
    client_name: input.name,
    grant_types: grants,
    response_types: grants.includes('authorization_code') ? ['code'] : [],
    redirect_uris: input.redirectUris,
    post_logout_redirect_uris: input.postLogoutRedirectUris,
    scope: input.scope ?? DEFAULT_SCOPE,
    token_endpoint_auth_method: method,
    ...(input.jwks ? { jwks: input.jwks } : {}),
    ...(input.backchannelLogoutUri
      ? { backchannel_logout_uri: input.backchannelLogoutUri, backchannel_logout_session_required: true }
      : {}),
    ...(input.idTokenSignedResponseAlg ? { id_token_signed_response_alg: input.idTokenSignedResponseAlg } : {}),
  };
}

export interface ClientRow {
  clientId: string;
  secretHash: string | null;
  metadata: unknown;
  firstParty: boolean;
  resourceServer: boolean;
}

/**
 * What the oidc-provider adapter returns for a client. `client_secret` is the
 * stored SHA-256, never the secret: the provider compares hashes (see
 * provider.ts), so the secret exists only in the response that created it.
 */
export function clientMetadataFor(row: ClientRow): Record<string, unknown> {
  return {
    ...(row.metadata as Record<string, unknown>),
    client_id: row.clientId,
    ...(row.secretHash ? { client_secret: row.secretHash } : {}),
    first_party: row.firstParty,
    resource_server: row.resourceServer,
  };
}

export interface CreatedClient {
  clientId: string;
  /** Shown once: only its hash is stored. */
  clientSecret?: string;
  metadata: Record<string, unknown>;
}

export async function createClient(
  { prisma, audit }: { prisma: PrismaClient; audit: AuditLog },
  tenantId: string,
  raw: ClientInput,
  actor: AuditEventInput['actor'],
  tx?: Prisma.TransactionClient,
): Promise<CreatedClient> {
  const parsed = clientInputSchema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw badRequest(`${issue?.path.join('.') || 'client'} ${issue?.message ?? 'is invalid'}`, 'invalid_client_metadata');
  }
  const input = parsed.data;
  const metadata = metadataOf(input);
  const needsSecret = ['client_secret_basic', 'client_secret_post'].includes(metadata.token_endpoint_auth_method as string);
  const clientSecret = needsSecret ? randomToken(32) : undefined;
  const clientId = randomToken(16);
  const write = async (db: Prisma.TransactionClient) => {
    const row = await db.client.create({
      data: {
        tenantId,
        clientId,
        name: input.name,
        secretHash: clientSecret ? sha256(clientSecret) : null,
        metadata: metadata as Prisma.InputJsonValue,
        firstParty: input.firstParty,
        resourceServer: input.resourceServer,
      },
    });
    await audit.append(
      tenantId,
      {
        actor,
        action: 'client.created',
        resource: { type: 'client', id: clientId },
        metadata: { name: input.name, grant_types: input.grantTypes, auth_method: metadata.token_endpoint_auth_method },
      },
      db,
    );
    return row;
  };
  await (tx ? write(tx) : prisma.$transaction(write));
  return { clientId, clientSecret, metadata };
}
