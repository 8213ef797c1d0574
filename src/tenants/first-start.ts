import type { AppDeps } from '../app.js';
import { randomToken } from '../crypto/random.js';
import { createUser } from '../users/users.js';
import { createTenant } from './tenants.js';

export const DEFAULT_TENANT = 'default';
export const DEFAULT_ADMIN_EMAIL = 'admin@example.com';

export interface FirstStart {
  created: boolean;
  adminEmail?: string;
  /** Set only when the password was generated: it is shown this once and never stored in clear. */
  generatedPassword?: string;
}

/** On an empty database: tenant `default` and its owner. Later starts change nothing. */
export async function ensureDefaultTenant(deps: Pick<AppDeps, 'db' | 'audit' | 'passwords' | 'config'>): Promise<FirstStart> {
  const prisma = deps.db.prisma;
  if (await prisma.tenant.findUnique({ where: { slug: DEFAULT_TENANT } })) return { created: false };
  const actor = { type: 'system' as const, id: 'first-start' };
  let tenantId: string;
  try {
    tenantId = (await createTenant({ prisma, audit: deps.audit }, { slug: DEFAULT_TENANT, displayName: 'Default' }, actor)).id;
  } catch (error) {
    // Another node won the race to initialise: nothing left to do here.
    if ((error as { status?: number }).status === 409) return { created: false };
    throw error;
  }
  const adminEmail = deps.config.adminEmail ?? DEFAULT_ADMIN_EMAIL;
  const generatedPassword = deps.config.adminPassword ? undefined : randomToken(18);
  const password = deps.config.adminPassword ?? (generatedPassword as string);
  await createUser(
    { prisma, audit: deps.audit, passwords: deps.passwords },
    tenantId,
    { email: adminEmail, password, name: 'Administrator', emailVerified: true, roles: ['owner'] },
    actor,
  );
  return { created: true, adminEmail, generatedPassword };
}
