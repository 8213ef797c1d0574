import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { manualClock } from '../../src/clock.js';
import type { KvStore } from '../../src/store/index.js';
import { createMemoryKv } from '../../src/store/kv-memory.js';
import { createRedisKv } from '../../src/store/kv-redis.js';
import { testRedisUrl } from '../helpers/env.js';

/** One contract, two implementations: what the rest of the code may rely on. */
function kvContract(name: string, open: () => Promise<{ kv: KvStore; close(): Promise<void> }>) {
  describe(`KvStore contract: ${name}`, () => {
    let kv: KvStore;
    let close: () => Promise<void>;
    beforeAll(async () => {
      ({ kv, close } = await open());
    });
    afterAll(() => close());

    it('stores, reads and deletes values', async () => {
      expect(await kv.get('missing')).toBeNull();
      await kv.set('a', 'one');
      expect(await kv.get('a')).toBe('one');
      await kv.set('a', 'two', 60);
      expect(await kv.get('a')).toBe('two');
      await kv.del('a');
      expect(await kv.get('a')).toBeNull();
      await kv.del();
    });

    it('getMany reads several keys at once, in order, null where absent', async () => {
      await kv.set('many:a', 'one', 60);
      await kv.set('many:c', 'three');
      expect(await kv.getMany(['many:a', 'many:b', 'many:c', 'many:a'])).toEqual(['one', null, 'three', 'one']);
      expect(await kv.getMany([])).toEqual([]);
      await kv.del('many:a', 'many:c');
      expect(await kv.getMany(['many:a', 'many:c'])).toEqual([null, null]);
      // One round trip, like one get: what makes it worth having.
      const before = kv.operations();
      await kv.getMany(['many:a', 'many:c']);
      expect(kv.operations() - before).toBe(1);
    });

    it('keeps unicode and large values intact', async () => {
      const value = `ünïcødé 🔐 ${'x'.repeat(100_000)}`;
      await kv.set('big', value, 60);
      expect(await kv.get('big')).toBe(value);
    });

    it('setIfAbsent stores only once', async () => {
      expect(await kv.setIfAbsent('once', '1', 60)).toBe(true);
      expect(await kv.setIfAbsent('once', '2', 60)).toBe(false);
      expect(await kv.get('once')).toBe('1');
    });

    it('setIfAbsent under concurrency lets exactly one caller win', async () => {
      const results = await Promise.all(Array.from({ length: 50 }, (_, i) => kv.setIfAbsent('race', String(i), 60)));
      expect(results.filter(Boolean)).toHaveLength(1);
    });

    it('consume hands a value to exactly one of many concurrent callers', async () => {
      await kv.set('code', 'secret-payload', 60);
      const results = await Promise.all(Array.from({ length: 20 }, () => kv.consume('code')));
      expect(results.filter((r) => r === 'secret-payload')).toHaveLength(1);
      expect(results.filter((r) => r === null)).toHaveLength(19);
      expect(await kv.get('code')).toBeNull();
    });

    it('counts within a window and reports when it resets', async () => {
      const first = await kv.increment('counter', 30);
      expect(first.count).toBe(1);
      expect(first.resetInMs).toBeGreaterThan(25_000);
      expect(first.resetInMs).toBeLessThanOrEqual(30_000);
      const counts = await Promise.all(Array.from({ length: 9 }, () => kv.increment('counter', 30)));
      expect(counts.map((c) => c.count).sort((a, b) => a - b)).toEqual([2, 3, 4, 5, 6, 7, 8, 9, 10]);
    });

    it('delivers published messages to subscribers until they unsubscribe', async () => {
      const received: string[] = [];
      const unsubscribe = await kv.subscribe('events', (message) => received.push(message));
      await kv.publish('events', 'hello');
      await expect.poll(() => received, { timeout: 2_000 }).toEqual(['hello']);
      await unsubscribe();
      await kv.publish('events', 'after');
      await new Promise((resolve) => setTimeout(resolve, 100));
      expect(received).toEqual(['hello']);
    });

    it('answers ping', async () => {
      await expect(kv.ping()).resolves.toBeUndefined();
    });
  });
}

kvContract('memory', async () => {
  const kv = createMemoryKv();
  return { kv, close: () => kv.close() };
});

describe.runIf(testRedisUrl)('KvStore contract (redis)', () => {
  kvContract('redis', async () => {
    const prefix = `idp_test_kv_${Date.now()}:`;
    const kv = await createRedisKv({ url: testRedisUrl as string, prefix });
    return { kv, close: () => kv.close() };
  });

  it('getMany reads only its own prefix', async () => {
    const stamp = Date.now();
    const mine = await createRedisKv({ url: testRedisUrl as string, prefix: `idp_test_kv_mine_${stamp}:` });
    const theirs = await createRedisKv({ url: testRedisUrl as string, prefix: `idp_test_kv_theirs_${stamp}:` });
    try {
      await theirs.set('shared', 'theirs', 60);
      await mine.set('own', 'mine', 60);
      expect(await mine.getMany(['shared', 'own'])).toEqual([null, 'mine']);
    } finally {
      await mine.del('own');
      await theirs.del('shared');
      await mine.close();
      await theirs.close();
    }
  });
});

describe('memory KvStore expiry follows the injected clock', () => {
  it('expires values and counter windows when the clock moves', async () => {
    const clock = manualClock(1_000_000);
    const kv = createMemoryKv(clock);
    await kv.set('short', 'v', 10);
    await kv.increment('window', 10);
    clock.advance(9_999);
    expect(await kv.get('short')).toBe('v');
    clock.advance(1);
    expect(await kv.get('short')).toBeNull();
    expect(await kv.getMany(['short'])).toEqual([null]);
    expect((await kv.increment('window', 10)).count).toBe(1);
    expect(await kv.setIfAbsent('short', 'again', 10)).toBe(true);
    await kv.close();
  });
});
