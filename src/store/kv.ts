/**
 * The ephemeral store: short-lived records (≤ 10 min), counters and pub/sub.
 * Redis in production, an in-process map for single-node use; both pass
 * test/integration/kv-contract.test.ts. Losing its contents may cost users a
 * retry, never a session, a refresh token or admin data.
 */
export interface KvStore {
  readonly kind: 'redis' | 'memory';
  get(key: string): Promise<string | null>;
  /** Reads several keys in one round trip; the values in the order of `keys`, null where absent. */
  getMany(keys: string[]): Promise<(string | null)[]>;
  /** Stores `value`, expiring after `ttlSeconds` when given. */
  set(key: string, value: string, ttlSeconds?: number): Promise<void>;
  /** Stores `value` only if `key` is absent; true when this call stored it (replay caches, single use). */
  setIfAbsent(key: string, value: string, ttlSeconds: number): Promise<boolean>;
  /** Atomically reads and deletes: of many concurrent callers exactly one gets the value. */
  consume(key: string): Promise<string | null>;
  del(...keys: string[]): Promise<void>;
  /** Increments a counter whose window of `windowSeconds` starts at its first increment. */
  increment(key: string, windowSeconds: number): Promise<Counter>;
  publish(channel: string, message: string): Promise<void>;
  /** Calls `handler` for every message on `channel`; resolves to the unsubscribe function. */
  subscribe(channel: string, handler: (message: string) => void): Promise<() => Promise<void>>;
  ping(): Promise<void>;
  close(): Promise<void>;
  /** Operations sent so far (one round trip each on Redis): the `idp_kv_operations_total` metric, and the tests' measure of a request's cost. */
  operations(): number;
}

/** Counts every call of `store`'s operations; the implementations' one way to provide `operations()`. */
export function withOperationCount(store: Omit<KvStore, 'operations'>): KvStore {
  let count = 0;
  const counted = { ...store } as Record<string, unknown>;
  for (const [name, value] of Object.entries(store)) {
    if (typeof value !== 'function' || name === 'close') continue;
    counted[name] = (...args: unknown[]) => {
      count += 1;
      return (value as (...a: unknown[]) => unknown).apply(store, args);
    };
  }
  return { ...(counted as unknown as Omit<KvStore, 'operations'>), operations: () => count };
}

export interface Counter {
  count: number;
  /** Milliseconds until the window ends and the counter resets. */
  resetInMs: number;
}
