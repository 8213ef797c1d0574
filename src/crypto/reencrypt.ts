import { Prisma, type PrismaClient } from '../store/db.js';
import { type Vault, type VaultBinding, VaultError } from './vault.js';

/**
 * Every column that holds vault envelopes, and `reencryptAll`, which moves them
 * to the current master key (`idp vault reencrypt`, after MASTER_KEY rotation).
 */

export interface EncryptedRow {
  id: string;
  tenantId: string;
  value: string;
}

type RawClient = Pick<PrismaClient, '$queryRaw' | '$executeRaw'>;

export interface EncryptedColumn {
  readonly table: string;
  readonly column: string;
  /** The AAD of a value stored in this column: what every reader and writer of it must pass. */
  binding(tenantId: string, recordId: string): VaultBinding;
  /** Up to `take` rows after `afterId` (in id order) whose envelope does not start with `prefix`. */
  staleRows(prisma: RawClient, prefix: string, afterId: string | undefined, take: number): Promise<EncryptedRow[]>;
  /** Writes `next` only if the row still holds `previous`; false when someone else changed it first. */
  replace(prisma: RawClient, row: EncryptedRow, next: string): Promise<boolean>;
}

const IDENTIFIER = /^[A-Za-z][A-Za-z0-9_]*$/;

/**
 * A text column of a table keyed by a uuid `id` with a `tenantId`. A secret
 * nested inside JSON would be an EncryptedColumn of its own making.
 */
export function uuidKeyedTextColumn(table: string, column: string): EncryptedColumn {
  if (!IDENTIFIER.test(table) || !IDENTIFIER.test(column)) throw new Error(`invalid identifier ${table}.${column}`);
  const from = Prisma.raw(`"${table}"`);
  const col = Prisma.raw(`"${column}"`);
  return {
    table,
    column,
    binding: (tenantId, recordId) => ({ tenantId, table, column, recordId }),
    staleRows(prisma, prefix, afterId, take) {
      const after = afterId === undefined ? Prisma.empty : Prisma.sql`AND "id" > ${afterId}::uuid`;
      return prisma.$queryRaw<EncryptedRow[]>`
        SELECT "id"::text AS "id", "tenantId"::text AS "tenantId", ${col} AS "value" FROM ${from}
        WHERE ${col} IS NOT NULL AND NOT starts_with(${col}, ${prefix}) ${after}
        ORDER BY "id" LIMIT ${take}`;
    },
    async replace(prisma, row, next) {
      const updated = await prisma.$executeRaw`
        UPDATE ${from} SET ${col} = ${next} WHERE "id" = ${row.id}::uuid AND ${col} = ${row.value}`;
      return updated === 1;
    },
  };
}

export const SECRET_VALUE = uuidKeyedTextColumn('Secret', 'value');
export const SIGNING_KEY_PRIVATE_JWK = uuidKeyedTextColumn('SigningKey', 'privateJwk');
/** TOTP shared secrets (src/security/mfa.ts). */
export const MFA_FACTOR_SECRET = uuidKeyedTextColumn('MfaFactor', 'secret');

/** Upstream OIDC client secrets and our per-connection SAML SP keys (src/federation/connections.ts). */
export const CONNECTION_CLIENT_SECRET = uuidKeyedTextColumn('Connection', 'clientSecret');
export const CONNECTION_SP_PRIVATE_KEY = uuidKeyedTextColumn('Connection', 'spPrivateKey');

/** Add new encrypted columns here, one entry each, so rotation covers them. */
export const ENCRYPTED_COLUMNS: readonly EncryptedColumn[] = Object.freeze([
  SECRET_VALUE,
  SIGNING_KEY_PRIVATE_JWK,
  MFA_FACTOR_SECRET,
  CONNECTION_CLIENT_SECRET,
  CONNECTION_SP_PRIVATE_KEY,
]);

export interface ReencryptResult {
  table: string;
  column: string;
  reencrypted: number;
  /** Changed by a concurrent writer between our read and our write; left as they wrote it. */
  skipped: number;
  /** Could not be decrypted with any known key (or is bound to another row): needs an operator. */
  failed: number;
  failedIds: string[];
}

export interface ReencryptOptions {
  batchSize?: number;
  /** Called after every batch with the running totals of the column; throwing stops the run. */
  onProgress?: (progress: Readonly<ReencryptResult>) => void | Promise<void>;
  columns?: readonly EncryptedColumn[];
}

/**
 * Re-encrypts every envelope not under the current master key. Each row is
 * updated on its own with an optimistic guard, so a crash leaves the rest for
 * the next run, a second run finds nothing to do, and a concurrent writer's
 * value is never overwritten. Failures are counted, never skipped silently:
 * callers must treat `failed > 0` as an error.
 */
export async function reencryptAll(prisma: RawClient, vault: Vault, options: ReencryptOptions = {}): Promise<ReencryptResult[]> {
  const batchSize = options.batchSize ?? 100;
  if (!Number.isInteger(batchSize) || batchSize < 1) throw new Error('batchSize must be a positive integer');
  const results: ReencryptResult[] = [];
  for (const column of options.columns ?? ENCRYPTED_COLUMNS) {
    results.push(await reencryptColumn(prisma, vault, column, batchSize, options.onProgress));
  }
  return results;
}

async function reencryptColumn(
  prisma: RawClient,
  vault: Vault,
  column: EncryptedColumn,
  batchSize: number,
  onProgress: ReencryptOptions['onProgress'],
): Promise<ReencryptResult> {
  const result: ReencryptResult = { table: column.table, column: column.column, reencrypted: 0, skipped: 0, failed: 0, failedIds: [] };
  // Keyset paging rather than "the first stale rows": rows that fail stay stale and would be fetched forever.
  let afterId: string | undefined;
  for (;;) {
    const rows = await column.staleRows(prisma, vault.currentPrefix(), afterId, batchSize);
    if (rows.length === 0) return result;
    for (const row of rows) await reencryptRow(prisma, vault, column, row, result);
    afterId = rows[rows.length - 1]?.id;
    await onProgress?.({ ...result, failedIds: [...result.failedIds] });
  }
}

async function reencryptRow(prisma: RawClient, vault: Vault, column: EncryptedColumn, row: EncryptedRow, result: ReencryptResult) {
  const binding = column.binding(row.tenantId, row.id);
  let plaintext: Buffer;
  try {
    plaintext = vault.decrypt(row.value, binding);
  } catch (error) {
    if (!(error instanceof VaultError)) throw error;
    result.failed += 1;
    result.failedIds.push(row.id);
    return;
  }
  const next = vault.encrypt(plaintext, binding);
  plaintext.fill(0);
  if (await column.replace(prisma, row, next)) result.reencrypted += 1;
  else result.skipped += 1;
}
