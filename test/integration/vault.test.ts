import { generateKeyPairSync, randomBytes, randomUUID } from 'node:crypto';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { reencryptAll, SECRET_VALUE, SIGNING_KEY_PRIVATE_JWK } from '../../src/crypto/reencrypt.js';
import { createVault, type Vault, VaultError } from '../../src/crypto/vault.js';
import type { PrismaClient } from '../../src/store/db.js';
import { createTestStores, type TestStores } from '../helpers/stores.js';

const keyA = randomBytes(32);
const keyB = randomBytes(32);
const vaultA = createVault({ masterKey: keyA });
const vaultB = createVault({ masterKey: keyB, previousMasterKeys: [keyA] });
const onlyB = createVault({ masterKey: keyB });

let stores: TestStores;
let prisma: PrismaClient;

beforeAll(async () => {
  stores = await createTestStores();
  prisma = stores.db.prisma;
});
afterAll(() => stores?.close());
beforeEach(async () => {
  // reencryptAll sweeps every tenant, so each test starts from empty tables.
  await prisma.signingKey.deleteMany();
  await prisma.secret.deleteMany();
  await prisma.tenant.deleteMany();
});

async function createTenant(): Promise<string> {
  const slug = `t-${randomBytes(4).toString('hex')}`;
  return (await prisma.tenant.create({ data: { slug, displayName: slug } })).id;
}

/** The id is chosen before encrypting because it is part of the ciphertext's binding. */
async function storeSecret(vault: Vault, tenantId: string, plaintext: string, name = `s-${randomBytes(4).toString('hex')}`) {
  const id = randomUUID();
  await prisma.secret.create({ data: { id, tenantId, name, value: vault.encrypt(plaintext, SECRET_VALUE.binding(tenantId, id)) } });
  return id;
}

