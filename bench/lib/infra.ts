import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import pg from 'pg';
import { runTs } from './processes.js';

/**
 * The throw-away stores of one run: a fresh PostgreSQL database, dropped at
 * the end, and a Redis logical database of its own.
 */
export interface BenchStores {
  databaseUrl: string;
  redisUrl: string;
  /** Drops the database and empties the Redis database. */
  cleanUp(): Promise<void>;
}

function withDatabase(url: string, database: string): string {
  const parsed = new URL(url);
  parsed.pathname = `/${database}`;
  return parsed.toString();
}

async function adminQuery(adminUrl: string, sql: string): Promise<void> {
  const client = new pg.Client({ connectionString: adminUrl });
  await client.connect();
  try {
    await client.query(sql);
  } finally {
    await client.end();
  }
}

/**
 * The server's Redis key prefix is fixed (`idp:`), so a run cannot keep its
 * keys apart from another deployment's by prefix. It uses a logical database
 * of its own instead (`/15` by default) and empties only that one, with
 * FLUSHDB, before and after. Never FLUSHALL: other suites share this Redis.
 * Database 0, where everything lands by default, is refused.
 * (Pub/sub channels are not per database: tenant-change messages of other
 * servers on this Redis reach the bench server too, which only costs a cache miss.)
 */
export async function flushBenchRedis(redisUrl: string): Promise<void> {
  const db = Number(new URL(redisUrl).pathname.slice(1) || '0');
  if (!Number.isInteger(db) || db === 0) {
    throw new Error(
      `BENCH_REDIS_URL must name a dedicated logical database other than 0 (e.g. redis://127.0.0.1:6379/15), got ${redisUrl}`,
    );
  }
  const redis = new Redis(redisUrl, { lazyConnect: true, maxRetriesPerRequest: 1 });
  await redis.connect();
  try {
    await redis.flushdb();
  } finally {
    redis.disconnect();
  }
}

/**
 * Deletes the per-IP rate-limit counters (`idp:ratelimit:*`, src/security/rate-limit.ts)
 * in the bench's Redis database, so each scenario starts with fresh one-minute
 * windows instead of inheriting the last scenario's count. Should the key
 * names change, 429s show up in the report as "invalid" verdicts, not as
 * silently low figures.
 */
export async function resetRateLimits(redisUrl: string): Promise<void> {
  const redis = new Redis(redisUrl, { lazyConnect: true, maxRetriesPerRequest: 1 });
  await redis.connect();
  try {
    let cursor = '0';
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', 'idp:ratelimit:*', 'COUNT', 1000);
      if (keys.length) await redis.del(...keys);
      cursor = next;
    } while (cursor !== '0');
  } finally {
    redis.disconnect();
  }
}

/** Creates `idp_bench_<random>`, migrates it with `idp migrate`, and empties the bench's Redis database. */
export async function createBenchStores(adminUrl: string, redisUrl: string, env: NodeJS.ProcessEnv): Promise<BenchStores> {
  const name = `idp_bench_${randomBytes(5).toString('hex')}`;
  await adminQuery(adminUrl, `CREATE DATABASE ${name}`);
  const databaseUrl = withDatabase(adminUrl, name);
  const cleanUp = async () => {
    await flushBenchRedis(redisUrl).catch(() => {});
    await adminQuery(adminUrl, `DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
  };
  try {
    await flushBenchRedis(redisUrl);
    await runTs('src/cli/main.ts', { args: ['migrate'], env: { ...env, DATABASE_URL: databaseUrl, REDIS_URL: redisUrl } });
  } catch (error) {
    await cleanUp();
    throw error;
  }
  return { databaseUrl, redisUrl, cleanUp };
}
