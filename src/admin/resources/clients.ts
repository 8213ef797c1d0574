import { z } from 'zod';
import { randomToken, sha256 } from '../../crypto/random.js';
import { badRequest, conflict, notFound } from '../../errors.js';
import {
  AUTH_METHODS,
  type ClientInput,
  clientInputSchema,
  createClient,
  GRANT_TYPES,
  metadataOf,
  redirectUriSchema,
} from '../../oidc/clients.js';
import type { Prisma, PrismaClient } from '../../store/db.js';
import { iso, page, pageOf, paginationQuery, timestamp } from '../http.js';
import { defineRoute } from '../route.js';

/** A fresh client secret and the SHA-256 that is all we keep of it. */
export function newClientSecret(): { secret: string; hash: string } {
  const secret = randomToken(32);
  return { secret, hash: sha256(secret) };
}

export const Client = z.object({
  client_id: z.string(),
  name: z.string(),
  grant_types: z.array(z.string()),
  redirect_uris: z.array(z.string()),
  post_logout_redirect_uris: z.array(z.string()),
  scope: z.string(),
  token_endpoint_auth_method: z.string(),
  first_party: z.boolean(),
  resource_server: z.boolean(),
  backchannel_logout_uri: z.string().nullable(),
  /** Set when the client is a service account's credentials (managed through the service account). */
  service_account_id: z.uuid().nullable(),
  created_at: timestamp,
  updated_at: timestamp,
});
export const ClientPage = page(Client);
export const ClientCreated = Client.extend({ client_secret: z.string().nullable() });
export const ClientSecret = z.object({ client_id: z.string(), client_secret: z.string() });

const SCOPE_TOKEN = /^[\x21\x23-\x5B\x5D-\x7E]+$/;
const scope = z
  .string()
  .max(1000)
  .refine((s) => s.split(' ').every((token) => SCOPE_TOKEN.test(token)), { message: 'must be space-separated scope tokens' });

const clientFields = {
  name: z.string().trim().min(1).max(200),
  grant_types: z.array(z.enum(GRANT_TYPES)).min(1).max(GRANT_TYPES.length),
  redirect_uris: z.array(redirectUriSchema).max(20),
  post_logout_redirect_uris: z.array(redirectUriSchema).max(20),
  scope,
  first_party: z.boolean(),
  resource_server: z.boolean(),
  backchannel_logout_uri: redirectUriSchema.nullable(),
};

export const ClientCreate = z.strictObject({
  ...clientFields,
  grant_types: clientFields.grant_types.optional(),
  redirect_uris: clientFields.redirect_uris.optional(),
  post_logout_redirect_uris: clientFields.post_logout_redirect_uris.optional(),
  scope: scope.optional(),
  first_party: z.boolean().optional(),
  resource_server: z.boolean().optional(),
  backchannel_logout_uri: redirectUriSchema.optional(),
  public: z.boolean().optional(),
  token_endpoint_auth_method: z.enum(AUTH_METHODS).optional(),
  jwks: z.object({ keys: z.array(z.record(z.string(), z.unknown())).min(1).max(10) }).optional(),
  id_token_signed_response_alg: z.enum(['RS256', 'ES256', 'EdDSA']).optional(),
});

/** Everything but the authentication method, which would change what the client's credentials are. */
export const ClientUpdate = z.strictObject(
  Object.fromEntries(Object.entries(clientFields).map(([key, schema]) => [key, schema.optional()])) as {
    [K in keyof typeof clientFields]: z.ZodOptional<(typeof clientFields)[K]>;
  },
);

type ClientRow = {
  id: string;
  clientId: string;
  name: string;
  secretHash: string | null;
  metadata: unknown;
  firstParty: boolean;
  resourceServer: boolean;
  createdAt: Date;
  updatedAt: Date;
};

const strings = (value: unknown): string[] => (Array.isArray(value) ? value.map(String) : []);

function toClient(row: ClientRow, serviceAccountId: string | null): z.input<typeof Client> {
  const m = row.metadata as Record<string, unknown>;
  return {
    client_id: row.clientId,
    name: row.name,
    grant_types: strings(m.grant_types),
    redirect_uris: strings(m.redirect_uris),
    post_logout_redirect_uris: strings(m.post_logout_redirect_uris),
    scope: String(m.scope ?? ''),
    token_endpoint_auth_method: String(m.token_endpoint_auth_method ?? ''),
    first_party: row.firstParty,
    resource_server: row.resourceServer,
    backchannel_logout_uri: typeof m.backchannel_logout_uri === 'string' ? m.backchannel_logout_uri : null,
    service_account_id: serviceAccountId,
    created_at: iso(row.createdAt),
    updated_at: iso(row.updatedAt),
  };
}

