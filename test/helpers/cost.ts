import type { TestApp } from './app.js';

/** What a piece of work cost the stores: SQL statements and KvStore operations (Redis round trips). */
export interface StoreCost {
  statements: number;
  kvOperations: number;
}

const totals = (app: TestApp): StoreCost => ({ statements: app.deps.db.statements(), kvOperations: app.deps.kv.operations() });

/**
 * Runs `work` and returns what it cost, including writes it left behind
 * (audit appends are batched after the response): the counts are read once
 * they stopped moving. Nothing else may use the app meanwhile.
 */
export async function storeCost(app: TestApp, work: () => Promise<unknown>): Promise<StoreCost> {
  // Earlier work's batched writes must not be counted as this work's.
  const before = await settled(app);
  await work();
  const after = await settled(app);
  return { statements: after.statements - before.statements, kvOperations: after.kvOperations - before.kvOperations };
}

async function settled(app: TestApp): Promise<StoreCost> {
  let last = totals(app);
  for (let quiet = 0; quiet < 5; ) {
    await new Promise((resolve) => setTimeout(resolve, 10));
    const now = totals(app);
    quiet = now.statements === last.statements && now.kvOperations === last.kvOperations ? quiet + 1 : 0;
    last = now;
  }
  return last;
}
