import { defineConfig } from 'prisma/config';

// Used by `prisma generate` (and by `prisma migrate deploy` where the native
// engine is available). The server applies migrations itself: src/store/migrate.ts.
export default defineConfig({
  schema: 'prisma/schema.prisma',
  migrations: { path: 'prisma/migrations' },
});
