import { loadConfig } from '../../src/config.js';

/**
 * The test suite's view of the environment, read through the one config
 * reader: DATABASE_URL names an admin database on which each suite creates its
 * own; REDIS_URL a Redis in which each suite gets its own key prefix.
 */
const config = loadConfig({ ...process.env, NODE_ENV: 'test', MASTER_KEY: undefined, MASTER_KEY_PREVIOUS: undefined });
export const testDatabaseUrl = config.databaseUrl;
export const testRedisUrl = config.redisUrl;
