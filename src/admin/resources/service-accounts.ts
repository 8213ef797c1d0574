import { z } from 'zod';
import type { AuditEventInput, AuditLog } from '../../audit/audit.js';
import { notFound } from '../../errors.js';
import { createClient } from '../../oidc/clients.js';
import { normalizeCidr, parseCidr } from '../../security/ip.js';
import type { Prisma, PrismaClient } from '../../store/db.js';
import { conflictOnDuplicate, description, displayName, iso, page, pageOf, paginationQuery, timestamp, uuidParam } from '../http.js';
import { assertCanGrant, permissionList, permissionsOf } from '../rbac.js';
import { defineRoute, managementAudienceOf } from '../route.js';
import { newClientSecret } from './clients.js';

export const MAX_ALLOWED_IPS = 100;

/** CIDRs, each checked (with its index in the error) and stored in one canonical spelling, deduplicated. */
export const cidrList = z
  .array(z.string().max(64))
  .max(MAX_ALLOWED_IPS, { message: `at most ${MAX_ALLOWED_IPS} CIDRs` })
  .superRefine((values, ctx) => {
    for (const [index, value] of values.entries()) {
      try {
        parseCidr(value);
      } catch (error) {
        ctx.addIssue({ code: 'custom', path: [index], message: (error as Error).message });
      }
    }
  })
  .transform((values) => [...new Set(values.map(normalizeCidr))]);

export const Credentials = z.object({
  client_id: z.string(),
  /** Shown once: only its hash is stored. */
  client_secret: z.string(),
  token_endpoint: z.url(),
  /** The resource indicator to ask for (`resource=`); tokens for the tenant's default API are accepted too. */
  audience: z.string(),
});

export const ServiceAccount = z.object({
  id: z.uuid(),
  name: z.string(),
  description: z.string().nullable(),
  scopes: z.array(z.string()),
  roles: z.array(z.string()),
  allowed_ips: z.array(z.string()),
  client_id: z.string().nullable(),
  disabled: z.boolean(),
  platform_admin: z.boolean(),
  created_at: timestamp,
  updated_at: timestamp,
});
export const ServiceAccountPage = page(ServiceAccount);
export const ServiceAccountCreated = ServiceAccount.extend({ credentials: Credentials.nullable() });

export const ServiceAccountCreate = z.strictObject({
  name: displayName,
  description: description.optional(),
  /** Permissions its tokens may carry (management permissions or app permissions). */
  scopes: permissionList(),
  allowed_ips: cidrList.default([]),
  generate_credentials: z.boolean().default(true),
});

export const ServiceAccountUpdate = z.strictObject({
  name: displayName.optional(),
  description: description.nullable().optional(),
  scopes: permissionList().optional(),
  allowed_ips: cidrList.optional(),
  disabled: z.boolean().optional(),
});

const include = { roleAssignments: { include: { role: { select: { name: true, permissions: true } } } } } as const;
type AccountRow = Prisma.ServiceAccountGetPayload<{ include: typeof include }>;
type Db = PrismaClient | Prisma.TransactionClient;

function toServiceAccount(row: AccountRow): z.input<typeof ServiceAccount> {
  return {
    id: row.id,
    name: row.name,
    description: row.description,
    scopes: [...row.scopes].sort(),
    roles: row.roleAssignments.map((a) => a.role.name).sort(),
    allowed_ips: row.allowedIps,
    client_id: row.clientId,
    disabled: row.disabled,
    platform_admin: row.platformAdmin,
    created_at: iso(row.createdAt),
    updated_at: iso(row.updatedAt),
  };
}

async function findAccount(db: Db, tenantId: string, id: string): Promise<AccountRow> {
  const row = await db.serviceAccount.findFirst({ where: { id, tenantId }, include });
  if (!row) throw notFound('no such service account');
  return row;
}

