import type { Database } from './db.js';
import { openSchemaEngine, readMigrationList } from './schema-engine.js';

/**
 * Applies the pending migrations of prisma/migrations with Prisma's own
 * (WebAssembly) schema engine, recording them in `_prisma_migrations` exactly
 * as `prisma migrate deploy` would.
 */
export async function migrate(db: Database): Promise<string[]> {
  // Starting the engine costs seconds (a 5 MB wasm module); skip it when there is nothing to do.
  if ((await pendingMigrations(db)).length === 0) return [];
  const adapter = db.migrationAdapter();
  const engine = await openSchemaEngine(adapter.factory);
  try {
    const result = await engine.applyMigrations({
      migrationsList: await readMigrationList(),
      filters: { externalTables: [], externalEnums: [] },
    });
    return result.appliedMigrationNames;
  } finally {
    engine.free();
    await adapter.release();
  }
}

/** Migrations in prisma/migrations that the database has not applied yet. */
export async function pendingMigrations(db: Database): Promise<string[]> {
  const applied = await db.prisma.$queryRaw<
    { migration_name: string }[]
  >`SELECT migration_name FROM _prisma_migrations WHERE finished_at IS NOT NULL AND rolled_back_at IS NULL`.catch((error: unknown) => {
    // 42P01: no _prisma_migrations table yet, so nothing is applied.
    if (JSON.stringify(error).includes('42P01') || String(error).includes('does not exist')) return [];
    throw error;
  });
  const done = new Set(applied.map((row) => row.migration_name));
  return (await readMigrationList()).migrationDirectories.map((dir) => dir.path).filter((name) => !done.has(name));
}
