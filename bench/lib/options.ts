import { availableParallelism } from 'node:os';
import { parseArgs } from 'node:util';

/** What a run measures and how long; every default fits the whole run in about five minutes on two cores. */
export interface BenchOptions {
  /** Seconds of measured load per scenario. */
  durationS: number;
  /** Seconds of unmeasured load before each scenario (JIT, caches, pools). */
  warmupS: number;
  /** Server processes sharing PostgreSQL and Redis; autocannon splits its connections between them. */
  workers: number;
  /** Tenants of the spread client_credentials scenario. */
  tenants: number;
  /** Users of the bench tenant before and after it grows. */
  usersSmall: number;
  usersLarge: number;
  /** Concurrent virtual browsers of the sign-in scenario. */
  signInConcurrency: number;
  /** Write a V8 CPU profile of each server process to bench/results/profiles/. */
  profile: boolean;
  /** Run only these scenario ids (and the ceilings they are compared with). */
  only?: Set<string>;
  /** PostgreSQL to create the throw-away database in, and Redis to use database 15 of. */
  adminDatabaseUrl: string;
  redisUrl: string;
  cores: number;
}

const USAGE = `usage: npm run bench -- [--duration S] [--warmup S] [--workers N] [--tenants N] [--users N] [--users-large N]
                        [--sign-in-concurrency N] [--profile] [--only id,id]
env: BENCH_DATABASE_URL (default postgresql://postgres@127.0.0.1:5432/postgres), BENCH_REDIS_URL (default redis://127.0.0.1:6379/15)`;

function positiveInt(name: string, value: string | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  const parsed = Number(value);
  if (!Number.isInteger(parsed) || parsed < 1) throw new Error(`--${name} must be a positive integer\n${USAGE}`);
  return parsed;
}

export function parseOptions(argv: string[], env: NodeJS.ProcessEnv = process.env): BenchOptions {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    options: {
      duration: { type: 'string' },
      warmup: { type: 'string' },
      workers: { type: 'string' },
      tenants: { type: 'string' },
      users: { type: 'string' },
      'users-large': { type: 'string' },
      'sign-in-concurrency': { type: 'string' },
      profile: { type: 'boolean' },
      only: { type: 'string' },
      help: { type: 'boolean' },
    },
  });
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    process.exit(0);
  }
  const cores = availableParallelism();
  return {
    durationS: positiveInt('duration', values.duration, 10),
    warmupS: values.warmup === '0' ? 0 : positiveInt('warmup', values.warmup, 2),
    workers: positiveInt('workers', values.workers, 1),
    tenants: positiveInt('tenants', values.tenants, 1000),
    usersSmall: positiveInt('users', values.users, 1000),
    usersLarge: positiveInt('users-large', values['users-large'], 100_000),
    signInConcurrency: positiveInt('sign-in-concurrency', values['sign-in-concurrency'], 4 * cores),
    profile: values.profile === true,
    only: values.only ? new Set(values.only.split(',').map((id) => id.trim())) : undefined,
    adminDatabaseUrl: env.BENCH_DATABASE_URL || 'postgresql://postgres@127.0.0.1:5432/postgres',
    redisUrl: env.BENCH_REDIS_URL || 'redis://127.0.0.1:6379/15',
    cores,
  };
}
