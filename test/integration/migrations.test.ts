import { PGlite } from '@electric-sql/pglite';
import { PrismaPGlite } from 'pglite-prisma-adapter';
import { describe, expect, it } from 'vitest';
import { openSchemaEngine, readMigrationList, readSchemaFile } from '../../src/store/schema-engine.js';

describe('migrations', () => {
  it('replay to exactly the schema in schema.prisma (no drift)', async () => {
    // The engine replays the migrations on a shadow database, here a second in-memory PGlite.
    const engine = await openSchemaEngine(new PrismaPGlite(new PGlite()));
    try {
      const result = await engine.diff({
        from: { tag: 'migrations', ...(await readMigrationList()) },
        to: { tag: 'schemaDatamodel', files: [await readSchemaFile()] },
        script: true,
        exitCode: true,
        filters: { externalTables: [], externalEnums: [] },
      });
      expect(result.stdout?.trim()).toMatch(/^-- This is an empty migration\.?$|^$/);
      expect(result.exitCode).toBe(0);
    } finally {
      engine.free();
    }
    // Replaying every migration on a shadow PGlite takes seconds, many more on a busy 2-core machine.
  }, 120_000);

  it('are in Prisma’s folder format, ordered by timestamp', async () => {
    const list = await readMigrationList();
    expect(list.migrationDirectories.length).toBeGreaterThan(0);
    for (const dir of list.migrationDirectories) {
      expect(dir.path).toMatch(/^\d{14}_[a-z0-9_]+$/);
      expect(dir.migrationFile.path).toBe('migration.sql');
    }
  });
});
