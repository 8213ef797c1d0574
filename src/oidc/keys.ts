import { randomUUID } from 'node:crypto';
import { exportJWK, generateKeyPair, type JWK } from 'jose';
import type { AuditLog } from '../audit/audit.js';
import type { Clock } from '../clock.js';
import { SIGNING_KEY_PRIVATE_JWK } from '../crypto/reencrypt.js';
import type { Vault } from '../crypto/vault.js';
import type { Prisma, PrismaClient } from '../store/db.js';

export const SIGNING_ALGS = ['RS256', 'ES256', 'EdDSA'] as const;
export type SigningAlg = (typeof SIGNING_ALGS)[number];

/**
 * Key lifecycle per tenant and algorithm: `next` is published ahead of use,
 * `active` signs, `previous` stays published so tokens signed before a
 * rotation verify until they expire, `retired` is neither.
 */
/** Keys of the OIDC provider; SAML signing keys (purpose `saml`) live in the same table with certificates. */
const OIDC = 'oidc';

export type KeyStatus = 'next' | 'active' | 'previous' | 'retired';
const PUBLISHED: KeyStatus[] = ['active', 'next', 'previous'];

export interface KeyDeps {
  prisma: PrismaClient;
  vault: Vault;
  clock: Clock;
}

export interface TenantKeys {
  /** Private JWKs for oidc-provider, the active key of each algorithm first so it signs. */
  signing: JWK[];
  /** Public JWKs of every published key, for verifying our own tokens. */
  public: JWK[];
}

async function generate(alg: SigningAlg): Promise<{ privateJwk: JWK; publicJwk: JWK }> {
  const { privateKey, publicKey } =
    alg === 'RS256'
      ? await generateKeyPair('RS256', { modulusLength: 2048, extractable: true })
      : alg === 'ES256'
        ? await generateKeyPair('ES256', { extractable: true })
        : await generateKeyPair('EdDSA', { crv: 'Ed25519', extractable: true });
  const kid = randomUUID();
  const meta = { kid, alg, use: 'sig' };
  return { privateJwk: { ...(await exportJWK(privateKey)), ...meta }, publicJwk: { ...(await exportJWK(publicKey)), ...meta } };
}

type Db = PrismaClient | Prisma.TransactionClient;

/** Serialises key changes of one tenant across nodes for the rest of the transaction. */
async function lockTenantKeys(tx: Prisma.TransactionClient, tenantId: string): Promise<void> {
  await tx.$executeRaw`SELECT pg_advisory_xact_lock(hashtext(${`signing-keys:${tenantId}`}))`;
}

async function createKey(prisma: Db, { vault, clock }: KeyDeps, tenantId: string, alg: SigningAlg, status: KeyStatus) {
  const { privateJwk, publicJwk } = await generate(alg);
  const id = randomUUID();
  const kid = publicJwk.kid as string;
  await prisma.signingKey.create({
    data: {
      id,
      tenantId,
      kid,
      alg,
      status,
      publicJwk: publicJwk as object,
      privateJwk: vault.encrypt(JSON.stringify(privateJwk), SIGNING_KEY_PRIVATE_JWK.binding(tenantId, id)),
      activatedAt: status === 'active' ? new Date(clock.now()) : null,
    },
  });
  return kid;
}

/** Makes sure each algorithm has an active and a next key (first use of a tenant, or a newly enabled algorithm). */
export async function ensureKeys(deps: KeyDeps, tenantId: string, algs: readonly SigningAlg[]): Promise<void> {
  const present = await deps.prisma.signingKey.findMany({
    where: { tenantId, purpose: OIDC, status: { in: ['active', 'next'] } },
    select: { alg: true, status: true },
  });
  const complete = (alg: SigningAlg) => ['active', 'next'].every((status) => present.some((k) => k.alg === alg && k.status === status));
  if (algs.every(complete)) return;
  // First use is rare; the lock keeps two nodes from both creating an active key.
  await deps.prisma.$transaction(
    async (tx) => {
      await lockTenantKeys(tx, tenantId);
      for (const alg of algs) {
        const statuses = new Set(
          (await tx.signingKey.findMany({ where: { tenantId, purpose: OIDC, alg }, select: { status: true } })).map((k) => k.status),
        );
        if (!statuses.has('active')) await createKey(tx, deps, tenantId, alg, 'active');
        if (!statuses.has('next')) await createKey(tx, deps, tenantId, alg, 'next');
      }
    },
    { timeout: 30_000 },
  );
}

export async function loadTenantKeys({ prisma, vault }: KeyDeps, tenantId: string): Promise<TenantKeys> {
  const rows = await prisma.signingKey.findMany({
    where: { tenantId, purpose: OIDC, status: { in: PUBLISHED } },
    orderBy: { createdAt: 'desc' },
  });
  const rank = (status: string) => PUBLISHED.indexOf(status as KeyStatus);
  rows.sort((a, b) => rank(a.status) - rank(b.status));
  return {
    // Only the active keys may sign; next and previous are published for verification only.
    signing: rows
      .filter((row) => row.status === 'active')
      .map((row) => JSON.parse(vault.decryptString(row.privateJwk, SIGNING_KEY_PRIVATE_JWK.binding(tenantId, row.id))) as JWK),
    public: rows.map((row) => row.publicJwk as JWK),
  };
}

export interface RotationResult {
  alg: SigningAlg;
  activated: string;
  previous: string | null;
  next: string;
}

/**
 * Rotation without downtime: the published `next` key becomes active (relying
 * parties have had it in their JWKS cache), the active one stays published as
 * `previous`, the old previous retires, and a fresh `next` is published.
 */
export async function rotateKeys(
  deps: KeyDeps & { audit: AuditLog },
  tenantId: string,
  actor: Parameters<AuditLog['append']>[1]['actor'],
): Promise<RotationResult[]> {
  const algs = [
    ...new Set(
      (await deps.prisma.signingKey.findMany({ where: { tenantId, purpose: OIDC, status: 'active' }, select: { alg: true } })).map(
        (k) => k.alg,
      ),
    ),
  ] as SigningAlg[];
  if (algs.length === 0) algs.push('RS256');
  await ensureKeys(deps, tenantId, algs);
  const results: RotationResult[] = [];
  for (const alg of algs) {
    const result = await deps.prisma.$transaction(
      async (tx) => {
        await lockTenantKeys(tx, tenantId);
        const next = await createKey(tx, deps, tenantId, alg, 'next');
        const keys = await tx.signingKey.findMany({
          where: { tenantId, purpose: OIDC, alg, status: { in: ['active', 'next', 'previous'] } },
          orderBy: { createdAt: 'asc' },
        });
        const active = keys.find((k) => k.status === 'active');
        const upcoming = keys.find((k) => k.status === 'next' && k.kid !== next);
        if (!upcoming) throw new Error('no next key to activate');
        const now = new Date(deps.clock.now());
        await tx.signingKey.updateMany({
          where: { tenantId, purpose: OIDC, alg, status: 'previous' },
          data: { status: 'retired', retiredAt: now },
        });
        if (active) await tx.signingKey.update({ where: { id: active.id }, data: { status: 'previous' } });
        await tx.signingKey.update({ where: { id: upcoming.id }, data: { status: 'active', activatedAt: now } });
        const outcome = { alg, activated: upcoming.kid, previous: active?.kid ?? null, next };
        await deps.audit.append(
          tenantId,
          { actor, action: 'keys.rotated', resource: { type: 'signing_key', id: upcoming.kid }, metadata: { ...outcome } },
          tx,
        );
        return outcome;
      },
      { timeout: 30_000 },
    );
    results.push(result);
  }
  return results;
}
