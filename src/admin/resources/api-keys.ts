import { z } from 'zod';
import { badRequest, conflict, notFound } from '../../errors.js';
import type { Prisma, PrismaClient } from '../../store/db.js';
import { newApiKey } from '../api-key-format.js';
import { displayName, iso, nullableTimestamp, page, pageOf, paginationQuery, timestamp, uuidParam } from '../http.js';
import { assertCanGrant, managementPermissionSchema, permissionList } from '../rbac.js';
import { defineRoute } from '../route.js';
import type { RecordAudit } from './service-accounts.js';

const MAX_LIFETIME_SECONDS = 5 * 366 * 24 * 3600;

export const ApiKey = z.object({
  id: z.uuid(),
  name: z.string(),
  /** The visible part of the key (`idp_<prefix>_…`), to recognise it. */
  prefix: z.string(),
  scopes: z.array(z.string()),
  status: z.enum(['active', 'expired', 'revoked']),
  expires_at: nullableTimestamp,
  revoked_at: nullableTimestamp,
  last_used_at: nullableTimestamp,
  platform_admin: z.boolean(),
  created_by: z.string().nullable(),
  created_at: timestamp,
});
export const ApiKeyPage = page(ApiKey);
export const ApiKeyCreated = ApiKey.extend({
  key: z.string().meta({ description: 'the key itself: shown this once, only its hash is stored' }),
});

export const ApiKeyCreate = z
  .strictObject({
    name: displayName,
    /** Management permissions only: an API key authenticates to this API and nowhere else. */
    scopes: permissionList(managementPermissionSchema, { min: 1 }),
    expires_at: z.iso.datetime({ offset: true }).optional(),
    expires_in_seconds: z.number().int().min(60).max(MAX_LIFETIME_SECONDS).optional(),
  })
  .refine((body) => !(body.expires_at && body.expires_in_seconds), { message: 'give expires_at or expires_in_seconds, not both' });

type ApiKeyRow = Awaited<ReturnType<PrismaClient['apiKey']['findFirstOrThrow']>>;

function statusOf(row: ApiKeyRow, now: number): 'active' | 'expired' | 'revoked' {
  if (row.revokedAt) return 'revoked';
  if (row.expiresAt && row.expiresAt.getTime() <= now) return 'expired';
  return 'active';
}

function toApiKey(row: ApiKeyRow, now: number): z.input<typeof ApiKey> {
  return {
    id: row.id,
    name: row.name,
    prefix: row.prefix,
    scopes: [...row.scopes].sort(),
    status: statusOf(row, now),
    expires_at: iso(row.expiresAt),
    revoked_at: iso(row.revokedAt),
    last_used_at: iso(row.lastUsedAt),
    platform_admin: row.platformAdmin,
    created_by: row.createdBy,
    created_at: iso(row.createdAt),
  };
}

export interface NewApiKeyInput {
  name: string;
  scopes: string[];
  expiresAt?: Date;
  platformAdmin?: boolean;
  createdBy: string;
}

/**
 * Creates an API key, audited; shared by the API and the CLI. Names are unique
 * among a tenant's keys that are not revoked (a revoked key keeps its row for
 * the audit trail, and its name may be reused).
 */
export async function createApiKey(
  prisma: PrismaClient,
  tenantId: string,
  input: NewApiKeyInput,
  now: number,
  record: RecordAudit,
): Promise<{ apiKey: z.input<typeof ApiKey>; key: string }> {
  if (input.expiresAt && input.expiresAt.getTime() <= now) throw badRequest('body.expires_at: must be in the future');
  const generated = newApiKey();
  const row = await prisma.$transaction(async (tx) => {
    await tx.$executeRaw`SELECT pg_advisory_xact_lock(hashtext(${`api-keys:${tenantId}`}))`;
    const clash = await tx.apiKey.findFirst({ where: { tenantId, name: input.name, revokedAt: null }, select: { id: true } });
    if (clash) throw conflict(`an API key named ${input.name} already exists`);
    const created = await tx.apiKey.create({
      data: {
        tenantId,
        name: input.name,
        prefix: generated.prefix,
        keyHash: generated.keyHash,
        scopes: input.scopes,
        expiresAt: input.expiresAt ?? null,
        platformAdmin: input.platformAdmin ?? false,
        createdBy: input.createdBy,
      },
    });
    await record(
      {
        action: 'api_key.created',
        resource: { type: 'api_key', id: created.id },
        metadata: {
          name: created.name,
          prefix: created.prefix,
          scopes: created.scopes,
          expires_at: created.expiresAt,
          platform_admin: created.platformAdmin,
        },
      },
      tx,
    );
    return created;
  });
  return { apiKey: toApiKey(row, now), key: generated.key };
}