/**
 * The scopes a service account's client may be granted: its own scopes and
 * its roles' permissions. Recomputed whenever either changes; the management
 * API also re-checks them on every request, so a stale client grants nothing.
 */
export async function syncServiceAccountClient(tx: Prisma.TransactionClient, tenantId: string, accountId: string): Promise<void> {
  const account = await findAccount(tx, tenantId, accountId);
  if (!account.clientId) return;
  const client = await tx.client.findFirst({ where: { tenantId, clientId: account.clientId } });
  if (!client) return;
  const scope = [
    ...permissionsOf(
      account.roleAssignments.map((a) => a.role),
      account.scopes,
    ),
  ]
    .sort()
    .join(' ');
  const metadata = client.metadata as Record<string, unknown>;
  if (metadata.scope === scope) return;
  await tx.client.update({ where: { id: client.id }, data: { metadata: { ...metadata, scope } as Prisma.InputJsonObject } });
}

export type RecordAudit = (event: Omit<AuditEventInput, 'actor' | 'ip' | 'userAgent'>, tx: Prisma.TransactionClient) => Promise<void>;

export interface ServiceAccountDeps {
  prisma: PrismaClient;
  audit: AuditLog;
  publicUrl: string;
}

export interface IssuedCredentials {
  client_id: string;
  client_secret: string;
  token_endpoint: string;
  audience: string;
}

function credentialsOf(deps: ServiceAccountDeps, tenantSlug: string, clientId: string, secret: string): IssuedCredentials {
  return {
    client_id: clientId,
    client_secret: secret,
    token_endpoint: `${deps.publicUrl}/t/${tenantSlug}/token`,
    audience: managementAudienceOf(deps.publicUrl),
  };
}

/**
 * Gives a service account credentials: a confidential client_credentials
 * client on first call, a new secret for the same client_id after that (the
 * old secret stops working at once). The secret is returned this once.
 */
export async function issueCredentials(
  deps: ServiceAccountDeps,
  tx: Prisma.TransactionClient,
  tenant: { id: string; slug: string },
  accountId: string,
  actor: AuditEventInput['actor'],
  record: RecordAudit,
): Promise<IssuedCredentials> {
  const account = await findAccount(tx, tenant.id, accountId);
  const existing = account.clientId ? await tx.client.findFirst({ where: { tenantId: tenant.id, clientId: account.clientId } }) : null;
  if (existing) {
    const { secret, hash } = newClientSecret();
    await tx.client.update({ where: { id: existing.id }, data: { secretHash: hash } });
    await record(
      {
        action: 'service_account.credentials_rotated',
        resource: { type: 'service_account', id: account.id },
        metadata: { client_id: existing.clientId },
      },
      tx,
    );
    return credentialsOf(deps, tenant.slug, existing.clientId, secret);
  }
  const created = await createClient(
    { prisma: deps.prisma, audit: deps.audit },
    tenant.id,
    {
      name: `service account: ${account.name}`.slice(0, 200),
      grantTypes: ['client_credentials'],
      tokenEndpointAuthMethod: 'client_secret_basic',
    },
    actor,
    tx,
  );
  await tx.serviceAccount.update({ where: { id: account.id }, data: { clientId: created.clientId } });
  await syncServiceAccountClient(tx, tenant.id, account.id);
  await record(
    {
      action: 'service_account.credentials_generated',
      resource: { type: 'service_account', id: account.id },
      metadata: { client_id: created.clientId },
    },
    tx,
  );
  return credentialsOf(deps, tenant.slug, created.clientId, created.clientSecret ?? '');
}

export interface NewServiceAccount {
  name: string;
  description?: string;
  scopes: string[];
  allowedIps: string[];
  platformAdmin?: boolean;
  generateCredentials: boolean;
}

