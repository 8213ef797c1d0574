import { Redis } from 'ioredis';
import { type Counter, type KvStore, withOperationCount } from './kv.js';

export interface RedisKvOptions {
  url: string;
  /** Prepended to every key and channel, so several deployments or test suites share one Redis. */
  prefix?: string;
}

const redisOptions = {
  // Fail fast while Redis is down so requests get a clear 503 instead of hanging.
  maxRetriesPerRequest: 1,
  connectTimeout: 2_000,
  commandTimeout: 2_000,
  lazyConnect: true,
  retryStrategy: (attempt: number) => Math.min(attempt * 200, 2_000),
};

/** The only place that constructs Redis clients (DESIGN.md section 4). */
export async function createRedisKv({ url, prefix = 'idp:' }: RedisKvOptions): Promise<KvStore> {
  // Commands issued in the same tick share one socket write: on loopback a write costs more than the command.
  const client = new Redis(url, { ...redisOptions, keyPrefix: prefix, enableAutoPipelining: true });
  // Subscriptions need a connection of their own; it is opened on first use.
  let subscriber: Redis | undefined;
  const handlers = new Map<string, Set<(message: string) => void>>();
  await client.connect();

  const channelName = (channel: string) => `${prefix}${channel}`;

  async function subscriberConnection(): Promise<Redis> {
    if (subscriber) return subscriber;
    subscriber = new Redis(url, { ...redisOptions, commandTimeout: undefined });
    subscriber.on('message', (channel: string, message: string) => {
      for (const handler of handlers.get(channel) ?? []) handler(message);
    });
    subscriber.on('error', () => {});
    await subscriber.connect();
    return subscriber;
  }

  // Errors surface on each command; the connection-level event is only noise.
  client.on('error', () => {});

  return withOperationCount({
    kind: 'redis',
    get: (key) => client.get(key),
    // MGET needs at least one key; ioredis prefixes each of them like any other key argument.
    getMany: async (keys) => (keys.length === 0 ? [] : client.mget(...keys)),
    async set(key, value, ttlSeconds) {
      if (ttlSeconds) await client.set(key, value, 'EX', ttlSeconds);
      else await client.set(key, value);
    },
    async setIfAbsent(key, value, ttlSeconds) {
      return (await client.set(key, value, 'EX', ttlSeconds, 'NX')) === 'OK';
    },
    consume: (key) => client.getdel(key),
    async del(...keys) {
      if (keys.length > 0) await client.del(...keys);
    },
    async increment(key, windowSeconds): Promise<Counter> {
      const results = await client.multi().set(key, '0', 'EX', windowSeconds, 'NX').incr(key).pttl(key).exec();
      if (!results) throw new Error('redis transaction aborted');
      const [, [incrError, count], [, pttl]] = results as [unknown, [Error | null, number], [Error | null, number]];
      if (incrError) throw incrError;
      return { count, resetInMs: Math.max(0, pttl) };
    },
    async publish(channel, message) {
      await client.publish(channelName(channel), message);
    },
    async subscribe(channel, handler) {
      const name = channelName(channel);
      const connection = await subscriberConnection();
      let set = handlers.get(name);
      if (!set) {
        set = new Set();
        handlers.set(name, set);
        await connection.subscribe(name);
      }
      set.add(handler);
      return async () => {
        set.delete(handler);
        if (set.size === 0) {
          handlers.delete(name);
          // With Redis gone there is nothing to unsubscribe from; failing here made a
          // SIGTERM while Redis was down abort the shutdown before the database closed.
          await connection.unsubscribe(name).catch(() => {});
        }
      };
    },
    async ping() {
      await client.ping();
    },
    async close() {
      client.disconnect();
      subscriber?.disconnect();
    },
  });
}
