import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import pg from 'pg';
import { type Clock, systemClock } from '../../src/clock.js';
import { type Database, type KvStore, migrate, openDatabase, openKv } from '../../src/store/index.js';
import { migrationsDir, readMigrationList } from '../../src/store/schema-engine.js';
import { testDatabaseUrl, testRedisUrl } from './env.js';

export interface TestStores {
  db: Database;
  kv: KvStore;
  /** PostgreSQL URL of this suite's own database (unset on PGlite). */
  databaseUrl?: string;
  /** Redis key prefix of this suite (unset on the memory store). */
  kvPrefix?: string;
  close(): Promise<void>;
}

export interface TestStoreOptions {
  clock?: Clock;
  /** Force a backend regardless of the environment (the contract suites run both). */
  backend?: 'embedded' | 'external';
}

const suffix = () => randomBytes(6).toString('hex');

/**
 * Fresh, migrated stores for one suite: a new PostgreSQL database cloned from a
 * migrated template (or an in-memory PGlite), and a Redis key prefix of its own
 * (or a memory store). Nothing shared is ever flushed.
 */
export async function createTestStores(options: TestStoreOptions = {}): Promise<TestStores> {
  const external = options.backend ? options.backend === 'external' : Boolean(testDatabaseUrl);
  const clock = options.clock ?? systemClock;
  const database = external ? await createPostgresDatabase() : { db: await createPgliteDatabase(), drop: async () => {} };
  const useRedis = options.backend ? options.backend === 'external' : Boolean(testRedisUrl);
  const kvPrefix = useRedis ? `idp_test_${suffix()}:` : undefined;
  const kv = await openKv({ url: useRedis ? requireUrl(testRedisUrl, 'REDIS_URL') : undefined, prefix: kvPrefix, clock });
  return {
    db: database.db,
    kv,
    databaseUrl: 'url' in database ? database.url : undefined,
    kvPrefix,
    async close() {
      if (kvPrefix) await deleteKeys(kvPrefix);
      await kv.close();
      await database.db.close();
      await database.drop();
    },
  };
}

function requireUrl(url: string | undefined, name: string): string {
  if (!url) throw new Error(`${name} must be set for the external backends`);
  return url;
}

async function createPgliteDatabase(): Promise<Database> {
  const db = await openDatabase({});
  await migrate(db);
  return db;
}

async function migrationsFingerprint(): Promise<string> {
  const list = await readMigrationList();
  const { createHash } = await import('node:crypto');
  const hash = createHash('sha256');
  for (const dir of list.migrationDirectories) {
    hash.update(dir.path);
    hash.update(await readFile(path.join(migrationsDir, dir.path, 'migration.sql')));
  }
  return hash.digest('hex').slice(0, 12);
}

function databaseUrl(adminUrl: string, name: string): string {
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  return url.toString();
}

async function withAdmin<T>(work: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: requireUrl(testDatabaseUrl, 'DATABASE_URL') });
  await client.connect();
  try {
    return await work(client);
  } finally {
    await client.end();
  }
}

/** Migrating once into a template and cloning it keeps per-suite databases cheap. */
async function ensureTemplate(): Promise<string> {
  const template = `idp_template_${await migrationsFingerprint()}`;
  await withAdmin(async (admin) => {
    await admin.query('SELECT pg_advisory_lock(727274)');
    try {
      const exists = await admin.query('SELECT 1 FROM pg_database WHERE datname = $1', [template]);
      if (exists.rowCount) return;
      const building = `${template}_building_${suffix()}`;
      await admin.query(`CREATE DATABASE "${building}"`);
      const db = await openDatabase({ url: databaseUrl(requireUrl(testDatabaseUrl, 'DATABASE_URL'), building), poolSize: 1 });
      try {
        await migrate(db);
      } finally {
        await db.close();
      }
      await admin.query(`ALTER DATABASE "${building}" RENAME TO "${template}"`);
    } finally {
      await admin.query('SELECT pg_advisory_unlock(727274)');
    }
  });
  return template;
}

async function createPostgresDatabase(): Promise<{ db: Database; url: string; drop(): Promise<void> }> {
  const template = await ensureTemplate();
  const name = `idp_test_${suffix()}`;
  await withAdmin(async (admin) => {
    // Cloning needs the template to be idle; serialise clones across workers.
    await admin.query('SELECT pg_advisory_lock(727275)');
    try {
      await admin.query(`CREATE DATABASE "${name}" TEMPLATE "${template}"`);
    } finally {
      await admin.query('SELECT pg_advisory_unlock(727275)');
    }
  });
  const url = databaseUrl(requireUrl(testDatabaseUrl, 'DATABASE_URL'), name);
  const db = await openDatabase({ url, poolSize: 5 });
  return {
    db,
    url,
    drop: () => withAdmin((admin) => admin.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`)).then(() => undefined),
  };
}

async function deleteKeys(prefix: string): Promise<void> {
  const { Redis } = await import('ioredis');
  const redis = new Redis(requireUrl(testRedisUrl, 'REDIS_URL'));
  try {
    let cursor = '0';
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 500);
      cursor = next;
      if (keys.length) await redis.del(...keys);
    } while (cursor !== '0');
  } finally {
    redis.disconnect();
  }
}
