import { z } from 'zod';
import { badRequest, notFound } from '../../errors.js';
import { SIGNING_ALGS } from '../../oidc/keys.js';
import type { Prisma } from '../../store/db.js';
import { createTenant, TENANT_SLUG, tenantSettingsSchema } from '../../tenants/tenants.js';
import { displayName, iso, page, pageOf, paginationQuery, timestamp } from '../http.js';
import { defineRoute } from '../route.js';

const MAX_SETTINGS_BYTES = 16 * 1024;

export const Tenant = z.object({
  id: z.uuid(),
  slug: z.string(),
  display_name: z.string(),
  settings: z.record(z.string(), z.unknown()),
  created_at: timestamp,
  updated_at: timestamp,
});
export const TenantPage = page(Tenant);

/** Settings the server understands are checked; others (added by later features) pass through as JSON. */
const knownSettings = z.looseObject({
  limits: z.looseObject({ managementPerMinute: z.number().int().min(1).max(100_000).optional() }).optional(),
  apis: z
    .array(z.url({ protocol: /^https?$/ }).max(2000))
    .max(20)
    .optional(),
  signingAlgs: z.array(z.enum(SIGNING_ALGS)).max(SIGNING_ALGS.length).optional(),
});

export const TenantCreate = z.strictObject({
  slug: z.string().regex(TENANT_SLUG, { message: 'must be 2–63 lower-case letters, digits or dashes, starting with a letter or digit' }),
  display_name: displayName.optional(),
});

export const TenantUpdate = z.strictObject({
  display_name: displayName.optional(),
  /** Merged into the stored settings key by key; a null value removes the key. */
  settings: z.record(z.string().max(64), z.unknown()).optional(),
});

type TenantRow = { id: string; slug: string; displayName: string; settings: unknown; createdAt: Date; updatedAt: Date };

function toTenant(row: TenantRow): z.input<typeof Tenant> {
  return {
    id: row.id,
    slug: row.slug,
    display_name: row.displayName,
    settings: (row.settings ?? {}) as Record<string, unknown>,
    created_at: iso(row.createdAt),
    updated_at: iso(row.updatedAt),
  };
}

function mergeSettings(current: unknown, patch: Record<string, unknown>): Record<string, unknown> {
  const merged: Record<string, unknown> = { ...((current ?? {}) as Record<string, unknown>) };
  for (const [key, value] of Object.entries(patch)) {
    if (value === null) delete merged[key];
    else merged[key] = value;
  }
  if (Buffer.byteLength(JSON.stringify(merged)) > MAX_SETTINGS_BYTES)
    throw badRequest(`settings must stay under ${MAX_SETTINGS_BYTES} bytes`);
  for (const schema of [tenantSettingsSchema, knownSettings]) {
    const result = schema.safeParse(merged);
    if (!result.success) {
      const issue = result.error.issues[0];
      throw badRequest(`body.settings.${issue?.path.join('.') ?? ''}: ${issue?.message ?? 'is invalid'}`);
    }
  }
  return merged;
}

export const tenantRoutes = [
  defineRoute({
    method: 'GET',
    path: '/tenants',
    operationId: 'listTenants',
    summary: 'List tenants',
    tag: 'tenants',
    permission: 'tenants.read',
    platformOnly: true,
    query: z.object(paginationQuery),
    response: TenantPage,
    async handler({ deps, query, cursor }) {
      const after = cursor.decode(query.cursor);
      const rows = await deps.db.prisma.tenant.findMany({
        where: after ? { slug: { gt: after } } : {},
        orderBy: { slug: 'asc' },
        take: query.limit + 1,
      });
      const result = pageOf(rows, query.limit, (row) => row.slug, cursor.encode);
      return { data: result.data.map(toTenant), next_cursor: result.next_cursor };
    },
  }),
  defineRoute({
    method: 'POST',
    path: '/tenants',
    operationId: 'createTenant',
    summary: 'Create a tenant with its built-in roles',
    tag: 'tenants',
    permission: 'tenants.write',
    platformOnly: true,
    body: TenantCreate,
    response: Tenant,
    status: 201,
    async handler({ deps, body, actor, audit }) {
      const prisma = deps.db.prisma;
      // The new tenant's own trail records its creation (createTenant); the creator's trail records the act.
      const created = await createTenant({ prisma, audit: deps.audit }, { slug: body.slug, displayName: body.display_name }, actor);
      await audit({ action: 'tenant.provisioned', resource: { type: 'tenant', id: created.id }, metadata: { slug: created.slug } });
      return toTenant(await prisma.tenant.findUniqueOrThrow({ where: { id: created.id } }));
    },
  }),
  defineRoute({
    method: 'GET',
    path: '/tenants/{tenant}',
    operationId: 'getTenant',
    summary: 'Read a tenant and its settings',
    tag: 'tenants',
    permission: 'tenants.read',
    response: Tenant,
    async handler({ deps, tenant }) {
      const row = await deps.db.prisma.tenant.findUnique({ where: { id: tenant.id } });
      if (!row) throw notFound('no such tenant');
      return toTenant(row);
    },
  }),
  defineRoute({
    method: 'PATCH',
    path: '/tenants/{tenant}',
    operationId: 'updateTenant',
    summary: 'Change the display name or settings (merged key by key; null removes a key)',
    tag: 'tenants',
    permission: 'tenants.write',
    body: TenantUpdate,
    response: Tenant,
    async handler({ deps, tenant, body, audit, announce }) {
      const row = await deps.db.prisma.$transaction(async (tx) => {
        const [before] = await tx.$queryRaw<TenantRow[]>`SELECT * FROM "Tenant" WHERE id = ${tenant.id}::uuid FOR UPDATE`;
        if (!before) throw notFound('no such tenant');
        const settings = body.settings ? mergeSettings(before.settings, body.settings) : undefined;
        const updated = await tx.tenant.update({
          where: { id: tenant.id },
          data: {
            ...(body.display_name !== undefined ? { displayName: body.display_name } : {}),
            ...(settings ? { settings: settings as Prisma.InputJsonObject } : {}),
          },
        });
        await audit(
          {
            action: 'tenant.updated',
            resource: { type: 'tenant', id: tenant.id },
            metadata: {
              before: { display_name: before.displayName, settings: before.settings },
              after: { display_name: updated.displayName, settings: updated.settings },
            },
          },
          tx,
        );
        return updated;
      });
      await announce('tenant');
      return toTenant(row);
    },
  }),
];
