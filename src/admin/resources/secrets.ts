import { randomUUID } from 'node:crypto';
import { z } from 'zod';
import { SECRET_VALUE } from '../../crypto/reencrypt.js';
import type { Vault } from '../../crypto/vault.js';
import { notFound } from '../../errors.js';
import type { Prisma, PrismaClient } from '../../store/db.js';
import { conflictOnDuplicate, description, iso, page, pageOf, paginationQuery, timestamp, uuidParam } from '../http.js';
import { defineRoute } from '../route.js';

/**
 * Third-party secrets (upstream IdP client secrets, SMTP passwords, webhook
 * keys) in the vault. The API stores and replaces them but never returns a
 * value: internal consumers read them with `readSecretValue`.
 */

export const MAX_SECRET_BYTES = 64 * 1024;

export const Secret = z.object({
  id: z.uuid(),
  name: z.string(),
  description: z.string().nullable(),
  created_at: timestamp,
  updated_at: timestamp,
});
export const SecretPage = page(Secret);

const secretName = z
  .string()
  .regex(/^[A-Za-z0-9][A-Za-z0-9._/-]{0,127}$/, { message: 'must be 1–128 letters, digits or . _ / -, starting with a letter or digit' });
const secretValue = z
  .string()
  .min(1)
  .refine((value) => Buffer.byteLength(value) <= MAX_SECRET_BYTES, { message: `must be at most ${MAX_SECRET_BYTES} bytes` });

export const SecretCreate = z.strictObject({ name: secretName, description: description.optional(), value: secretValue });
export const SecretUpdate = z.strictObject({ description: description.nullable().optional(), value: secretValue.optional() });

type SecretRow = { id: string; name: string; description: string | null; createdAt: Date; updatedAt: Date };

function toSecret(row: SecretRow): z.input<typeof Secret> {
  return { id: row.id, name: row.name, description: row.description, created_at: iso(row.createdAt), updated_at: iso(row.updatedAt) };
}

const METADATA = { id: true, name: true, description: true, createdAt: true, updatedAt: true } as const;

async function findSecret(db: PrismaClient | Prisma.TransactionClient, tenantId: string, id: string): Promise<SecretRow> {
  const row = await db.secret.findFirst({ where: { id, tenantId }, select: METADATA });
  if (!row) throw notFound('no such secret');
  return row;
}

/** The plaintext of a tenant's secret, for code that uses it (never for API responses); null when absent. */
export async function readSecretValue(
  { prisma, vault }: { prisma: PrismaClient; vault: Vault },
  tenantId: string,
  name: string,
): Promise<string | null> {
  const row = await prisma.secret.findFirst({ where: { tenantId, name }, select: { id: true, value: true } });
  return row ? vault.decryptString(row.value, SECRET_VALUE.binding(tenantId, row.id)) : null;
}

const secretParams = z.object({ secretId: uuidParam });

export const secretRoutes = [
  defineRoute({
    method: 'GET',
    path: '/tenants/{tenant}/secrets',
    operationId: 'listSecrets',
    summary: 'List vault secrets (metadata only)',
    tag: 'secrets',
    permission: 'secrets.read',
    query: z.object({ ...paginationQuery, name: secretName.optional() }),
    response: SecretPage,
    async handler({ deps, tenant, query, cursor }) {
      const after = cursor.decode(query.cursor);
      const rows = await deps.db.prisma.secret.findMany({
        where: { tenantId: tenant.id, ...(query.name ? { name: query.name } : {}), ...(after ? { id: { gt: after } } : {}) },
        select: METADATA,
        orderBy: { id: 'asc' },
        take: query.limit + 1,
      });
      const result = pageOf(rows, query.limit, (row) => row.id, cursor.encode);
      return { data: result.data.map(toSecret), next_cursor: result.next_cursor };
    },
  }),
  defineRoute({
    method: 'POST',
    path: '/tenants/{tenant}/secrets',
    operationId: 'createSecret',
    summary: 'Store a secret, encrypted; the value is never returned',
    tag: 'secrets',
    permission: 'secrets.write',
    body: SecretCreate,
    response: Secret,
    status: 201,
    async handler({ deps, tenant, body, audit }) {
      const id = randomUUID();
      const value = deps.vault.encrypt(body.value, SECRET_VALUE.binding(tenant.id, id));
      const row = await deps.db.prisma
        .$transaction(async (tx) => {
          const created = await tx.secret.create({
            data: { id, tenantId: tenant.id, name: body.name, description: body.description ?? null, value },
            select: METADATA,
          });
          await audit({ action: 'secret.created', resource: { type: 'secret', id }, metadata: { name: body.name } }, tx);
          return created;
        })
        .catch(conflictOnDuplicate(`a secret named ${body.name} already exists`));
      return toSecret(row);
    },
  }),
  defineRoute({
    method: 'GET',
    path: '/tenants/{tenant}/secrets/{secretId}',
    operationId: 'getSecret',
    summary: 'Read a secret’s metadata (never its value)',
    tag: 'secrets',
    permission: 'secrets.read',
    params: secretParams,
    response: Secret,
    async handler({ deps, tenant, params }) {
      return toSecret(await findSecret(deps.db.prisma, tenant.id, params.secretId));
    },
  }),
  defineRoute({
    method: 'PATCH',
    path: '/tenants/{tenant}/secrets/{secretId}',
    operationId: 'updateSecret',
    summary: 'Replace a secret’s value or change its description',
    tag: 'secrets',
    permission: 'secrets.write',
    params: secretParams,
    body: SecretUpdate,
    response: Secret,
    async handler({ deps, tenant, params, body, audit }) {
      const row = await deps.db.prisma.$transaction(async (tx) => {
        const before = await findSecret(tx, tenant.id, params.secretId);
        const updated = await tx.secret.update({
          where: { id: before.id },
          data: {
            ...(body.description !== undefined ? { description: body.description } : {}),
            ...(body.value !== undefined ? { value: deps.vault.encrypt(body.value, SECRET_VALUE.binding(tenant.id, before.id)) } : {}),
          },
          select: METADATA,
        });
        await audit(
          {
            action: 'secret.updated',
            resource: { type: 'secret', id: before.id },
            metadata: { name: before.name, value_replaced: body.value !== undefined, description_changed: body.description !== undefined },
          },
          tx,
        );
        return updated;
      });
      return toSecret(row);
    },
  }),
  defineRoute({
    method: 'DELETE',
    path: '/tenants/{tenant}/secrets/{secretId}',
    operationId: 'deleteSecret',
    summary: 'Delete a secret',
    tag: 'secrets',
    permission: 'secrets.write',
    params: secretParams,
    async handler({ deps, tenant, params, audit }) {
      await deps.db.prisma.$transaction(async (tx) => {
        const secret = await findSecret(tx, tenant.id, params.secretId);
        await tx.secret.delete({ where: { id: secret.id } });
        await audit({ action: 'secret.deleted', resource: { type: 'secret', id: secret.id }, metadata: { name: secret.name } }, tx);
      });
      return undefined;
    },
  }),
];
