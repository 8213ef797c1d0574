import { randomUUID } from 'node:crypto';
import { exportJWK, generateKeyPair, type JWK } from 'jose';
import { BUILTIN_ROLES } from '../../src/admin/permissions.js';
import { createAuditLog } from '../../src/audit/audit.js';
import { systemClock } from '../../src/clock.js';
import { createPasswordHasher } from '../../src/crypto/passwords.js';
import { randomToken } from '../../src/crypto/random.js';
import { SIGNING_KEY_PRIVATE_JWK } from '../../src/crypto/reencrypt.js';
import { createVault, type Vault } from '../../src/crypto/vault.js';
import { createClient } from '../../src/oidc/clients.js';
import type { Database } from '../../src/store/index.js';
import { createTenant } from '../../src/tenants/tenants.js';

export const REDIRECT_URI = 'http://127.0.0.1:1/callback';
const ACTOR = { type: 'system' as const, id: 'bench' };
const CHUNK = 5_000;

export interface ClientCredentials {
  clientId: string;
  clientSecret: string;
}

export interface SeededTenant {
  id: string;
  slug: string;
  /** Its confidential client_credentials client. */
  service: ClientCredentials;
}

export interface Seeded {
  /** `tenants[0]` is the bench tenant with the users; all of them have a client_credentials client. */
  tenants: SeededTenant[];
  /** A resource server of tenants[0], allowed to introspect any of its tokens. */
  resourceServer: ClientCredentials;
  /** A first-party public client of tenants[0] (code + PKCE, refresh tokens). */
  publicClientId: string;
  /** Every user's password, and the one Argon2id hash of it they all share. */
  password: string;
  passwordHash: string;
  users: number;
}

/**
 * Every request of the bench comes from 127.0.0.1, so the per-IP limits of
 * the token endpoint and sign-in forms (10/min by default) would refuse almost
 * all of it. Bench tenants raise them to the highest values a tenant may set,
 * as a tenant serving a few high-volume services from one gateway would: the
 * counting itself (a Redis increment per request) stays in what is measured.
 * Likewise the tenant's management API quota.
 */
export const BENCH_TENANT_SETTINGS = {
  rateLimits: { tokenPerMinute: 100_000, signInPerMinute: 10_000 },
  // The management API quota per tenant (src/admin/router.ts) has no upper bound.
  limits: { managementPerMinute: 10_000_000 },
};

export const userEmail = (i: number) => `user${i}@bench.example`;
export const tenantSlug = (i: number) => `bench-${String(i + 1).padStart(4, '0')}`;

/**
 * One RSA key pair for every tenant, under a kid of each tenant's own:
 * generating 2,000 RSA-2048 keys would take minutes of CPU and measure nothing.
 * Stored exactly as src/oidc/keys.ts stores keys (vault-encrypted, bound to the row).
 */
async function sharedKeyMaterial(): Promise<{ privateJwk: JWK; publicJwk: JWK }> {
  const { privateKey, publicKey } = await generateKeyPair('RS256', { modulusLength: 2048, extractable: true });
  return { privateJwk: await exportJWK(privateKey), publicJwk: await exportJWK(publicKey) };
}

async function insertSigningKeys(db: Database, vault: Vault, tenantIds: string[]): Promise<void> {
  const material = await sharedKeyMaterial();
  const now = new Date();
  const rows = tenantIds.flatMap((tenantId) =>
    (['active', 'next'] as const).map((status) => {
      const id = randomUUID();
      const kid = randomUUID();
      const meta = { kid, alg: 'RS256', use: 'sig' };
      return {
        id,
        tenantId,
        kid,
        alg: 'RS256',
        status,
        publicJwk: { ...material.publicJwk, ...meta },
        privateJwk: vault.encrypt(JSON.stringify({ ...material.privateJwk, ...meta }), SIGNING_KEY_PRIVATE_JWK.binding(tenantId, id)),
        activatedAt: status === 'active' ? now : null,
      };
    }),
  );
  for (let i = 0; i < rows.length; i += CHUNK) await db.prisma.signingKey.createMany({ data: rows.slice(i, i + CHUNK) });
}

/** Tenants 2…n straight into the tables (with their built-in roles), as createTenant would leave them minus the audit event. */
async function insertTenants(db: Database, count: number): Promise<{ id: string; slug: string }[]> {
  const tenants = Array.from({ length: count }, (_, i) => ({ id: randomUUID(), slug: tenantSlug(i + 1) }));
  await db.prisma.tenant.createMany({ data: tenants.map((t) => ({ ...t, displayName: t.slug, settings: BENCH_TENANT_SETTINGS })) });
  const roles = tenants.flatMap((t) =>
    Object.entries(BUILTIN_ROLES).map(([name, permissions]) => ({ tenantId: t.id, name, permissions: [...permissions], builtin: true })),
  );
  for (let i = 0; i < roles.length; i += CHUNK) await db.prisma.role.createMany({ data: roles.slice(i, i + CHUNK) });
  return tenants;
}