async function storeSigningKey(vault: Vault, tenantId: string) {
  const { publicKey, privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const privateJwk = JSON.stringify(privateKey.export({ format: 'jwk' }));
  const id = randomUUID();
  await prisma.signingKey.create({
    data: {
      id,
      tenantId,
      kid: randomUUID(),
      alg: 'RS256',
      status: 'active',
      publicJwk: publicKey.export({ format: 'jwk' }) as object,
      privateJwk: vault.encrypt(privateJwk, SIGNING_KEY_PRIVATE_JWK.binding(tenantId, id)),
    },
  });
  return { id, privateJwk };
}

async function readSecret(vault: Vault, id: string): Promise<string> {
  const row = await prisma.secret.findUniqueOrThrow({ where: { id } });
  return vault.decryptString(row.value, SECRET_VALUE.binding(row.tenantId, row.id));
}

async function readSigningKey(vault: Vault, id: string): Promise<string> {
  const row = await prisma.signingKey.findUniqueOrThrow({ where: { id } });
  return vault.decryptString(row.privateJwk, SIGNING_KEY_PRIVATE_JWK.binding(row.tenantId, row.id));
}

const total = (results: Awaited<ReturnType<typeof reencryptAll>>, field: 'reencrypted' | 'skipped' | 'failed') =>
  results.reduce((sum, result) => sum + result[field], 0);

/** Stores `perTenant` secrets and one signing key in each of two tenants, all under key A. */
async function seed(perTenant: number) {
  const plaintexts = new Map<string, string>();
  const signingKeys = new Map<string, string>();
  for (const tenantId of [await createTenant(), await createTenant()]) {
    for (let i = 0; i < perTenant; i += 1) {
      const plaintext = `secret-${i}-${randomBytes(8).toString('hex')}`;
      plaintexts.set(await storeSecret(vaultA, tenantId, plaintext), plaintext);
    }
    const key = await storeSigningKey(vaultA, tenantId);
    signingKeys.set(key.id, key.privateJwk);
  }
  return { plaintexts, signingKeys, count: plaintexts.size + signingKeys.size };
}

describe('vault at rest', () => {
  it('round-trips secrets and signing keys through the database', async () => {
    const tenantId = await createTenant();
    const id = await storeSecret(vaultA, tenantId, 'hunter2');
    const key = await storeSigningKey(vaultA, tenantId);
    expect(await readSecret(vaultA, id)).toBe('hunter2');
    expect(await readSigningKey(vaultA, key.id)).toBe(key.privateJwk);
  });

  it('fails to decrypt both rows after their values are swapped', async () => {
    const tenantId = await createTenant();
    const first = await storeSecret(vaultA, tenantId, 'first secret');
    const second = await storeSecret(vaultA, tenantId, 'second secret');
    const [a, b] = await Promise.all([first, second].map((id) => prisma.secret.findUniqueOrThrow({ where: { id } })));
    await prisma.secret.update({ where: { id: first }, data: { value: b?.value } });
    await prisma.secret.update({ where: { id: second }, data: { value: a?.value } });
    await expect(readSecret(vaultA, first)).rejects.toBeInstanceOf(VaultError);
    await expect(readSecret(vaultA, second)).rejects.toBeInstanceOf(VaultError);
  });

  it('fails to decrypt a row moved to another tenant', async () => {
    const id = await storeSecret(vaultA, await createTenant(), 'tenant-bound secret');
    const otherTenant = await createTenant();
    await prisma.secret.update({ where: { id }, data: { tenantId: otherTenant } });
    await expect(readSecret(vaultA, id)).rejects.toBeInstanceOf(VaultError);
  });

  it('fails to decrypt a secret copied into another column', async () => {
    const tenantId = await createTenant();
    const secretId = await storeSecret(vaultA, tenantId, 'not a signing key');
    const key = await storeSigningKey(vaultA, tenantId);
    const secret = await prisma.secret.findUniqueOrThrow({ where: { id: secretId } });
    await prisma.signingKey.update({ where: { id: key.id }, data: { privateJwk: secret.value } });
    await expect(readSigningKey(vaultA, key.id)).rejects.toBeInstanceOf(VaultError);
  });
});

describe('reencryptAll', () => {
  it('moves every row to the new master key; a second run has nothing to do', async () => {
    const { plaintexts, signingKeys, count } = await seed(3);
    await expect(readSecret(onlyB, [...plaintexts.keys()][0] as string)).rejects.toBeInstanceOf(VaultError);

    const first = await reencryptAll(prisma, vaultB);
    expect(first).toEqual([
      { table: 'Secret', column: 'value', reencrypted: plaintexts.size, skipped: 0, failed: 0, failedIds: [] },
      { table: 'SigningKey', column: 'privateJwk', reencrypted: signingKeys.size, skipped: 0, failed: 0, failedIds: [] },
      // TOTP secrets are covered too; test/integration/mfa-totp.test.ts re-encrypts real ones.
      { table: 'MfaFactor', column: 'secret', reencrypted: 0, skipped: 0, failed: 0, failedIds: [] },
      // Connection secrets and SP keys too; test/integration/federation-oidc.test.ts re-encrypts real ones.
      { table: 'Connection', column: 'clientSecret', reencrypted: 0, skipped: 0, failed: 0, failedIds: [] },
      { table: 'Connection', column: 'spPrivateKey', reencrypted: 0, skipped: 0, failed: 0, failedIds: [] },
    ]);
    expect(total(first, 'reencrypted')).toBe(count);

    const second = await reencryptAll(prisma, vaultB);
    expect(total(second, 'reencrypted')).toBe(0);
    expect(total(second, 'failed')).toBe(0);

    // Key A can now be dropped from MASTER_KEY_PREVIOUS.
    for (const [id, plaintext] of plaintexts) expect(await readSecret(onlyB, id)).toBe(plaintext);
    for (const [id, privateJwk] of signingKeys) expect(await readSigningKey(onlyB, id)).toBe(privateJwk);
    for (const row of await prisma.secret.findMany()) expect(onlyB.isCurrent(row.value)).toBe(true);
  });

  it('resumes after an interruption and finishes on the next run', async () => {
    const { plaintexts, count } = await seed(3);
    let batches = 0;
    const interrupted = reencryptAll(prisma, vaultB, {
      batchSize: 2,
      onProgress: () => {
        batches += 1;
        throw new Error('interrupted');
      },
    });
    await expect(interrupted).rejects.toThrow('interrupted');
    expect(batches).toBe(1);
    const rows = await prisma.secret.findMany();
    expect(rows.filter((row) => vaultB.isCurrent(row.value))).toHaveLength(2);

    const resumed = await reencryptAll(prisma, vaultB, { batchSize: 2 });
    expect(total(resumed, 'reencrypted')).toBe(count - 2);
    expect(total(await reencryptAll(prisma, vaultB), 'reencrypted')).toBe(0);
    for (const [id, plaintext] of plaintexts) expect(await readSecret(onlyB, id)).toBe(plaintext);
  });

  it('reports progress per batch', async () => {
    await seed(3);
    const progress: Array<{ table: string; reencrypted: number }> = [];
    await reencryptAll(prisma, vaultB, {
      batchSize: 4,
      onProgress: ({ table, reencrypted }) => void progress.push({ table, reencrypted }),
    });
    expect(progress).toEqual([
      { table: 'Secret', reencrypted: 4 },
      { table: 'Secret', reencrypted: 6 },
      { table: 'SigningKey', reencrypted: 2 },
    ]);
  });

  it('never lets two concurrent runs both rewrite a row', async () => {
    const { plaintexts, count } = await seed(5);
    const runs = await Promise.all([reencryptAll(prisma, vaultB, { batchSize: 3 }), reencryptAll(prisma, vaultB, { batchSize: 3 })]);
    const reencrypted = runs.reduce((sum, run) => sum + total(run, 'reencrypted'), 0);
    const skipped = runs.reduce((sum, run) => sum + total(run, 'skipped'), 0);
    expect(reencrypted).toBe(count);
    expect(reencrypted + skipped).toBeLessThanOrEqual(2 * count);
    for (const [id, plaintext] of plaintexts) expect(await readSecret(onlyB, id)).toBe(plaintext);
  });

  it('reports rows no known key can decrypt, on every run, and still converts the rest', async () => {
    const { plaintexts } = await seed(2);
    const tenantId = await createTenant();
    const unknownKey = await storeSecret(createVault({ masterKey: randomBytes(32) }), tenantId, 'lost key');
    // Right key, wrong row: as undecryptable as a lost key, and must not be "repaired" by re-encryption.
    const misplaced = await storeSecret(vaultA, tenantId, 'misplaced');
    const donor = await prisma.secret.findUniqueOrThrow({ where: { id: [...plaintexts.keys()][0] as string } });
    await prisma.secret.update({ where: { id: misplaced }, data: { value: donor.value } });

    for (const expectedReencrypted of [plaintexts.size, 0]) {
      const [secrets, keys] = await reencryptAll(prisma, vaultB, { batchSize: 1 });
      expect(secrets?.reencrypted).toBe(expectedReencrypted);
      expect(secrets?.failed).toBe(2);
      expect(secrets?.failedIds.sort()).toEqual([unknownKey, misplaced].sort());
      expect(keys?.failed).toBe(0);
    }
    for (const [id, plaintext] of plaintexts) expect(await readSecret(onlyB, id)).toBe(plaintext);
  });

  it('keeps the value a concurrent writer stored instead of overwriting it', async () => {
    const tenantId = await createTenant();
    const id = await storeSecret(vaultA, tenantId, 'old value');
    const client = {
      $queryRaw: prisma.$queryRaw.bind(prisma),
      // The row changes between our read and our write, as if an admin updated it.
      $executeRaw: (async (...args: Parameters<PrismaClient['$executeRaw']>) => {
        await prisma.secret.update({ where: { id }, data: { value: vaultA.encrypt('new value', SECRET_VALUE.binding(tenantId, id)) } });
        return prisma.$executeRaw(...args);
      }) as PrismaClient['$executeRaw'],
    };
    const [secrets] = await reencryptAll(client, vaultB);
    expect(secrets).toMatchObject({ reencrypted: 0, skipped: 1, failed: 0 });
    expect(await readSecret(vaultB, id)).toBe('new value');
  });
});

describe('database contents', () => {
  it('hold no plaintext secret, in any encoding, in any table', async () => {
    const tenantId = await createTenant();
    const plaintexts = [
      'PLAINTEXT-CANARY-alpha-7f3a9c',
      'plaintext canary beta 51e0d2',
      JSON.stringify({ password: 'canary-gamma-0b8e44' }),
    ];
    for (const plaintext of plaintexts) await storeSecret(vaultA, tenantId, plaintext);
    const key = await storeSigningKey(vaultA, tenantId);
    await reencryptAll(prisma, vaultB);
    const { d, p, q, dp, dq, qi } = JSON.parse(key.privateJwk) as Record<string, string>;
    const needles = [...plaintexts, 'canary-gamma-0b8e44', key.privateJwk, d, p, q, dp, dq, qi].flatMap((plaintext) => {
      const bytes = Buffer.from(plaintext ?? '', 'utf8');
      return [bytes.toString('utf8'), bytes.toString('base64'), bytes.toString('base64url'), bytes.toString('hex')];
    });

    const dump = await dumpDatabase();
    expect(dump).toContain(tenantId);
    expect(dump).toContain('"value":"v1.');
    for (const needle of needles) {
      expect(needle.length).toBeGreaterThan(8);
      expect(dump.includes(needle), `found ${needle.slice(0, 12)}… in the database`).toBe(false);
      expect(dump.toLowerCase().includes(needle.toLowerCase())).toBe(false);
    }
  });
});

/** Every row of every table in the public schema, as JSON text (bytea shows as hex). */
async function dumpDatabase(): Promise<string> {
  const tables = await prisma.$queryRaw<Array<{ name: string }>>`
    SELECT table_name AS name FROM information_schema.tables WHERE table_schema = 'public' AND table_type = 'BASE TABLE'`;
  expect(tables.map((table) => table.name)).toEqual(expect.arrayContaining(['Secret', 'SigningKey', 'Tenant']));
  const rows: string[] = [];
  for (const { name } of tables) {
    const quoted = `"${name.replaceAll('"', '""')}"`;
    const result = await prisma.$queryRawUnsafe<Array<{ row: string }>>(`SELECT row_to_json(t)::text AS row FROM ${quoted} t`);
    rows.push(...result.map((r) => r.row));
  }
  return rows.join('\n');
}
