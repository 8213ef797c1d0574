/**
 * `npm run bench`: the numbers we publish (issue 8). Creates a throw-away
 * PostgreSQL database and uses a Redis database of its own, seeds it, starts the
 * server in production mode, measures the ceilings and every scenario in this
 * one run, prints one table with each goal's verdict, and writes
 * bench/results/<date>.json and .md. Methodology: bench/README.md.
 */
import { randomBytes } from 'node:crypto';
import { readdir } from 'node:fs/promises';
import { cpus, loadavg, totalmem } from 'node:os';
import { type Database, openDatabase } from '../src/store/index.js';
import { measureArgon2 } from './ceilings/argon2.js';
import { bareClientCredentialsRequests, startBareProvider } from './ceilings/bare-provider.js';
import { measureRs256 } from './ceilings/rs256.js';
import { type BenchContext, CONNECTIONS, type ScenarioResult } from './lib/context.js';
import { createBenchStores, resetRateLimits } from './lib/infra.js';
import { warmThenMeasure } from './lib/load.js';
import { type BenchOptions, parseOptions } from './lib/options.js';
import { insertUsers, seed } from './lib/seed.js';
import { PROFILE_DIR, rssMiB, startServer } from './lib/server.js';
import { busyWarning, type RunData, rowsOf, textTable, writeResults } from './report.js';
import { runClientCredentials } from './scenarios/client-credentials.js';
import { runIntrospection } from './scenarios/introspection.js';
import { runJwks } from './scenarios/jwks.js';
import { runManagementList } from './scenarios/management.js';
import { runRefresh } from './scenarios/refresh.js';
import { runSignIn } from './scenarios/sign-in.js';

const started = performance.now();

function log(message: string): void {
  const seconds = Math.round((performance.now() - started) / 1000);
  process.stderr.write(
    `[bench ${String(Math.floor(seconds / 60)).padStart(2, '0')}:${String(seconds % 60).padStart(2, '0')}] ${message}\n`,
  );
}

/** Scenario ids as --only takes them; a sign_in_large run needs sign_in's figure to compare with, and so on. */
const selected = (options: BenchOptions, id: string) => !options.only || options.only.has(id);

/** Ceilings measure the machine: taken with the server idle, right before the scenarios compared with them. */
const CEILING_SECONDS = 5;

const rssMB = async (ctx: BenchContext) => Promise.all(ctx.server.processes.map(async (p) => ((await rssMiB(p.pid)) * 1024 * 1024) / 1e6));

/** One of each kind of request, then a pause: what "idle after warm-up" means for the RSS goal. */
async function idleRss(ctx: BenchContext): Promise<number[]> {
  const quick = { ...ctx, options: { ...ctx.options, durationS: 1, warmupS: 0 } };
  await runClientCredentials(quick, 1);
  await runJwks(quick);
  await runSignIn(quick, ctx.options.usersSmall);
  await new Promise((resolve) => setTimeout(resolve, 5_000));
  return rssMB(ctx);
}

async function scenario(ctx: BenchContext, data: RunData, id: string, title: string, run: () => Promise<ScenarioResult>) {
  if (!selected(ctx.options, id)) return;
  log(title);
  await resetRateLimits(ctx.redisUrl);
  data.scenarios.push(await run());
}

async function bareProviderPeer(ctx: BenchContext): Promise<RunData['ceilings']['bareProvider']> {
  const bare = await startBareProvider(ctx.options.workers);
  try {
    return await warmThenMeasure(
      { urls: bare.urls, connections: CONNECTIONS, durationS: ctx.options.durationS, requests: bareClientCredentialsRequests() },
      ctx.options.warmupS,
      bare.pids,
    );
  } finally {
    await bare.stop();
  }
}

/** The tenant grows from the small to the large number of users between the two sign-in runs. */
async function growUsers(ctx: BenchContext, db: Database): Promise<void> {
  const [tenant] = ctx.seeded.tenants;
  if (!tenant) throw new Error('no bench tenant');
  log(`growing the tenant to ${ctx.options.usersLarge.toLocaleString('en')} users`);
  await insertUsers(db, tenant.id, ctx.seeded.passwordHash, ctx.options.usersSmall, ctx.options.usersLarge);
  await db.prisma.$executeRawUnsafe('ANALYZE "User"');
}

