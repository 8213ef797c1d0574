import { createPrivateKey, type JsonWebKey, randomBytes, randomUUID, webcrypto } from 'node:crypto';
import type { JWK } from 'jose';
import type { AuditLog } from '../audit/audit.js';
import type { Clock } from '../clock.js';
import { SIGNING_KEY_PRIVATE_JWK } from '../crypto/reencrypt.js';
import type { Vault } from '../crypto/vault.js';
import { loadX509 } from '../crypto/x509.js';
import type { Prisma, PrismaClient } from '../store/db.js';

/**
 * The tenant's SAML signing keys: rows of SigningKey with purpose `saml`, each
 * with a self-signed certificate (SAML trust is by pinning the certificate
 * from metadata, so no CA is involved). Same lifecycle as the OIDC keys: the
 * `next` key is published in metadata ahead of use, `active` signs, `previous`
 * stays published after a rotation, `retired` is neither. The private key is
 * a JWK in the vault, under the same binding as the OIDC keys, so
 * `idp vault reencrypt` covers both.
 */

export const SAML_PURPOSE = 'saml';
const ALG = 'RS256';
/** Certificates are pinned, not validated against a CA; the validity only has to outlast any sane rotation cycle. */
const CERTIFICATE_YEARS = 10;
const PUBLISHED = ['active', 'next', 'previous'] as const;
type PublishedStatus = (typeof PUBLISHED)[number];

export interface SamlKeyDeps {
  prisma: PrismaClient;
  vault: Vault;
  clock: Clock;
}

export interface SamlSigningKey {
  kid: string;
  /** PKCS#8 PEM, for xml-crypto and crypto.sign. */
  privateKeyPem: string;
  certificatePem: string;
}

export interface PublishedCertificate {
  kid: string;
  status: PublishedStatus;
  certificatePem: string;
}

const RSA_PARAMS = {
  name: 'RSASSA-PKCS1-v1_5',
  hash: 'SHA-256',
  publicExponent: new Uint8Array([1, 0, 1]),
  modulusLength: 2048,
} as const;

