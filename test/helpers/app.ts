import { randomBytes } from 'node:crypto';
import type { Server } from 'node:http';
import type Koa from 'koa';
import { type AppDeps, closeAppDeps, createApp, createAppDeps } from '../../src/app.js';
import { type Clock, systemClock } from '../../src/clock.js';
import { type Config, loadConfig } from '../../src/config.js';
import { createLogger } from '../../src/observability/logger.js';
import { type Database, type KvStore, openDatabase, openKv } from '../../src/store/index.js';
import { ensureDefaultTenant } from '../../src/tenants/first-start.js';
import { testRedisUrl } from './env.js';
import { createTestStores, type TestStoreOptions, type TestStores } from './stores.js';

export interface TestApp {
  app: Koa;
  deps: AppDeps;
  stores: TestStores;
  /** Base URL once `listen()` was called. */
  url: string;
  /** Starts an HTTP server on a free loopback port (for openid-client and browsers). */
  listen(): Promise<string>;
  close(): Promise<void>;
}

export interface TestAppOptions extends TestStoreOptions {
  clock?: Clock;
  /** Extra environment for loadConfig (PUBLIC_URL is set to the listening address by listen()). */
  env?: Record<string, string>;
  /** Create tenant `default` with admin@example.com / ADMIN_PASSWORD. */
  seed?: boolean;
  /**
   * The seeded tenant's per-IP limits. Every request of a suite comes from
   * 127.0.0.1, so with the defaults (10 sign-ins and 10 token requests a
   * minute) suites about something else would trip them: they get 'relaxed'
   * limits unless they ask for the 'default' ones (the rate-limit suites do).
   * The lockout keeps its defaults either way.
   */
  limits?: 'relaxed' | 'default';
  /**
   * The host name listen() puts in PUBLIC_URL (the server still listens on
   * 127.0.0.1). The passkey browser suite uses `localhost`: browsers refuse an
   * IP address as a WebAuthn relying party ID.
   */
  publicHost?: string;
}

/** What 'relaxed' means: far beyond what any suite sends in a minute. */
export const RELAXED_RATE_LIMITS = Object.freeze({ signInPerMinute: 10_000, tokenPerMinute: 10_000, stuffingDistinctAccounts: 10_000 });

export const TEST_ADMIN_PASSWORD = 'test-admin-password';

/**
 * The one builder every integration test uses: real stores of the test's
 * choosing (see stores.ts), the real app, a fresh master key.
 */
export async function createTestApp(options: TestAppOptions = {}): Promise<TestApp> {
  const clock = options.clock ?? systemClock;
  const stores = await createTestStores({ ...options, clock });
  let config: Config = testConfig(options.env);
  const masterKey = randomBytes(32);
  const logger = createLogger(process.env.TEST_LOG_LEVEL ?? 'silent');
  let deps = await createAppDeps({ config, db: stores.db, kv: stores.kv, logger, clock, masterKey });
  let app = createApp(deps);
  let server: Server | undefined;
  if (options.seed) {
    await ensureDefaultTenant(deps);
    if (options.limits !== 'default') {
      await deps.db.prisma.tenant.update({ where: { slug: 'default' }, data: { settings: { rateLimits: RELAXED_RATE_LIMITS } } });
    }
  }

  const testApp: TestApp = {
    get app() {
      return app;
    },
    get deps() {
      return deps;
    },
    stores,
    url: '',
    async listen() {
      // The issuer must be the address clients reach, so the app is rebuilt with PUBLIC_URL set to it.
      server = await new Promise<Server>((resolve) => {
        const s = app.listen(0, '127.0.0.1', () => resolve(s));
      });
      const address = server.address();
      const url = `http://${options.publicHost ?? '127.0.0.1'}:${typeof address === 'object' && address ? address.port : 0}`;
      await closeAppDeps(deps);
      config = testConfig({ ...options.env, PUBLIC_URL: url });
      deps = await createAppDeps({ config, db: stores.db, kv: stores.kv, logger, clock, masterKey });
      app = createApp(deps);
      server.removeAllListeners('request');
      server.on('request', app.callback());
      testApp.url = url;
      return url;
    },
    async close() {
      if (server) {
        server.closeAllConnections();
        await new Promise<void>((resolve) => server?.close(() => resolve()));
      }
      await closeAppDeps(deps);
      await stores.close();
    },
  };
  return testApp;
}

function testConfig(env: Record<string, string> = {}): Config {
  return loadConfig({ NODE_ENV: 'test', ADMIN_PASSWORD: TEST_ADMIN_PASSWORD, LOG_LEVEL: 'silent', ...env });
}

export interface SecondNode {
  url: string;
  close(): Promise<void>;
}

/**
 * Another node of `t`'s deployment: its own app and connections, the same
 * PostgreSQL database and Redis prefix (on embedded stores, the same objects).
 */
export async function startSecondNode(t: TestApp, clock: Clock = systemClock): Promise<SecondNode> {
  const db: Database = t.stores.databaseUrl ? await openDatabase({ url: t.stores.databaseUrl, poolSize: 2 }) : t.stores.db;
  const kv: KvStore = t.stores.kvPrefix ? await openKv({ url: testRedisUrl, prefix: t.stores.kvPrefix, clock }) : t.stores.kv;
  const deps = await createAppDeps({ config: t.deps.config, db, kv, logger: createLogger('silent'), clock, masterKey: t.deps.masterKey });
  const server = await new Promise<Server>((resolve) => {
    const s = createApp(deps).listen(0, '127.0.0.1', () => resolve(s));
  });
  const address = server.address();
  return {
    url: `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`,
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await closeAppDeps(deps);
      if (kv !== t.stores.kv) await kv.close();
      if (db !== t.stores.db) await db.close();
    },
  };
}
