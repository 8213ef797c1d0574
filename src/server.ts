import type { Server } from 'node:http';
import path from 'node:path';
import { type AppDeps, closeAppDeps, createApp, createAppDeps } from './app.js';
import { type Clock, systemClock } from './clock.js';
import type { Config } from './config.js';
import { resolveMasterKey } from './crypto/master-key.js';
import type { Logger } from './observability/logger.js';
import { lockDataDir } from './store/data-dir-lock.js';
import { type Database, type KvStore, migrate, openDatabase, openKv, pendingMigrations } from './store/index.js';
import { ensureDefaultTenant, type FirstStart } from './tenants/first-start.js';

export interface RunningServer {
  deps: AppDeps;
  server: Server;
  url: string;
  /** What the first start created (tenant `default` and its owner), before the port opened. */
  firstStart: FirstStart;
  /** Stops accepting, lets in-flight requests finish (up to the grace period), closes the stores. */
  stop(): Promise<void>;
}

/** Opens the stores the configuration names, migrating the embedded database. */
export async function openStores(
  config: Config,
  logger: Logger,
  clock: Clock,
): Promise<{ db: Database; kv: KvStore; release(): Promise<void> }> {
  const releaseLock = config.databaseUrl ? async () => {} : await lockDataDir(config.dataDir);
  try {
    const db = await openDatabase({ url: config.databaseUrl, dataDir: config.dataDir });
    if (db.kind === 'pglite') {
      const applied = await migrate(db);
      if (applied.length) logger.info({ applied }, 'applied migrations to the embedded database');
    } else {
      const pending = await pendingMigrations(db);
      if (pending.length) {
        await db.close();
        throw new Error(`the database has ${pending.length} pending migration(s): run \`idp migrate\` first`);
      }
    }
    const kv = await openKv({ url: config.redisUrl, clock });
    logger.info(
      {
        database: db.kind === 'pglite' ? `embedded PGlite in ${path.resolve(config.dataDir)}` : 'PostgreSQL',
        kv: kv.kind === 'memory' ? 'in-process store (single node only)' : 'Redis',
      },
      db.kind === 'pglite' || kv.kind === 'memory'
        ? 'running on embedded backends: fine for trying it out and single-node use, not for production'
        : 'running on PostgreSQL and Redis',
    );
    return { db, kv, release: releaseLock };
  } catch (error) {
    await releaseLock();
    throw error;
  }
}

export async function startServer(config: Config, logger: Logger, clock: Clock = systemClock): Promise<RunningServer> {
  const masterKey = await resolveMasterKey(config, path.resolve('keys'), logger);
  const stores = await openStores(config, logger, clock);
  const deps = await createAppDeps({ config, db: stores.db, kv: stores.kv, logger, clock, masterKey });
  if (!config.smtpUrl) {
    // Said once at start-up: in production the outbox never logs a message, so mail silently goes nowhere otherwise.
    if (config.env === 'production')
      logger.warn('SMTP_URL is not set: password reset, verification, invitation and new-device mail is not delivered');
    else logger.info('SMTP_URL is not set: mail goes to the dev outbox, this log, links included');
  }
  // Before listening, so nothing answers ready while the default tenant and its admin do not exist yet.
  const firstStart = await ensureDefaultTenant(deps);
  const app = createApp(deps);
  const server = app.listen(config.port);
  server.requestTimeout = 30_000;
  server.headersTimeout = 15_000;
  server.keepAliveTimeout = 5_000;
  await new Promise<void>((resolve, reject) => {
    server.once('listening', resolve);
    server.once('error', reject);
  });
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : config.port;

  let stopping: Promise<void> | undefined;
  const stop = () => {
    stopping ??= (async () => {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeIdleConnections();
      const grace = setTimeout(() => server.closeAllConnections(), config.shutdownGraceMs);
      await closed;
      clearTimeout(grace);
      await closeAppDeps(deps);
      await stores.kv.close();
      await stores.db.close();
      await stores.release();
    })();
    return stopping;
  };
  return { deps, server, url: `http://127.0.0.1:${port}`, firstStart, stop };
}