async function generateKeyWithCertificate(commonName: string, now: Date) {
  const x509 = await loadX509();
  const keys = (await webcrypto.subtle.generateKey(RSA_PARAMS, true, ['sign', 'verify'])) as CryptoKeyPair;
  const notAfter = new Date(now);
  notAfter.setUTCFullYear(notAfter.getUTCFullYear() + CERTIFICATE_YEARS);
  const certificate = await x509.X509CertificateGenerator.createSelfSigned(
    {
      // A positive 128-bit serial: DER integers are signed, so the top bit stays clear.
      serialNumber: `0${randomBytes(16).toString('hex').slice(1)}`,
      name: `CN=${commonName.replace(/[,+="\\<>;#]/g, ' ')}`,
      notBefore: now,
      notAfter,
      signingAlgorithm: RSA_PARAMS,
      keys,
      extensions: [
        new x509.BasicConstraintsExtension(false, undefined, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      ],
    },
    webcrypto as unknown as Crypto,
  );
  const kid = randomUUID();
  const meta = { kid, alg: ALG, use: 'sig' };
  const privateJwk = { ...((await webcrypto.subtle.exportKey('jwk', keys.privateKey)) as JWK), ...meta };
  const publicJwk = { ...((await webcrypto.subtle.exportKey('jwk', keys.publicKey)) as JWK), ...meta };
  return { kid, privateJwk, publicJwk, certificatePem: certificate.toString('pem') };
}

type Db = PrismaClient | Prisma.TransactionClient;

/** The same advisory lock as the OIDC keys: one key change per tenant at a time, across nodes. */
async function lockTenantKeys(tx: Prisma.TransactionClient, tenantId: string): Promise<void> {
  await tx.$executeRaw`SELECT pg_advisory_xact_lock(hashtext(${`signing-keys:${tenantId}`}))`;
}

async function createKey(db: Db, deps: SamlKeyDeps, tenant: { id: string; slug: string }, status: 'active' | 'next'): Promise<string> {
  const now = new Date(deps.clock.now());
  const generated = await generateKeyWithCertificate(`${tenant.slug} SAML IdP`, now);
  const id = randomUUID();
  await db.signingKey.create({
    data: {
      id,
      tenantId: tenant.id,
      kid: generated.kid,
      purpose: SAML_PURPOSE,
      alg: ALG,
      status,
      certificate: generated.certificatePem,
      publicJwk: generated.publicJwk as object,
      privateJwk: deps.vault.encrypt(JSON.stringify(generated.privateJwk), SIGNING_KEY_PRIVATE_JWK.binding(tenant.id, id)),
      activatedAt: status === 'active' ? now : null,
    },
  });
  return generated.kid;
}

/** Fills in a missing active or next key (first use of the tenant's IdP); safe to run concurrently. */
async function fillMissingKeys(tx: Prisma.TransactionClient, deps: SamlKeyDeps, tenant: { id: string; slug: string }) {
  const statuses = new Set(
    (await tx.signingKey.findMany({ where: { tenantId: tenant.id, purpose: SAML_PURPOSE }, select: { status: true } })).map(
      (k) => k.status,
    ),
  );
  if (!statuses.has('active')) await createKey(tx, deps, tenant, 'active');
  if (!statuses.has('next')) await createKey(tx, deps, tenant, 'next');
}

export async function ensureSamlKeys(deps: SamlKeyDeps, tenant: { id: string; slug: string }): Promise<void> {
  const present = await deps.prisma.signingKey.findMany({
    where: { tenantId: tenant.id, purpose: SAML_PURPOSE, status: { in: ['active', 'next'] } },
    select: { status: true },
  });
  if (present.some((k) => k.status === 'active') && present.some((k) => k.status === 'next')) return;
  await deps.prisma.$transaction(
    async (tx) => {
      await lockTenantKeys(tx, tenant.id);
      await fillMissingKeys(tx, deps, tenant);
    },
    { timeout: 30_000 },
  );
}

/** Active first, then next, then previous: metadata lists the certificate that signs now first. */
export async function publishedCertificates(deps: SamlKeyDeps, tenant: { id: string; slug: string }): Promise<PublishedCertificate[]> {
  await ensureSamlKeys(deps, tenant);
  const rows = await deps.prisma.signingKey.findMany({
    where: { tenantId: tenant.id, purpose: SAML_PURPOSE, status: { in: [...PUBLISHED] } },
    select: { kid: true, status: true, certificate: true },
    orderBy: { createdAt: 'asc' },
  });
  const rank = (status: string) => PUBLISHED.indexOf(status as PublishedStatus);
  return rows
    .filter((row): row is typeof row & { certificate: string } => typeof row.certificate === 'string')
    .sort((a, b) => rank(a.status) - rank(b.status))
    .map((row) => ({ kid: row.kid, status: row.status as PublishedStatus, certificatePem: row.certificate }));
}

/** The key that signs responses and logout messages now. */
export async function activeSigningKey(deps: SamlKeyDeps, tenant: { id: string; slug: string }): Promise<SamlSigningKey> {
  await ensureSamlKeys(deps, tenant);
  const row = await deps.prisma.signingKey.findFirst({
    where: { tenantId: tenant.id, purpose: SAML_PURPOSE, status: 'active' },
    orderBy: { activatedAt: 'desc' },
  });
  if (!row?.certificate) throw new Error('the tenant has no active SAML signing key');
  const jwk = JSON.parse(deps.vault.decryptString(row.privateJwk, SIGNING_KEY_PRIVATE_JWK.binding(tenant.id, row.id))) as JWK;
  const privateKeyPem = createPrivateKey({ key: jwk as JsonWebKey, format: 'jwk' }).export({ type: 'pkcs8', format: 'pem' });
  return { kid: row.kid, privateKeyPem: privateKeyPem.toString(), certificatePem: row.certificate };
}

export interface SamlRotation {
  activated: string;
  previous: string | null;
  next: string;
}

/**
 * Rotation without downtime, as for the OIDC keys: the published next key
 * becomes active (SPs that refresh metadata already trust it), the active one
 * stays published as previous, the old previous retires, a fresh next appears.
 */
export async function rotateSamlKeys(
  deps: SamlKeyDeps & { audit: AuditLog },
  tenant: { id: string; slug: string },
  actor: Parameters<AuditLog['append']>[1]['actor'],
): Promise<SamlRotation> {
  await ensureSamlKeys(deps, tenant);
  return deps.prisma.$transaction(
    async (tx) => {
      await lockTenantKeys(tx, tenant.id);
      const fresh = await createKey(tx, deps, tenant, 'next');
      const keys = await tx.signingKey.findMany({
        where: { tenantId: tenant.id, purpose: SAML_PURPOSE, status: { in: ['active', 'next'] } },
        orderBy: { createdAt: 'asc' },
      });
      const active = keys.find((k) => k.status === 'active');
      const upcoming = keys.find((k) => k.status === 'next' && k.kid !== fresh);
      if (!upcoming) throw new Error('no next SAML key to activate');
      const now = new Date(deps.clock.now());
      await tx.signingKey.updateMany({
        where: { tenantId: tenant.id, purpose: SAML_PURPOSE, status: 'previous' },
        data: { status: 'retired', retiredAt: now },
      });
      if (active) await tx.signingKey.update({ where: { id: active.id }, data: { status: 'previous' } });
      await tx.signingKey.update({ where: { id: upcoming.id }, data: { status: 'active', activatedAt: now } });
      const outcome = { activated: upcoming.kid, previous: active?.kid ?? null, next: fresh };
      await deps.audit.append(
        tenant.id,
        { actor, action: 'saml.keys.rotated', resource: { type: 'signing_key', id: upcoming.kid }, metadata: { ...outcome } },
        tx,
      );
      return outcome;
    },
    { timeout: 30_000 },
  );
}
