import type { Prisma, PrismaClient } from '../store/db.js';

/** Durable oidc-provider records that belong to a signed-in user (see adapter.ts DURABLE_MODELS). */
const USER_MODELS = ['Session', 'Grant', 'RefreshToken', 'AccessToken'];

/**
 * Signs a user out everywhere: deletes their sessions, grants and refresh
 * tokens, and every record issued from those grants. Their JWT access tokens
 * then fail introspection and userinfo (which load the deleted grant) and
 * simply expire (15 minutes) at resource servers that verify them offline.
 * Resolves to the number of records deleted.
 */
export async function revokeUserSessions(
  prisma: PrismaClient | Prisma.TransactionClient,
  tenantId: string,
  userId: string,
): Promise<number> {
  const owned = { tenantId, model: { in: USER_MODELS }, payload: { path: ['accountId'], equals: userId } };
  const rows = await prisma.oidcPayload.findMany({ where: owned, select: { grantId: true } });
  const grantIds = [...new Set(rows.map((row) => row.grantId).filter((id): id is string => Boolean(id)))];
  const fromGrants = grantIds.length
    ? await prisma.oidcPayload.deleteMany({ where: { tenantId, grantId: { in: grantIds } } })
    : { count: 0 };
  const direct = await prisma.oidcPayload.deleteMany({ where: owned });
  return fromGrants.count + direct.count;
}