/** Creates a service account (and its credentials), audited; shared by the API and the CLI. */
export async function createServiceAccount(
  deps: ServiceAccountDeps,
  tenant: { id: string; slug: string },
  input: NewServiceAccount,
  actor: AuditEventInput['actor'],
  record: RecordAudit,
): Promise<{ account: z.input<typeof ServiceAccount>; credentials: IssuedCredentials | null }> {
  return deps.prisma
    .$transaction(async (tx) => {
      const created = await tx.serviceAccount.create({
        data: {
          tenantId: tenant.id,
          name: input.name,
          description: input.description ?? null,
          scopes: input.scopes,
          allowedIps: input.allowedIps,
          platformAdmin: input.platformAdmin ?? false,
        },
      });
      await record(
        {
          action: 'service_account.created',
          resource: { type: 'service_account', id: created.id },
          metadata: { name: created.name, scopes: created.scopes, allowed_ips: created.allowedIps, platform_admin: created.platformAdmin },
        },
        tx,
      );
      const credentials = input.generateCredentials ? await issueCredentials(deps, tx, tenant, created.id, actor, record) : null;
      return { account: toServiceAccount(await findAccount(tx, tenant.id, created.id)), credentials };
    })
    .catch(conflictOnDuplicate(`a service account named ${input.name} already exists`));
}

const accountParams = z.object({ serviceAccountId: uuidParam });

