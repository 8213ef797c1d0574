import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { PGlite } from '@electric-sql/pglite';
import { PrismaPg } from '@prisma/adapter-pg';
import type { SqlMigrationAwareDriverAdapterFactory } from '@prisma/driver-adapter-utils';
import { PrismaPGlite } from 'pglite-prisma-adapter';
import { PrismaClient } from './generated/client.js';

export type { PrismaClient } from './generated/client.js';
export { Prisma } from './generated/client.js';

export interface Database {
  readonly kind: 'postgresql' | 'pglite';
  readonly prisma: PrismaClient;
  /** The driver adapter factory, for the schema engine (migrations). */
  readonly adapter: SqlMigrationAwareDriverAdapterFactory;
  ping(): Promise<void>;
  close(): Promise<void>;
}

export interface DatabaseOptions {
  /** PostgreSQL connection string; unset means embedded PGlite. */
  url?: string;
  /** Where PGlite keeps its files; unset means in memory. */
  dataDir?: string;
  poolSize?: number;
}

/** The only place that constructs a PostgreSQL client (DESIGN.md section 4). */
export async function openDatabase(options: DatabaseOptions): Promise<Database> {
  if (options.url) return openPostgres(options.url, options.poolSize ?? 10);
  return openPglite(options.dataDir);
}

function openPostgres(url: string, max: number): Database {
  const adapter = new PrismaPg({ connectionString: url, max, connectionTimeoutMillis: 5_000, idleTimeoutMillis: 30_000 });
  const prisma = new PrismaClient({ adapter });
  return {
    kind: 'postgresql',
    prisma,
    adapter,
    ping: () => prisma.$queryRaw`SELECT 1`.then(() => undefined),
    close: () => prisma.$disconnect(),
  };
}

async function openPglite(dataDir?: string): Promise<Database> {
  let pgdata: string | undefined;
  if (dataDir) {
    pgdata = path.resolve(dataDir, 'pgdata');
    await mkdir(pgdata, { recursive: true });
  }
  const pglite = new PGlite(pgdata);
  await pglite.waitReady;
  const adapter = new PrismaPGlite(pglite);
  const prisma = new PrismaClient({ adapter });
  return {
    kind: 'pglite',
    prisma,
    adapter,
    ping: () => prisma.$queryRaw`SELECT 1`.then(() => undefined),
    close: async () => {
      await prisma.$disconnect();
      await pglite.close();
    },
  };
}
