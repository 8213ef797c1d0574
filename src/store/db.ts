import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { PrismaPg } from '@prisma/adapter-pg';
import type { SqlDriverAdapterFactory, SqlMigrationAwareDriverAdapterFactory } from '@prisma/driver-adapter-utils';
import { PrismaClient } from './generated/client.js';

export type { PrismaClient } from './generated/client.js';
export { Prisma } from './generated/client.js';

export interface Database {
  readonly kind: 'postgresql' | 'pglite';
  readonly prisma: PrismaClient;
  /** A driver adapter factory for the schema engine (migrations); release it when done. */
  migrationAdapter(): MigrationAdapter;
  ping(): Promise<void>;
  close(): Promise<void>;
  /** SQL statements sent so far (COMMIT included, BEGIN not: Prisma reports it that way): the `idp_db_statements_total` metric, and the tests' measure of a request's cost. */
  statements(): number;
}

export interface MigrationAdapter {
  factory: SqlMigrationAwareDriverAdapterFactory;
  /** Closes the connections the schema engine opened (it does not close them itself). */
  release(): Promise<void>;
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
  const { prisma, statements } = countingClient(adapter);
  return {
    kind: 'postgresql',
    prisma,
    statements,
    migrationAdapter: () => wholeScriptMigrations(new PrismaPg({ connectionString: url, max: 2 })),
    ping: () => prisma.$queryRaw`SELECT 1`.then(() => undefined),
    close: () => prisma.$disconnect(),
  };
}

function countingClient(adapter: SqlDriverAdapterFactory): { prisma: PrismaClient; statements(): number } {
  const client = new PrismaClient({ adapter, log: [{ emit: 'event', level: 'query' }] as const });
  let count = 0;
  client.$on('query', () => {
    count += 1;
  });
  // The log option only types $on; the client is used as the plain one everywhere else.
  return { prisma: client as unknown as PrismaClient, statements: () => count };
}

type ScriptRunner = { executeScript(script: string): Promise<void>; underlyingDriver(): unknown; dispose(): Promise<void> };

/**
 * @prisma/adapter-pg runs a migration script by splitting it on every `;`,
 * which breaks dollar-quoted function bodies (our audit trigger). PostgreSQL's
 * simple query protocol runs a whole multi-statement script as one implicit
 * transaction, exactly as `prisma migrate deploy` would.
 */
function wholeScriptMigrations(factory: PrismaPg): MigrationAdapter {
  const opened: ScriptRunner[] = [];
  const patch = <T extends ScriptRunner>(adapter: T): T => {
    adapter.executeScript = async (script) => {
      await (adapter.underlyingDriver() as { query(sql: string): Promise<unknown> }).query(script);
    };
    opened.push(adapter);
    return adapter;
  };
  return {
    factory: {
      provider: factory.provider,
      adapterName: factory.adapterName,
      connect: async () => patch(await factory.connect()),
      connectToShadowDb: async () => patch(await factory.connectToShadowDb()),
    },
    release: async () => {
      await Promise.all(opened.splice(0).map((adapter) => adapter.dispose()));
    },
  };
}

async function openPglite(dataDir?: string): Promise<Database> {
  // Loaded here, not at the top: PGlite's modules cost a server on PostgreSQL 15–25 MB of memory it never uses.
  const [{ PGlite }, { PrismaPGlite }] = await Promise.all([import('@electric-sql/pglite'), import('pglite-prisma-adapter')]);
  let pgdata: string | undefined;
  if (dataDir) {
    pgdata = path.resolve(dataDir, 'pgdata');
    await mkdir(pgdata, { recursive: true });
  }
  const pglite = new PGlite(pgdata);
  await pglite.waitReady;
  const adapter = new PrismaPGlite(pglite);
  const { prisma, statements } = countingClient(adapter);
  return {
    kind: 'pglite',
    prisma,
    statements,
    // Same PGlite instance: nothing of its own to release.
    migrationAdapter: () => ({ factory: adapter, release: async () => {} }),
    ping: () => prisma.$queryRaw`SELECT 1`.then(() => undefined),
    close: async () => {
      await prisma.$disconnect();
      await pglite.close();
    },
  };
}