/** What createClient would have been given to produce this row: the base an update is applied to. */
function inputOf(row: ClientRow): ClientInput {
  const m = row.metadata as Record<string, unknown>;
  const method = m.token_endpoint_auth_method as ClientInput['tokenEndpointAuthMethod'];
  return {
    name: row.name,
    grantTypes: strings(m.grant_types) as ClientInput['grantTypes'],
    redirectUris: strings(m.redirect_uris),
    postLogoutRedirectUris: strings(m.post_logout_redirect_uris),
    ...(typeof m.scope === 'string' && m.scope ? { scope: m.scope } : {}),
    public: method === 'none',
    tokenEndpointAuthMethod: method,
    ...(m.jwks ? { jwks: m.jwks as ClientInput['jwks'] } : {}),
    firstParty: row.firstParty,
    resourceServer: row.resourceServer,
    ...(typeof m.backchannel_logout_uri === 'string' ? { backchannelLogoutUri: m.backchannel_logout_uri } : {}),
    ...(typeof m.id_token_signed_response_alg === 'string'
      ? { idTokenSignedResponseAlg: m.id_token_signed_response_alg as ClientInput['idTokenSignedResponseAlg'] }
      : {}),
  };
}

type Db = PrismaClient | Prisma.TransactionClient;

async function findClient(db: Db, tenantId: string, clientId: string) {
  const row = await db.client.findFirst({ where: { tenantId, clientId } });
  if (!row) throw notFound('no such client');
  const owner = await db.serviceAccount.findFirst({ where: { tenantId, clientId }, select: { id: true } });
  return { row, serviceAccountId: owner?.id ?? null };
}

async function findPlainClient(db: Db, tenantId: string, clientId: string) {
  const found = await findClient(db, tenantId, clientId);
  if (found.serviceAccountId) throw conflict('this client holds a service account’s credentials: manage it through the service account');
  return found.row;
}

const clientParams = z.object({ clientId: z.string().regex(/^[A-Za-z0-9_-]{1,128}$/, { message: 'is not a client id' }) });

function validated(input: ClientInput) {
  const parsed = clientInputSchema.safeParse(input);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw badRequest(`body.${issue?.path.join('.') || 'client'}: ${issue?.message ?? 'is invalid'}`, 'invalid_client_metadata');
  }
  return parsed.data;
}

