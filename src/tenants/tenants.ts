import { LRUCache } from 'lru-cache';
import { z } from 'zod';
import { BUILTIN_ROLES } from '../admin/permissions.js';
import type { AuditEventInput, AuditLog } from '../audit/audit.js';
import { badRequest, conflict } from '../errors.js';
import { mfaSettingsSchema } from '../security/mfa.js';
import { accountProtectionSettings } from '../security/settings.js';
import type { PrismaClient } from '../store/db.js';
import type { KvStore } from '../store/index.js';

export const TENANT_SLUG = /^[a-z0-9][a-z0-9-]{1,62}$/;

export const tenantSettingsSchema = z
  .object({
    branding: z
      .object({
        logoUrl: z.url({ protocol: /^https$/ }).optional(),
        primaryColor: z
          .string()
          .regex(/^#[0-9a-fA-F]{6}$/)
          .optional(),
      })
      .optional(),
    // lockout, rateLimits, passwordPolicy, signup: see src/security/settings.ts for fields and defaults.
    ...accountProtectionSettings,
    /** Who must use a second factor, and whether passkeys are offered: see src/security/mfa.ts. */
    mfa: mfaSettingsSchema.optional(),
  })
  .passthrough();

export type TenantSettings = z.infer<typeof tenantSettingsSchema>;

/** What a request to /t/:tenant/… carries, resolved once at the edge. */
export interface TenantContext {
  readonly id: string;
  readonly slug: string;
  readonly displayName: string;
  readonly settings: TenantSettings;
}

/** Published whenever something a node caches about a tenant changes. */
export const TENANT_CHANGED = 'tenant-changed';

export interface TenantChange {
  tenantId: string;
  slug: string;
  /** What changed: 'tenant', 'clients', 'keys', … */
  what: string;
}

export function publishTenantChange(kv: KvStore, change: TenantChange): Promise<void> {
  return kv.publish(TENANT_CHANGED, JSON.stringify(change));
}

export async function onTenantChange(kv: KvStore, handler: (change: TenantChange) => void): Promise<() => Promise<void>> {
  return kv.subscribe(TENANT_CHANGED, (message) => {
    try {
      handler(JSON.parse(message) as TenantChange);
    } catch {
      // A malformed message from another node must not take this one down.
    }
  });
}

export interface TenantDirectory {
  bySlug(slug: string): Promise<TenantContext | null>;
  close(): Promise<void>;
}

/**
 * Tenants by slug, cached briefly and dropped on every node as soon as one
 * publishes a change.
 */
export async function createTenantDirectory({ prisma, kv }: { prisma: PrismaClient; kv: KvStore }): Promise<TenantDirectory> {
  const cache = new LRUCache<string, TenantContext>({ max: 10_000, ttl: 60_000 });
  const unsubscribe = await onTenantChange(kv, (change) => cache.delete(change.slug));
  return {
    async bySlug(slug) {
      if (!TENANT_SLUG.test(slug)) return null;
      const cached = cache.get(slug);
      if (cached) return cached;
      const row = await prisma.tenant.findUnique({ where: { slug } });
      if (!row) return null;
      const tenant = toContext(row);
      cache.set(slug, tenant);
      return tenant;
    },
    close: unsubscribe,
  };
}

function toContext(row: { id: string; slug: string; displayName: string; settings: unknown }): TenantContext {
  const settings = tenantSettingsSchema.safeParse(row.settings);
  return Object.freeze({ id: row.id, slug: row.slug, displayName: row.displayName, settings: settings.success ? settings.data : {} });
}

export interface CreateTenantInput {
  slug: string;
  displayName?: string;
}

/** Creates a tenant with its built-in roles; audited in the new tenant's own trail. */
export async function createTenant(
  { prisma, audit }: { prisma: PrismaClient; audit: AuditLog },
  input: CreateTenantInput,
  actor: AuditEventInput['actor'],
): Promise<TenantContext> {
  if (!TENANT_SLUG.test(input.slug)) {
    throw badRequest('slug must match ^[a-z0-9][a-z0-9-]{1,62}$', 'invalid_slug');
  }
  const displayName = (input.displayName ?? input.slug).trim().slice(0, 200) || input.slug;
  const existing = await prisma.tenant.findUnique({ where: { slug: input.slug } });
  if (existing) throw conflict(`tenant ${input.slug} already exists`);
  const row = await prisma
    .$transaction(async (tx) => {
      const created = await tx.tenant.create({
        data: {
          slug: input.slug,
          displayName,
          roles: {
            create: Object.entries(BUILTIN_ROLES).map(([name, permissions]) => ({ name, permissions: [...permissions], builtin: true })),
          },
        },
      });
      await audit.append(
        created.id,
        { actor, action: 'tenant.created', resource: { type: 'tenant', id: created.id }, metadata: { slug: created.slug } },
        tx,
      );
      return created;
    })
    .catch((error: unknown) => {
      if ((error as { code?: string }).code === 'P2002') throw conflict(`tenant ${input.slug} already exists`);
      throw error;
    });
  return toContext(row);
}
