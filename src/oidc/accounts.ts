import type { Account, FindAccount } from 'oidc-provider';
import type { PrismaClient } from '../store/db.js';
import { oidcRequestContext } from './request-context.js';

export interface AccountInfo {
  id: string;
  email: string;
  emailVerified: boolean;
  name: string | null;
  roles: string[];
  permissions: string[];
}

interface AccountRow {
  id: string;
  email: string;
  emailVerified: boolean;
  name: string | null;
  roles: { name: string; permissions: string[] }[];
}

/** A user of the tenant with their roles, or null when unknown or disabled (which invalidates their tokens). */
export async function loadAccount(prisma: PrismaClient, tenantId: string, userId: string): Promise<AccountInfo | null> {
  if (!/^[0-9a-f-]{36}$/i.test(userId)) return null;
  // One statement: every token for a user (code, refresh) loads the account, and Prisma would need two
  // (user, then roles through their assignments).
  const [row] = await prisma.$queryRaw<AccountRow[]>`
    SELECT u.id, u.email, u."emailVerified", u.name,
      COALESCE(json_agg(json_build_object('name', r.name, 'permissions', r.permissions)) FILTER (WHERE r.id IS NOT NULL), '[]') AS roles
    FROM "User" u
    LEFT JOIN "RoleAssignment" a ON a."tenantId" = u."tenantId" AND a."userId" = u.id
    LEFT JOIN "Role" r ON r."tenantId" = a."tenantId" AND r.id = a."roleId"
    WHERE u.id = ${userId}::uuid AND u."tenantId" = ${tenantId}::uuid AND NOT u.disabled
    GROUP BY u.id`;
  if (!row) return null;
  const roles = row.roles.map((role) => role.name).sort();
  const permissions = [...new Set(row.roles.flatMap((role) => role.permissions))].sort();
  return { id: row.id, email: row.email, emailVerified: row.emailVerified, name: row.name, roles, permissions };
}

/**
 * The account as this request already loaded it, or loaded now: within one
 * request oidc-provider asks for it several times (findAccount, the access
 * token's roles). Outside a provider request, always loaded afresh.
 */
export function requestAccount(prisma: PrismaClient, tenantId: string, userId: string): Promise<AccountInfo | null> {
  const loaded = oidcRequestContext.getStore()?.accounts;
  if (!loaded) return loadAccount(prisma, tenantId, userId);
  let account = loaded.get(userId);
  if (!account) {
    account = loadAccount(prisma, tenantId, userId);
    loaded.set(userId, account);
  }
  return account;
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
    const account = await requestAccount(prisma, tenantId, sub);
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
