// Creates prisma/migrations/<timestamp>_<name>/migration.sql from the
// difference between the existing migrations and prisma/schema.prisma, using
// Prisma's WebAssembly schema engine with in-memory PGlite databases (the
// native engine behind `prisma migrate dev` cannot be downloaded here).
// Usage: npm run db:migration -- <name>
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { PGlite } from '@electric-sql/pglite';
import { PrismaPGlite } from 'pglite-prisma-adapter';
import { migrationsDir, openSchemaEngine, readMigrationList, readSchemaFile } from '../src/store/schema-engine.js';

const name = process.argv[2];
if (!name || !/^[a-z0-9_]+$/.test(name)) {
  process.stderr.write('usage: npm run db:migration -- <name in snake_case>\n');
  process.exit(2);
}

const engine = await openSchemaEngine(new PrismaPGlite(new PGlite()));
const result = await engine.diff({
  from: { tag: 'migrations', ...(await readMigrationList()) },
  to: { tag: 'schemaDatamodel', files: [await readSchemaFile()] },
  script: true,
  exitCode: true,
  filters: { externalTables: [], externalEnums: [] },
});
engine.free();
if (result.exitCode === 0) {
  process.stdout.write('schema.prisma and the migrations agree: nothing to create\n');
  process.exit(0);
}
const stamp = new Date().toISOString().replace(/[-:T]/g, '').slice(0, 14);
const dir = path.join(migrationsDir, `${stamp}_${name}`);
await mkdir(dir, { recursive: true });
await writeFile(path.join(dir, 'migration.sql'), result.stdout ?? '');
process.stdout.write(`created ${path.relative(process.cwd(), dir)}/migration.sql\n`);
process.exit(0);