export const clientRoutes = [
  defineRoute({
    method: 'GET',
    path: '/tenants/{tenant}/clients',
    operationId: 'listClients',
    summary: 'List OIDC clients (apps)',
    tag: 'clients',
    permission: 'clients.read',
    query: z.object(paginationQuery),
    response: ClientPage,
    async handler({ deps, tenant, query, cursor }) {
      const prisma = deps.db.prisma;
      const after = cursor.decode(query.cursor);
      const rows = await prisma.client.findMany({
        where: { tenantId: tenant.id, ...(after ? { id: { gt: after } } : {}) },
        orderBy: { id: 'asc' },
        take: query.limit + 1,
      });
      const result = pageOf(rows, query.limit, (row) => row.id, cursor.encode);
      const owners = await prisma.serviceAccount.findMany({
        where: { tenantId: tenant.id, clientId: { in: result.data.map((row) => row.clientId) } },
        select: { id: true, clientId: true },
      });
      const ownerOf = (clientId: string) => owners.find((o) => o.clientId === clientId)?.id ?? null;
      return { data: result.data.map((row) => toClient(row, ownerOf(row.clientId))), next_cursor: result.next_cursor };
    },
  }),
  defineRoute({
    method: 'POST',
    path: '/tenants/{tenant}/clients',
    operationId: 'createClient',
    summary: 'Register an OIDC client; a confidential client’s secret is returned this once',
    tag: 'clients',
    permission: 'clients.write',
    body: ClientCreate,
    response: ClientCreated,
    status: 201,
    async handler({ deps, tenant, body, actor, announce }) {
      const prisma = deps.db.prisma;
      const input: ClientInput = {
        name: body.name,
        grantTypes: body.grant_types,
        redirectUris: body.redirect_uris,
        postLogoutRedirectUris: body.post_logout_redirect_uris,
        scope: body.scope,
        public: body.public,
        tokenEndpointAuthMethod: body.token_endpoint_auth_method,
        jwks: body.jwks,
        firstParty: body.first_party,
        resourceServer: body.resource_server,
        backchannelLogoutUri: body.backchannel_logout_uri,
        idTokenSignedResponseAlg: body.id_token_signed_response_alg,
      };
      validated(input);
      // createClient records client.created with the caller as actor.
      const created = await createClient({ prisma, audit: deps.audit }, tenant.id, input, actor);
      await announce('clients');
      const { row } = await findClient(prisma, tenant.id, created.clientId);
      return { ...toClient(row, null), client_secret: created.clientSecret ?? null };
    },
  }),
  defineRoute({
    method: 'GET',
    path: '/tenants/{tenant}/clients/{clientId}',
    operationId: 'getClient',
    summary: 'Read a client',
    tag: 'clients',
    permission: 'clients.read',
    params: clientParams,
    response: Client,
    async handler({ deps, tenant, params }) {
      const { row, serviceAccountId } = await findClient(deps.db.prisma, tenant.id, params.clientId);
      return toClient(row, serviceAccountId);
    },
  }),
  defineRoute({
    method: 'PATCH',
    path: '/tenants/{tenant}/clients/{clientId}',
    operationId: 'updateClient',
    summary: 'Change a client’s metadata (not its authentication method)',
    tag: 'clients',
    permission: 'clients.write',
    params: clientParams,
    body: ClientUpdate,
    response: Client,
    async handler({ deps, tenant, params, body, audit, announce }) {
      const row = await deps.db.prisma.$transaction(async (tx) => {
        const before = await findPlainClient(tx, tenant.id, params.clientId);
        const base = inputOf(before);
        const input = validated({
          ...base,
          ...(body.name !== undefined ? { name: body.name } : {}),
          ...(body.grant_types !== undefined ? { grantTypes: body.grant_types } : {}),
          ...(body.redirect_uris !== undefined ? { redirectUris: body.redirect_uris } : {}),
          ...(body.post_logout_redirect_uris !== undefined ? { postLogoutRedirectUris: body.post_logout_redirect_uris } : {}),
          ...(body.scope !== undefined ? { scope: body.scope } : {}),
          ...(body.first_party !== undefined ? { firstParty: body.first_party } : {}),
          ...(body.resource_server !== undefined ? { resourceServer: body.resource_server } : {}),
          ...(body.backchannel_logout_uri !== undefined ? { backchannelLogoutUri: body.backchannel_logout_uri ?? undefined } : {}),
        });
        const metadata = metadataOf(input);
        const updated = await tx.client.update({
          where: { id: before.id },
          data: {
            name: input.name,
            metadata: metadata as Prisma.InputJsonObject,
            firstParty: input.firstParty,
            resourceServer: input.resourceServer,
          },
        });
        await audit(
          {
            action: 'client.updated',
            resource: { type: 'client', id: before.clientId },
            metadata: { before: before.metadata, after: metadata },
          },
          tx,
        );
        return updated;
      });
      await announce('clients');
      return toClient(row, null);
    },
  }),
  defineRoute({
    method: 'POST',
    path: '/tenants/{tenant}/clients/{clientId}/secret',
    operationId: 'rotateClientSecret',
    summary: 'Replace a confidential client’s secret (returned this once; the old one stops working)',
    tag: 'clients',
    permission: 'clients.write',
    params: clientParams,
    response: ClientSecret,
    status: 201,
    async handler({ deps, tenant, params, audit, announce }) {
      const secret = await deps.db.prisma.$transaction(async (tx) => {
        const client = await findPlainClient(tx, tenant.id, params.clientId);
        if (!client.secretHash) throw conflict('this client authenticates without a shared secret');
        const fresh = newClientSecret();
        await tx.client.update({ where: { id: client.id }, data: { secretHash: fresh.hash } });
        await audit({ action: 'client.secret_rotated', resource: { type: 'client', id: client.clientId } }, tx);
        return fresh.secret;
      });
      await announce('clients');
      return { client_id: params.clientId, client_secret: secret };
    },
  }),
  defineRoute({
    method: 'DELETE',
    path: '/tenants/{tenant}/clients/{clientId}',
    operationId: 'deleteClient',
    summary: 'Delete a client and revoke the grants and refresh tokens issued to it',
    tag: 'clients',
    permission: 'clients.write',
    params: clientParams,
    async handler({ deps, tenant, params, audit, announce }) {
      await deps.db.prisma.$transaction(async (tx) => {
        const client = await findPlainClient(tx, tenant.id, params.clientId);
        await tx.client.delete({ where: { id: client.id } });
        const revoked = await tx.$executeRaw`
          DELETE FROM "OidcPayload" WHERE "tenantId" = ${tenant.id}::uuid AND payload->>'clientId' = ${client.clientId}`;
        await audit(
          {
            action: 'client.deleted',
            resource: { type: 'client', id: client.clientId },
            metadata: { name: client.name, revoked_records: revoked },
          },
          tx,
        );
      });
      await announce('clients');
      return undefined;
    },
  }),
];
