import { describe, expect, it } from 'vitest';
import type { PrismaClient } from '../store/db.js';
import { createMemoryKv } from '../store/kv-memory.js';
import { publishTenantChange } from '../tenants/tenants.js';
import { createNetworkPolicyCache } from './network-policy.js';

type Row = { cidrs: string[]; mode: string; applyToSignIn: boolean; updatedAt: Date };

/** A database of one policy row that counts reads; `hold` makes the next read wait until released. */
function fakeDatabase(initial: Row) {
  let row = initial;
  let reads = 0;
  let held: Promise<void> | null = null;
  const prisma = {
    networkPolicy: {
      async findUnique() {
        reads += 1;
        const snapshot = row;
        if (held) await held;
        return snapshot;
      },
    },
  } as unknown as PrismaClient;
  return {
    prisma,
    reads: () => reads,
    write: (next: Partial<Row>) => {
      row = { ...row, ...next };
    },
    hold(): () => void {
      let release = () => {};
      held = new Promise<void>((resolve) => {
        release = () => {
          held = null;
          resolve();
        };
      });
      return release;
    },
  };
}

const TENANT = '11111111-1111-1111-1111-111111111111';
const delivered = () => new Promise((resolve) => setImmediate(resolve));

describe('network policy cache', () => {
  it('reads a tenant policy once, and again after the tenant changed', async () => {
    const kv = createMemoryKv();
    const db = fakeDatabase({ cidrs: ['10.0.0.0/8'], mode: 'warn', applyToSignIn: false, updatedAt: new Date() });
    const cache = await createNetworkPolicyCache({ prisma: db.prisma, kv });
    expect((await cache.of(TENANT)).mode).toBe('warn');
    expect((await cache.of(TENANT)).mode).toBe('warn');
    expect(db.reads()).toBe(1);

    db.write({ mode: 'block', applyToSignIn: true });
    await publishTenantChange(kv, { tenantId: TENANT, slug: 't', what: 'network' });
    await delivered();
    expect(await cache.of(TENANT)).toMatchObject({ mode: 'block', applyToSignIn: true });
    await cache.close();
    await kv.close();
  });

  it('does not keep what a read saw when the tenant changed while it was under way', async () => {
    const kv = createMemoryKv();
    const db = fakeDatabase({ cidrs: ['10.0.0.0/8'], mode: 'warn', applyToSignIn: false, updatedAt: new Date() });
    const cache = await createNetworkPolicyCache({ prisma: db.prisma, kv });
    const release = db.hold();
    const stale = cache.of(TENANT);
    db.write({ mode: 'block', applyToSignIn: true });
    await publishTenantChange(kv, { tenantId: TENANT, slug: 't', what: 'network' });
    await delivered();
    release();
    expect((await stale).mode).toBe('warn');
    expect(await cache.of(TENANT)).toMatchObject({ mode: 'block', applyToSignIn: true });
    await cache.close();
    await kv.close();
  });
});
