import { EventEmitter } from 'node:events';
import { type Clock, systemClock } from '../clock.js';
import { type Counter, type KvStore, withOperationCount } from './kv.js';

interface Entry {
  value: string;
  expiresAt: number;
}

const SWEEP_INTERVAL_MS = 60_000;

/** The in-process KvStore: one node only, contents lost on restart. */
export function createMemoryKv(clock: Clock = systemClock): KvStore {
  const entries = new Map<string, Entry>();
  const bus = new EventEmitter();
  bus.setMaxListeners(0);
  let closed = false;
  // Like a Redis client after quit (same message, which errors.ts reads as "unavailable"), so an outage can be tested on both.
  const ensureOpen = () => {
    if (closed) throw new Error('Connection is closed.');
  };

  const live = (key: string): Entry | undefined => {
    const entry = entries.get(key);
    if (entry && entry.expiresAt <= clock.now()) {
      entries.delete(key);
      return undefined;
    }
    return entry;
  };
  const expiry = (ttlSeconds?: number) => (ttlSeconds ? clock.now() + ttlSeconds * 1000 : Number.POSITIVE_INFINITY);

  const sweep = setInterval(() => {
    for (const key of entries.keys()) live(key);
  }, SWEEP_INTERVAL_MS);
  sweep.unref();

  return withOperationCount({
    kind: 'memory',
    async get(key) {
      ensureOpen();
      return live(key)?.value ?? null;
    },
    async getMany(keys) {
      ensureOpen();
      return keys.map((key) => live(key)?.value ?? null);
    },
    async set(key, value, ttlSeconds) {
      ensureOpen();
      entries.set(key, { value, expiresAt: expiry(ttlSeconds) });
    },
    async setIfAbsent(key, value, ttlSeconds) {
      ensureOpen();
      if (live(key)) return false;
      entries.set(key, { value, expiresAt: expiry(ttlSeconds) });
      return true;
    },
    async consume(key) {
      ensureOpen();
      const entry = live(key);
      entries.delete(key);
      return entry?.value ?? null;
    },
    async del(...keys) {
      ensureOpen();
      for (const key of keys) entries.delete(key);
    },
    async increment(key, windowSeconds): Promise<Counter> {
      ensureOpen();
      const entry = live(key) ?? { value: '0', expiresAt: expiry(windowSeconds) };
      entry.value = String(Number(entry.value) + 1);
      entries.set(key, entry);
      return { count: Number(entry.value), resetInMs: entry.expiresAt - clock.now() };
    },
    async publish(channel, message) {
      ensureOpen();
      // Asynchronous like Redis, so callers cannot depend on synchronous delivery.
      setImmediate(() => bus.emit(channel, message));
    },
    async subscribe(channel, handler) {
      ensureOpen();
      bus.on(channel, handler);
      return async () => {
        bus.off(channel, handler);
      };
    },
    async ping() {
      ensureOpen();
    },
    async close() {
      closed = true;
      clearInterval(sweep);
      entries.clear();
      bus.removeAllListeners();
    },
  });
}