/** A copy of tenants[0]'s client_credentials client in each tenant: same metadata and secret, its own client_id. */
async function copyServiceClient(db: Database, template: ClientCredentials, tenantIds: string[]): Promise<ClientCredentials[]> {
  const row = await db.prisma.client.findUniqueOrThrow({ where: { clientId: template.clientId } });
  const copies = tenantIds.map((tenantId) => ({
    tenantId,
    clientId: randomToken(16),
    name: row.name,
    secretHash: row.secretHash,
    metadata: row.metadata ?? {},
    firstParty: row.firstParty,
    resourceServer: row.resourceServer,
  }));
  for (let i = 0; i < copies.length; i += CHUNK) await db.prisma.client.createMany({ data: copies.slice(i, i + CHUNK) });
  return copies.map((c) => ({ clientId: c.clientId, clientSecret: template.clientSecret }));
}

/**
 * Users `from`…`to - 1` of the bench tenant, all with ONE precomputed Argon2id
 * hash of the shared password: hashing 100,000 passwords would cost about an
 * hour of CPU, and a verification costs the same whichever hash it checks (the
 * parameters and salt are in the hash).
 */
export async function insertUsers(db: Database, tenantId: string, passwordHash: string, from: number, to: number): Promise<void> {
  for (let start = from; start < to; start += CHUNK) {
    const data = [];
    for (let i = start; i < Math.min(to, start + CHUNK); i++) {
      data.push({ tenantId, email: userEmail(i), name: `Bench User ${i}`, emailVerified: true, passwordHash });
    }
    await db.prisma.user.createMany({ data });
  }
}

async function createBenchClients(db: Database, tenantId: string) {
  const deps = { prisma: db.prisma, audit: createAuditLog({ prisma: db.prisma, clock: systemClock }) };
  const create = (input: Parameters<typeof createClient>[2]) => createClient(deps, tenantId, input, ACTOR);
  const service = await create({ name: 'Bench service', grantTypes: ['client_credentials'] });
  const resourceServer = await create({ name: 'Bench API', grantTypes: ['client_credentials'], resourceServer: true });
  const app = await create({
    name: 'Bench app',
    public: true,
    firstParty: true,
    grantTypes: ['authorization_code', 'refresh_token'],
    redirectUris: [REDIRECT_URI],
    scope: 'openid profile email offline_access',
  });
  const secretOf = (client: { clientId: string; clientSecret?: string }): ClientCredentials => {
    if (!client.clientSecret) throw new Error(`client ${client.clientId} has no secret`);
    return { clientId: client.clientId, clientSecret: client.clientSecret };
  };
  return { service: secretOf(service), resourceServer: secretOf(resourceServer), publicClientId: app.clientId };
}

/**
 * The bench tenant (through createTenant and createClient, as the CLI does)
 * with its three clients and `users` users, then `tenants - 1` more tenants
 * with a client_credentials client each, and signing keys for all.
 */
export async function seed(db: Database, masterKey: Buffer, opts: { tenants: number; users: number }): Promise<Seeded> {
  const audit = createAuditLog({ prisma: db.prisma, clock: systemClock });
  const main = await createTenant({ prisma: db.prisma, audit }, { slug: tenantSlug(0), displayName: 'Bench' }, ACTOR);
  await db.prisma.tenant.update({ where: { id: main.id }, data: { settings: BENCH_TENANT_SETTINGS } });
  const clients = await createBenchClients(db, main.id);
  const others = await insertTenants(db, opts.tenants - 1);
  const otherServices = await copyServiceClient(
    db,
    clients.service,
    others.map((t) => t.id),
  );
  await insertSigningKeys(db, createVault({ masterKey }), [main.id, ...others.map((t) => t.id)]);
  const password = `bench-${randomToken(12)}`;
  const passwordHash = await createPasswordHasher().hash(password);
  await insertUsers(db, main.id, passwordHash, 0, opts.users);
  return {
    tenants: [
      { id: main.id, slug: main.slug, service: clients.service },
      ...others.map((t, i) => ({ ...t, service: otherServices[i] ?? clients.service })),
    ],
    resourceServer: clients.resourceServer,
    publicClientId: clients.publicClientId,
    password,
    passwordHash,
    users: opts.users,
  };
}