export const serviceAccountRoutes = [
  defineRoute({
    method: 'GET',
    path: '/tenants/{tenant}/service-accounts',
    operationId: 'listServiceAccounts',
    summary: 'List service accounts',
    tag: 'service accounts',
    permission: 'service_accounts.read',
    query: z.object(paginationQuery),
    response: ServiceAccountPage,
    async handler({ deps, tenant, query, cursor }) {
      const after = cursor.decode(query.cursor);
      const rows = await deps.db.prisma.serviceAccount.findMany({
        where: { tenantId: tenant.id, ...(after ? { id: { gt: after } } : {}) },
        include,
        orderBy: { id: 'asc' },
        take: query.limit + 1,
      });
      const result = pageOf(rows, query.limit, (row) => row.id, cursor.encode);
      return { data: result.data.map(toServiceAccount), next_cursor: result.next_cursor };
    },
  }),
  defineRoute({
    method: 'POST',
    path: '/tenants/{tenant}/service-accounts',
    operationId: 'createServiceAccount',
    summary: 'Create a service account; its credentials (client_id, client_secret) are returned this once',
    tag: 'service accounts',
    permission: 'service_accounts.write',
    body: ServiceAccountCreate,
    response: ServiceAccountCreated,
    status: 201,
    async handler({ deps, tenant, caller, body, actor, audit, announce }) {
      assertCanGrant(caller, body.scopes);
      const result = await createServiceAccount(
        { prisma: deps.db.prisma, audit: deps.audit, publicUrl: deps.config.publicUrl },
        tenant,
        {
          name: body.name,
          description: body.description,
          scopes: body.scopes,
          allowedIps: body.allowed_ips,
          generateCredentials: body.generate_credentials,
        },
        actor,
        audit,
      );
      if (result.credentials) await announce('clients');
      return { ...result.account, credentials: result.credentials };
    },
  }),
  defineRoute({
    method: 'GET',
    path: '/tenants/{tenant}/service-accounts/{serviceAccountId}',
    operationId: 'getServiceAccount',
    summary: 'Read a service account',
    tag: 'service accounts',
    permission: 'service_accounts.read',
    params: accountParams,
    response: ServiceAccount,
    async handler({ deps, tenant, params }) {
      return toServiceAccount(await findAccount(deps.db.prisma, tenant.id, params.serviceAccountId));
    },
  }),
  defineRoute({
    method: 'PATCH',
    path: '/tenants/{tenant}/service-accounts/{serviceAccountId}',
    operationId: 'updateServiceAccount',
    summary: 'Change a service account’s name, description, scopes, IP allowlist or disable it',
    tag: 'service accounts',
    permission: 'service_accounts.write',
    params: accountParams,
    body: ServiceAccountUpdate,
    response: ServiceAccount,
    async handler({ deps, tenant, caller, params, body, audit, announce }) {
      const account = await deps.db.prisma
        .$transaction(async (tx) => {
          const [locked] = await tx.$queryRaw<{ id: string }[]>`
            SELECT id FROM "ServiceAccount" WHERE id = ${params.serviceAccountId}::uuid AND "tenantId" = ${tenant.id}::uuid FOR UPDATE`;
          if (!locked) throw notFound('no such service account');
          const before = await findAccount(tx, tenant.id, locked.id);
          if (body.scopes) {
            assertCanGrant(
              caller,
              body.scopes.filter((s) => !before.scopes.includes(s)),
            );
          }
          await tx.serviceAccount.update({
            where: { id: before.id },
            data: {
              ...(body.name !== undefined ? { name: body.name } : {}),
              ...(body.description !== undefined ? { description: body.description } : {}),
              ...(body.scopes ? { scopes: body.scopes } : {}),
              ...(body.allowed_ips ? { allowedIps: body.allowed_ips } : {}),
              ...(body.disabled !== undefined ? { disabled: body.disabled } : {}),
            },
          });
          await syncServiceAccountClient(tx, tenant.id, before.id);
          const after = await findAccount(tx, tenant.id, before.id);
          const view = (row: AccountRow) => ({
            name: row.name,
            description: row.description,
            scopes: row.scopes,
            allowed_ips: row.allowedIps,
            disabled: row.disabled,
          });
          await audit(
            {
              action: 'service_account.updated',
              resource: { type: 'service_account', id: before.id },
              metadata: { before: view(before), after: view(after) },
            },
            tx,
          );
          return after;
        })
        .catch(conflictOnDuplicate('a service account with this name already exists'));
      if (account.clientId) await announce('clients');
      return toServiceAccount(account);
    },
  }),
  defineRoute({
    method: 'POST',
    path: '/tenants/{tenant}/service-accounts/{serviceAccountId}/credentials',
    operationId: 'issueServiceAccountCredentials',
    summary: 'Generate credentials, or rotate the secret of existing ones (returned this once; the old secret stops working)',
    tag: 'service accounts',
    permission: 'service_accounts.write',
    params: accountParams,
    response: Credentials,
    status: 201,
    async handler({ deps, tenant, caller, params, actor, audit, announce }) {
      const credentials = await deps.db.prisma.$transaction(async (tx) => {
        const account = await findAccount(tx, tenant.id, params.serviceAccountId);
        // Whoever mints credentials can use them: only a caller holding what they grant may.
        assertCanGrant(caller, [
          ...permissionsOf(
            account.roleAssignments.map((a) => a.role),
            account.scopes,
          ),
        ]);
        return issueCredentials(
          { prisma: deps.db.prisma, audit: deps.audit, publicUrl: deps.config.publicUrl },
          tx,
          tenant,
          account.id,
          actor,
          audit,
        );
      });
      await announce('clients');
      return credentials;
    },
  }),
  defineRoute({
    method: 'DELETE',
    path: '/tenants/{tenant}/service-accounts/{serviceAccountId}',
    operationId: 'deleteServiceAccount',
    summary: 'Delete a service account and its credentials',
    tag: 'service accounts',
    permission: 'service_accounts.write',
    params: accountParams,
    async handler({ deps, tenant, params, audit, announce }) {
      await deps.db.prisma.$transaction(async (tx) => {
        const account = await findAccount(tx, tenant.id, params.serviceAccountId);
        await tx.serviceAccount.delete({ where: { id: account.id } });
        if (account.clientId) await tx.client.deleteMany({ where: { tenantId: tenant.id, clientId: account.clientId } });
        await audit(
          {
            action: 'service_account.deleted',
            resource: { type: 'service_account', id: account.id },
            metadata: { name: account.name, client_id: account.clientId },
          },
          tx,
        );
      });
      await announce('clients');
      return undefined;
    },
  }),
];
