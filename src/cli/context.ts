import { userInfo } from 'node:os';
import path from 'node:path';
import { type AuditLog, createAuditLog } from '../audit/audit.js';
import { type Clock, systemClock } from '../clock.js';
import type { Config } from '../config.js';
import { resolveMasterKey } from '../crypto/master-key.js';
import { createPasswordHasher, type PasswordHasher } from '../crypto/passwords.js';
import { createVault, type Vault } from '../crypto/vault.js';
import { notFound } from '../errors.js';
import { lockDataDir } from '../store/data-dir-lock.js';
import { type Database, migrate, openDatabase, openKv, pendingMigrations } from '../store/index.js';
import { publishTenantChange, type TenantChange } from '../tenants/tenants.js';

/** What a CLI command works with; opened per invocation, closed after it. */
export interface CliContext {
  config: Config;
  db: Database;
  clock: Clock;
  audit: AuditLog;
  passwords: PasswordHasher;
  vault(): Promise<Vault>;
  actor: { type: 'cli'; id: string };
  tenantId(slug: string): Promise<string>;
  /** Tells running nodes (through Redis, when configured) to drop what they cached about the tenant. */
  announce(change: TenantChange): Promise<void>;
}

function operator(): string {
  try {
    return userInfo().username;
  } catch {
    return 'unknown';
  }
}

/**
 * Opens the database the configuration names. The embedded one is locked for
 * the command's duration, and refused while the server holds it: PGlite must
 * never be opened by two processes.
 */
export async function openCliContext(
  config: Config,
  options: { migrating?: boolean } = {},
): Promise<CliContext & { close(): Promise<void> }> {
  const release = config.databaseUrl ? async () => {} : await lockDataDir(config.dataDir);
  let db: Database;
  try {
    db = await openDatabase({ url: config.databaseUrl, dataDir: config.dataDir, poolSize: 2 });
  } catch (error) {
    await release();
    throw error;
  }
  const close = async () => {
    await db.close();
    await release();
  };
  try {
    if (!options.migrating) await ensureMigrated(db);
  } catch (error) {
    await close();
    throw error;
  }
  const clock = systemClock;
  const prisma = db.prisma;
  return {
    config,
    db,
    clock,
    audit: createAuditLog({ prisma, clock }),
    passwords: createPasswordHasher(),
    vault: async () =>
      createVault({ masterKey: await resolveMasterKey(config, path.resolve('keys')), previousMasterKeys: config.previousMasterKeys }),
    actor: { type: 'cli', id: operator() },
    async tenantId(slug) {
      const tenant = await prisma.tenant.findUnique({ where: { slug }, select: { id: true } });
      if (!tenant) throw notFound(`no tenant "${slug}"`);
      return tenant.id;
    },
    async announce(change) {
      // Without Redis there is no other node to tell: the embedded store is single-process.
      if (!config.redisUrl) return;
      const kv = await openKv({ url: config.redisUrl });
      try {
        await publishTenantChange(kv, change);
      } finally {
        await kv.close();
      }
    },
    close,
  };
}

/** Embedded databases migrate on first use; PostgreSQL is migrated only by `idp migrate`. */
async function ensureMigrated(db: Database): Promise<void> {
  if (db.kind === 'pglite') {
    await migrate(db);
    return;
  }
  const pending = await pendingMigrations(db);
  if (pending.length) throw new Error(`the database has ${pending.length} pending migration(s): run \`idp migrate\` first`);
}
