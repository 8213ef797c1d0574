import { isDeepStrictEqual } from 'node:util';
import type { AuditLog } from '../audit/audit.js';
import type { Prisma, PrismaClient } from '../store/db.js';
import type { KvStore } from '../store/index.js';
import { publishTenantChange, type TenantContext } from '../tenants/tenants.js';

/**
 * Clients the server itself uses to sign people in through the hosted pages
 * (the account page, each SAML service provider): first-party, public (no
 * secret, no consent screen), with exactly the metadata the server decides.
 * Their ids contain a dot, which createClient's ids never do, so no
 * registered client can take one.
 */

export interface BuiltinClient {
  clientId: string;
  name: string;
  metadata: Record<string, unknown>;
  /** Who the audit trail says created or rewrote it. */
  actorId: string;
}

export interface BuiltinClientDeps {
  prisma: PrismaClient;
  kv: KvStore;
  audit: AuditLog;
}

const isUniqueViolation = (error: unknown) => (error as { code?: unknown } | null)?.code === 'P2002';

/** Inserts the client; false when another request or node inserted it first. */
async function insertClient({ prisma, audit }: BuiltinClientDeps, tenant: TenantContext, client: BuiltinClient): Promise<boolean> {
  try {
    await prisma.$transaction(async (tx) => {
      await tx.client.create({
        data: {
          tenantId: tenant.id,
          clientId: client.clientId,
          name: client.name,
          secretHash: null,
          metadata: client.metadata as Prisma.InputJsonValue,
          firstParty: true,
        },
      });
      await audit.append(
        tenant.id,
        {
          actor: { type: 'system', id: client.actorId },
          action: 'client.created',
          resource: { type: 'client', id: client.clientId },
          metadata: { name: client.name, grant_types: client.metadata.grant_types, auth_method: 'none', builtin: true },
        },
        tx,
      );
    });
    return true;
  } catch (error) {
    if (isUniqueViolation(error)) return false;
    throw error;
  }
}

/**
 * Creates the client if it is missing, and rewrites it when its stored row
 * differs from what the server calls for now (PUBLIC_URL or a name may have
 * changed, or someone edited the row). Every change is audited and published,
 * so each node rebuilds the tenant's provider as after any other client
 * change. Safe to run concurrently.
 */
export async function ensureBuiltinClient(deps: BuiltinClientDeps, tenant: TenantContext, client: BuiltinClient): Promise<string> {
  const { prisma, kv, audit } = deps;
  const { clientId, name, metadata } = client;
  const change = { tenantId: tenant.id, slug: tenant.slug, what: 'clients' };
  const find = () => prisma.client.findFirst({ where: { tenantId: tenant.id, clientId } });

  let row = await find();
  if (!row) {
    if (await insertClient(deps, tenant, client)) {
      await publishTenantChange(kv, change);
      return clientId;
    }
    row = await find();
    if (!row) throw new Error(`built-in client ${clientId} exists outside its tenant`);
  }
  const current =
    isDeepStrictEqual(row.metadata, metadata) && row.name === name && row.firstParty && !row.resourceServer && !row.secretHash;
  if (current) return clientId;

  const rowId = row.id;
  await prisma.$transaction(async (tx) => {
    await tx.client.update({
      where: { id: rowId },
      data: { name, secretHash: null, metadata: metadata as Prisma.InputJsonValue, firstParty: true, resourceServer: false },
    });
    await audit.append(
      tenant.id,
      {
        actor: { type: 'system', id: client.actorId },
        action: 'client.updated',
        resource: { type: 'client', id: clientId },
        metadata: { builtin: true, redirect_uris: metadata.redirect_uris },
      },
      tx,
    );
  });
  await publishTenantChange(kv, change);
  return clientId;
}
