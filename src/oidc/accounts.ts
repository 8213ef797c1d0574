import type { Account, FindAccount } from 'oidc-provider';
import type { PrismaClient } from '../store/db.js';

export interface AccountInfo {
  id: string;
  email: string;
  emailVerified: boolean;
  name: string | null;
  roles: string[];
  permissions: string[];
}

/** A user of the tenant with their roles, or null when unknown or disabled (which invalidates their tokens). */
export async function loadAccount(prisma: PrismaClient, tenantId: string, userId: string): Promise<AccountInfo | null> {
  if (!/^[0-9a-f-]{36}$/i.test(userId)) return null;
  // Two queries at once: an include of the assignments and their roles would be three, one after another,
  // and every token for a user (code, refresh) loads the account.
  const [user, held] = await Promise.all([
    prisma.user.findFirst({
      where: { id: userId, tenantId, disabled: false },
      select: { id: true, email: true, emailVerified: true, name: true },
    }),
    prisma.role.findMany({ where: { tenantId, assignments: { some: { tenantId, userId } } }, select: { name: true, permissions: true } }),
  ]);
  if (!user) return null;
  const roles = held.map((role) => role.name).sort();
  const permissions = [...new Set(held.flatMap((role) => role.permissions))].sort();
  return { ...user, roles, permissions };
}

/** Claims by scope; `roles` is ours: the user's tenant roles, when the client asks for them. */
export const CLAIMS = {
  openid: ['sub'],
  profile: ['name'],
  email: ['email', 'email_verified'],
  roles: ['roles'],
};

export function findAccountFor(prisma: PrismaClient, tenantId: string): FindAccount {
  return async (_ctx, sub): Promise<Account | undefined> => {
    const account = await loadAccount(prisma, tenantId, sub);
    if (!account) return undefined;
    return {
      accountId: account.id,
      async claims() {
        return {
          sub: account.id,
          email: account.email,
          email_verified: account.emailVerified,
          ...(account.name ? { name: account.name } : {}),
          roles: account.roles,
        };
      },
    };
  };
}
