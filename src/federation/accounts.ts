import type { AuditLog } from '../audit/audit.js';
import type { Clock } from '../clock.js';
import type { Prisma, PrismaClient } from '../store/db.js';
import type { User } from '../store/generated/client.js';
import { emailDomain, type FederationConnection, trustsDomain } from './connections.js';
import type { UpstreamProfile } from './profile.js';
import { reject } from './rejection.js';

/**
 * Which of our users an upstream identity is. An identity is keyed by
 * (connection, subject), never by the subject alone, so the same NameID from
 * two connections is two identities. A first sign-in either links to an
 * existing user, only by an address the upstream vouches for in a domain the
 * connection is trusted for, or creates the user (just-in-time provisioning).
 */

export interface AccountDeps {
  prisma: PrismaClient;
  audit: AuditLog;
  clock: Clock;
}

export type AccountOutcome = 'returning' | 'linked' | 'created';

export interface ResolvedAccount {
  user: User;
  outcome: AccountOutcome;
  rolesAdded: string[];
  rolesRemoved: string[];
}

/**
 * The upstream vouches for the address: OIDC by `email_verified`; SAML has no
 * such flag, so only the trust the admin gave the connection for the domain
 * counts (checked by the caller for both).
 */
function vouchesForEmail(connection: FederationConnection, profile: UpstreamProfile): boolean {
  return connection.type === 'saml' || profile.emailVerified;
}

/** Role names the connection's role mapping gives for these groups. */
export function mappedRoleNames(connection: Pick<FederationConnection, 'roleMapping'>, groups: readonly string[]): string[] {
  const names = new Set<string>();
  for (const group of groups) {
    if (!Object.hasOwn(connection.roleMapping, group)) continue;
    for (const role of connection.roleMapping[group] ?? []) names.add(role);
  }
  return [...names].sort();
}

type Tx = Prisma.TransactionClient;

/**
 * Brings the user's mapped roles in line with what the upstream sent: grants
 * the mapped roles the user lacks, and takes back those an earlier sign-in
 * granted that the groups no longer give. Roles assigned by an admin are never
 * taken back. Returns the names now held because of the mapping.
 */
async function syncMappedRoles(tx: Tx, tenantId: string, userId: string, desiredNames: string[], previouslyMapped: string[]) {
  const desired = await tx.role.findMany({ where: { tenantId, name: { in: desiredNames } }, select: { id: true, name: true } });
  const held = await tx.roleAssignment.findMany({ where: { tenantId, userId }, select: { role: { select: { id: true, name: true } } } });
  const heldNames = new Set(held.map((h) => h.role.name));
  const toAdd = desired.filter((role) => !heldNames.has(role.name));
  const desiredNameSet = new Set(desired.map((role) => role.name));
  const toRemove = held.map((h) => h.role).filter((role) => previouslyMapped.includes(role.name) && !desiredNameSet.has(role.name));
  if (toAdd.length)
    await tx.roleAssignment.createMany({ data: toAdd.map((role) => ({ tenantId, roleId: role.id, userId })), skipDuplicates: true });
  if (toRemove.length) await tx.roleAssignment.deleteMany({ where: { tenantId, userId, roleId: { in: toRemove.map((r) => r.id) } } });
  const mapped = desired.filter((role) => previouslyMapped.includes(role.name) || toAdd.includes(role)).map((role) => role.name);
  return { mapped, added: toAdd.map((r) => r.name), removed: toRemove.map((r) => r.name) };
}

async function existingIdentity(prisma: PrismaClient, connection: FederationConnection, subject: string) {
  const identity = await prisma.federatedIdentity.findUnique({
    where: { connectionId_subject: { connectionId: connection.id, subject } },
    include: { user: true },
  });
  return identity && identity.tenantId === connection.tenantId ? identity : null;
}

/** The user a first sign-in becomes: an existing one it may link to, or a new one. */
async function firstSignInTarget(
  prisma: PrismaClient,
  connection: FederationConnection,
  profile: UpstreamProfile,
): Promise<{ user: User | null; email: string; emailVerified: boolean }> {
  const { email } = profile;
  if (!email) throw reject('missing_email', 'the upstream sent no usable email address');
  const trusted = trustsDomain(connection, email);
  // A connection limited to domains provisions only their users: it cannot mint accounts for someone else's addresses.
  if (connection.domains.length > 0 && !trusted)
    throw reject('domain_not_allowed', `${emailDomain(email) ?? ''} is not a domain of this connection`);
  const verified = trusted && vouchesForEmail(connection, profile);
  const user = await prisma.user.findUnique({ where: { tenantId_email: { tenantId: connection.tenantId, email } } });
  if (user && !verified) throw reject('account_conflict', 'an account with this address exists and the upstream does not vouch for it');
  return { user, email, emailVerified: verified };
}

function isUniqueViolation(error: unknown): boolean {
  return (error as { code?: unknown } | null)?.code === 'P2002';
}

/**
 * Resolves (and on first sign-in links or provisions) the user of `profile`,
 * syncs its mapped roles, all in one transaction. Two first sign-ins racing
 * for the same identity meet the unique constraint; the loser retries and
 * finds the winner's identity.
 */
export async function resolveFederatedAccount(
  deps: AccountDeps,
  connection: FederationConnection,
  profile: UpstreamProfile,
): Promise<ResolvedAccount> {
  try {
    return await resolveOnce(deps, connection, profile);
  } catch (error) {
    if (!isUniqueViolation(error)) throw error;
    return resolveOnce(deps, connection, profile);
  }
}

async function resolveOnce(deps: AccountDeps, connection: FederationConnection, profile: UpstreamProfile): Promise<ResolvedAccount> {
  const { prisma, clock } = deps;
  const tenantId = connection.tenantId;
  const identity = await existingIdentity(prisma, connection, profile.subject);
  const target = identity ? null : await firstSignInTarget(prisma, connection, profile);
  const existingUser = identity?.user ?? target?.user ?? null;
  if (existingUser?.disabled) throw reject('user_disabled', `user ${existingUser.id} is disabled`);
  const desiredRoles = mappedRoleNames(connection, profile.groups);
  const now = new Date(clock.now());

  return prisma.$transaction(async (tx) => {
    let user = existingUser;
    let outcome: AccountOutcome = identity ? 'returning' : 'linked';
    if (!user && target) {
      user = await tx.user.create({
        data: { tenantId, email: target.email, emailVerified: target.emailVerified, name: profile.name ?? null },
      });
      outcome = 'created';
      await deps.audit.append(
        tenantId,
        {
          actor: { type: 'system', id: `connection:${connection.id}` },
          action: 'user.created',
          resource: { type: 'user', id: user.id },
          metadata: { email: target.email, via: 'federation', connection_id: connection.id, email_verified: target.emailVerified },
        },
        tx,
      );
    }
    if (!user) throw reject('missing_email', 'no user to sign in');
    const roles = await syncMappedRoles(tx, tenantId, user.id, desiredRoles, identity?.mappedRoles ?? []);
    if (identity) {
      await tx.federatedIdentity.update({
        where: { id: identity.id },
        data: { lastLoginAt: now, email: profile.email ?? identity.email, mappedRoles: roles.mapped },
      });
    } else {
      await tx.federatedIdentity.create({
        data: {
          tenantId,
          connectionId: connection.id,
          subject: profile.subject,
          userId: user.id,
          email: profile.email ?? null,
          lastLoginAt: now,
          mappedRoles: roles.mapped,
        },
      });
    }
    return { user, outcome, rolesAdded: roles.added, rolesRemoved: roles.removed };
  });
}