async function findKey(db: PrismaClient | Prisma.TransactionClient, tenantId: string, id: string): Promise<ApiKeyRow> {
  const row = await db.apiKey.findFirst({ where: { id, tenantId } });
  if (!row) throw notFound('no such API key');
  return row;
}

const keyParams = z.object({ apiKeyId: uuidParam });

export const apiKeyRoutes = [
  defineRoute({
    method: 'GET',
    path: '/tenants/{tenant}/api-keys',
    operationId: 'listApiKeys',
    summary: 'List API keys (never the keys themselves)',
    tag: 'api keys',
    permission: 'api_keys.read',
    query: z.object(paginationQuery),
    response: ApiKeyPage,
    async handler({ deps, tenant, query, cursor }) {
      const after = cursor.decode(query.cursor);
      const rows = await deps.db.prisma.apiKey.findMany({
        where: { tenantId: tenant.id, ...(after ? { id: { gt: after } } : {}) },
        orderBy: { id: 'asc' },
        take: query.limit + 1,
      });
      const now = deps.clock.now();
      const result = pageOf(rows, query.limit, (row) => row.id, cursor.encode);
      return { data: result.data.map((row) => toApiKey(row, now)), next_cursor: result.next_cursor };
    },
  }),
  defineRoute({
    method: 'POST',
    path: '/tenants/{tenant}/api-keys',
    operationId: 'createApiKey',
    summary: 'Create an API key; the key is returned this once',
    tag: 'api keys',
    permission: 'api_keys.write',
    body: ApiKeyCreate,
    response: ApiKeyCreated,
    status: 201,
    async handler({ deps, tenant, caller, body, audit }) {
      assertCanGrant(caller, body.scopes);
      const now = deps.clock.now();
      const expiresAt = body.expires_at
        ? new Date(body.expires_at)
        : body.expires_in_seconds
          ? new Date(now + body.expires_in_seconds * 1000)
          : undefined;
      const created = await createApiKey(
        deps.db.prisma,
        tenant.id,
        { name: body.name, scopes: body.scopes, expiresAt, createdBy: `${caller.kind}:${caller.id}` },
        now,
        audit,
      );
      return { ...created.apiKey, key: created.key };
    },
  }),
  defineRoute({
    method: 'GET',
    path: '/tenants/{tenant}/api-keys/{apiKeyId}',
    operationId: 'getApiKey',
    summary: 'Read an API key’s metadata',
    tag: 'api keys',
    permission: 'api_keys.read',
    params: keyParams,
    response: ApiKey,
    async handler({ deps, tenant, params }) {
      return toApiKey(await findKey(deps.db.prisma, tenant.id, params.apiKeyId), deps.clock.now());
    },
  }),
  defineRoute({
    method: 'POST',
    path: '/tenants/{tenant}/api-keys/{apiKeyId}/revoke',
    operationId: 'revokeApiKey',
    summary: 'Revoke an API key at once; its record stays for the audit trail',
    tag: 'api keys',
    permission: 'api_keys.write',
    params: keyParams,
    response: ApiKey,
    async handler({ deps, tenant, params, audit }) {
      const now = deps.clock.now();
      const row = await deps.db.prisma.$transaction(async (tx) => {
        const key = await findKey(tx, tenant.id, params.apiKeyId);
        if (key.revokedAt) throw conflict('the API key is already revoked');
        const revoked = await tx.apiKey.update({ where: { id: key.id }, data: { revokedAt: new Date(now) } });
        await audit(
          { action: 'api_key.revoked', resource: { type: 'api_key', id: key.id }, metadata: { name: key.name, prefix: key.prefix } },
          tx,
        );
        return revoked;
      });
      return toApiKey(row, now);
    },
  }),
  defineRoute({
    method: 'DELETE',
    path: '/tenants/{tenant}/api-keys/{apiKeyId}',
    operationId: 'deleteApiKey',
    summary: 'Delete an API key and its record',
    tag: 'api keys',
    permission: 'api_keys.write',
    params: keyParams,
    async handler({ deps, tenant, params, audit }) {
      await deps.db.prisma.$transaction(async (tx) => {
        const key = await findKey(tx, tenant.id, params.apiKeyId);
        await tx.apiKey.delete({ where: { id: key.id } });
        await audit(
          { action: 'api_key.deleted', resource: { type: 'api_key', id: key.id }, metadata: { name: key.name, prefix: key.prefix } },
          tx,
        );
      });
      return undefined;
    },
  }),
];
