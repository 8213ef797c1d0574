import type { Database } from './db.js';
import { openSchemaEngine, readMigrationList } from './schema-engine.js';

/**
 * Applies the pending migrations of prisma/migrations with Prisma's own
 * (WebAssembly) schema engine, recording them in `_prisma_migrations` exactly
 * as `prisma migrate deploy` would.
 */
export async function migrate(db: Database): Promise<string[]> {
  const engine = await openSchemaEngine(db.adapter);
  try {
    const result = await engine.applyMigrations({
      migrationsList: await readMigrationList(),
      filters: { externalTables: [], externalEnums: [] },
    });
    return result.appliedMigrationNames;
  } finally {
    engine.free();
  }
}