async function runAll(ctx: BenchContext, data: RunData, db: Database): Promise<void> {
  const { options } = ctx;
  const users = (n: number) => n.toLocaleString('en');
  log('warm-up, then idle RSS');
  data.rss.idleMB = await idleRss(ctx);
  if (selected(options, 'client_credentials')) {
    log(`ceiling: RS256 signatures on ${options.cores} threads, ${CEILING_SECONDS} s`);
    data.ceilings.rs256 = await measureRs256(CEILING_SECONDS, options.cores);
    log('peer: bare oidc-provider, client_credentials');
    data.ceilings.bareProvider = await bareProviderPeer(ctx);
  }
  await scenario(ctx, data, 'client_credentials', 'client_credentials, 1 tenant', () => runClientCredentials(ctx, 1));
  await scenario(ctx, data, 'client_credentials_spread', `client_credentials over ${options.tenants} tenants`, () =>
    runClientCredentials(ctx, options.tenants),
  );
  await scenario(ctx, data, 'introspection', 'introspection', () => runIntrospection(ctx));
  await scenario(ctx, data, 'refresh', 'refresh-token rotation', () => runRefresh(ctx));
  if (selected(options, 'sign_in')) {
    log(`ceiling: Argon2id verifications, ${options.cores} at once, ${CEILING_SECONDS} s`);
    data.ceilings.argon2 = await measureArgon2(CEILING_SECONDS, options.cores);
  }
  await scenario(ctx, data, 'sign_in', `password sign-in, ${users(options.usersSmall)} users`, () => runSignIn(ctx, options.usersSmall));
  if (selected(options, 'sign_in_large') && options.usersLarge > options.usersSmall) {
    await growUsers(ctx, db);
    await scenario(ctx, data, 'sign_in_large', `password sign-in, ${users(options.usersLarge)} users`, () =>
      runSignIn(ctx, options.usersLarge),
    );
  }
  await scenario(ctx, data, 'jwks', 'JWKS', () => runJwks(ctx));
  await scenario(ctx, data, 'management_list', 'management API list', () => runManagementList(ctx));
  data.rss.endMB = await rssMB(ctx);
}

function machine(): RunData['machine'] {
  return {
    cores: cpus().length,
    cpu: cpus()[0]?.model.trim() ?? 'unknown',
    memoryGiB: Math.round(totalmem() / 2 ** 30),
    node: process.versions.node,
    loadAverage: { start: loadavg(), end: [] },
  };
}

async function main(): Promise<void> {
  const options = parseOptions(process.argv.slice(2));
  const masterKey = randomBytes(32);
  const data: RunData = {
    startedAt: new Date().toISOString(),
    finishedAt: '',
    machine: machine(),
    options: {
      duration: `${options.durationS} s`,
      warmup: `${options.warmupS} s`,
      workers: options.workers,
      tenants: options.tenants,
      users: `${options.usersSmall}/${options.usersLarge}`,
      'sign-in concurrency': options.signInConcurrency,
    },
    ceilings: {},
    scenarios: [],
    rss: { idleMB: [], endMB: [] },
  };
  const cliEnv = {
    PATH: process.env.PATH,
    HOME: process.env.HOME,
    NODE_ENV: 'production',
    LOG_LEVEL: 'warn',
    MASTER_KEY: masterKey.toString('base64'),
  };
  log('creating and migrating a fresh database');
  const stores = await createBenchStores(options.adminDatabaseUrl, options.redisUrl, cliEnv);
  const db = await openDatabase({ url: stores.databaseUrl, poolSize: 4 });
  let server: Awaited<ReturnType<typeof startServer>> | undefined;
  const cleanUp = async () => {
    await server?.stop();
    await db.close();
    await stores.cleanUp();
  };
  process.once('SIGINT', () => {
    log('interrupted: stopping the server and dropping the database');
    cleanUp().finally(() => process.exit(130));
  });
  try {
    log(`seeding ${options.tenants} tenants, ${options.usersSmall} users, clients and signing keys`);
    const seeded = await seed(db, masterKey, { tenants: options.tenants, users: options.usersSmall });
    log(`starting ${options.workers} server process(es) in production mode`);
    server = await startServer({
      workers: options.workers,
      databaseUrl: stores.databaseUrl,
      redisUrl: stores.redisUrl,
      masterKey: cliEnv.MASTER_KEY,
      profile: options.profile,
    });
    const serverEnv = { ...cliEnv, DATABASE_URL: stores.databaseUrl, REDIS_URL: stores.redisUrl };
    await runAll({ options, server, seeded, serverEnv, redisUrl: stores.redisUrl }, data, db);
  } finally {
    log('stopping the server, dropping the database, emptying the Redis database');
    await cleanUp();
  }
  data.finishedAt = new Date().toISOString();
  data.machine.loadAverage.end = loadavg();
  const rows = rowsOf(data);
  process.stdout.write(`\n${textTable(rows)}\n${busyWarning(data.machine).join('\n')}\n\n`);
  if (options.only || options.profile) {
    // A partial or profiled run is for investigating: the published results come from whole runs only.
    log('partial or profiled run: results not written');
  } else {
    const written = await writeResults(data, rows);
    log(`wrote ${written.json} and ${written.markdown}`);
  }
  if (options.profile) {
    const profiles = (await readdir(PROFILE_DIR)).filter((f) => f.endsWith('.cpuprofile'));
    log(`CPU profiles: ${profiles.map((f) => `bench/results/${f}`).join(', ')}`);
  }
}

await main();
