import type { Clock } from '../clock.js';
import type { KvStore } from './kv.js';
import { createMemoryKv } from './kv-memory.js';
import { createRedisKv } from './kv-redis.js';

export { type Database, type DatabaseOptions, openDatabase } from './db.js';
export type { Counter, KvStore } from './kv.js';
export { migrate, pendingMigrations } from './migrate.js';

export interface KvOptions {
  url?: string;
  prefix?: string;
  clock?: Clock;
}

/** Redis when a URL is given, otherwise the in-process store. */
export function openKv({ url, prefix, clock }: KvOptions): Promise<KvStore> {
  return url ? createRedisKv({ url, prefix }) : Promise.resolve(createMemoryKv(clock));
}
