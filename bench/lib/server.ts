import { readFile } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import path from 'node:path';
import { freePort, type NodeChild, ROOT, spawnNode, waitForOk } from './processes.js';

export interface ServerProcess {
  url: string;
  pid: number;
  process: NodeChild;
}

export interface BenchServer {
  /** The address relying parties and forms use (PUBLIC_URL): the first process. */
  publicUrl: string;
  processes: ServerProcess[];
  /** One URL per process, for autocannon to split its connections between. */
  urls(): string[];
  pids(): number[];
  stop(): Promise<void>;
}

/** Where `--profile` has V8 write the server's CPU profiles (`*.cpuprofile` there is gitignored). */
export const PROFILE_DIR = path.join(ROOT, 'bench', 'results');

/**
 * argon2 (and node:crypto's async calls) run on libuv's thread pool, 4 threads
 * by default: fewer than the cores of a larger machine would leave Argon2
 * capacity unused, so the pool gets at least one thread per core.
 */
export const THREADPOOL_SIZE = String(Math.max(4, availableParallelism()));

/**
 * What the Dockerfile sets for the runtime besides NODE_ENV (see its comments):
 * glibc returns Argon2id's 19 MiB blocks to the kernel after each verification
 * instead of keeping them in per-thread arenas.
 */
export const DEPLOYMENT_ENV = { MALLOC_MMAP_THRESHOLD_: '1048576' };

/** The environment of a production server on the bench's stores. */
export function serverEnv(base: { databaseUrl: string; redisUrl: string; masterKey: string; publicUrl: string; port: number }) {
  return {
    PATH: process.env.PATH,
    HOME: process.env.HOME,
    NODE_ENV: 'production',
    LOG_LEVEL: 'warn',
    PORT: String(base.port),
    PUBLIC_URL: base.publicUrl,
    DATABASE_URL: base.databaseUrl,
    REDIS_URL: base.redisUrl,
    MASTER_KEY: base.masterKey,
    UV_THREADPOOL_SIZE: THREADPOOL_SIZE,
    ...DEPLOYMENT_ENV,
  };
}

/** `npm run build`: the compiled server in dist/, from the sources as they are now. */
async function buildServer(): Promise<void> {
  const build = spawnNode('scripts/build.mjs');
  const code = await new Promise<number | null>((resolve) => build.child.once('exit', resolve));
  if (code !== 0) throw new Error(`npm run build exited with ${code}\n${build.stderr()}`);
}

/**
 * Builds, then runs `node dist/main.js` as the Dockerfile does, `workers` times
 * on consecutive free ports, one after the other (the first creates tenant
 * `default`). All share PUBLIC_URL, as nodes behind one proxy would.
 */
export async function startServer(opts: {
  workers: number;
  databaseUrl: string;
  redisUrl: string;
  masterKey: string;
  profile: boolean;
  /** Added to each process's environment (experiments: allocator settings, say). */
  extraEnv?: NodeJS.ProcessEnv;
}): Promise<BenchServer> {
  const ports: number[] = [];
  for (let i = 0; i < opts.workers; i++) ports.push(await freePort());
  const publicUrl = `http://127.0.0.1:${ports[0]}`;
  const processes: ServerProcess[] = [];
  const stop = async () => {
    await Promise.all(processes.map((p) => p.process.stop()));
  };
  await buildServer();
  try {
    for (const port of ports) {
      const nodeArgs = opts.profile ? ['--cpu-prof', '--cpu-prof-dir', PROFILE_DIR] : [];
      const running = spawnNode('dist/main.js', { env: { ...serverEnv({ ...opts, publicUrl, port }), ...opts.extraEnv }, nodeArgs });
      const url = `http://127.0.0.1:${port}`;
      processes.push({ url, pid: running.child.pid ?? 0, process: running });
      await waitForOk(`${url}/readyz`, { alive: () => running.child.exitCode === null }).catch((error: Error) => {
        throw new Error(`${error.message}\n${running.stderr()}`);
      });
    }
  } catch (error) {
    await stop();
    throw error;
  }
  return { publicUrl, processes, urls: () => processes.map((p) => p.url), pids: () => processes.map((p) => p.pid), stop };
}

/** Resident set size of a process in MiB, from /proc (Linux). */
export async function rssMiB(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const kib = /^VmRSS:\s+(\d+)\s+kB$/m.exec(status)?.[1];
  if (!kib) throw new Error(`no VmRSS for process ${pid}`);
  return Number(kib) / 1024;
}
