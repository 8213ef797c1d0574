import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository root: spawned entry points resolve `tsx` and `keys/` from here. */
export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

export interface ProcessResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/**
 * The environment a spawned `idp` process sees: nothing inherited but PATH and
 * HOME, so the suite's own DATABASE_URL/REDIS_URL/NODE_ENV never leak into a
 * process that is meant to run on the embedded backends. A fixed MASTER_KEY
 * keeps the processes from writing a key file into the repository's keys/.
 */
export function childEnv(env: Record<string, string | undefined> = {}): NodeJS.ProcessEnv {
  const base: NodeJS.ProcessEnv = {
    PATH: process.env.PATH,
    HOME: process.env.HOME,
    LOG_LEVEL: 'warn',
    MASTER_KEY: TEST_MASTER_KEY,
  };
  for (const [key, value] of Object.entries(env)) {
    if (value === undefined) delete base[key];
    else base[key] = value;
  }
  return base;
}

export const TEST_MASTER_KEY = randomBytes(32).toString('base64');

const children = new Set<ChildProcess>();

function track(child: ChildProcess): ChildProcess {
  children.add(child);
  child.once('exit', () => children.delete(child));
  return child;
}

/** Kills whatever this suite spawned and is still running; call it from afterAll. */
export async function killSpawned(): Promise<void> {
  await Promise.all(
    [...children].map(
      (child) =>
        new Promise<void>((resolve) => {
          if (child.exitCode !== null || child.signalCode !== null) return resolve();
          child.once('exit', () => resolve());
          child.kill('SIGKILL');
        }),
    ),
  );
}

/** Runs `node --import tsx <script> …args` to completion. */
export function runNode(
  script: string,
  args: string[],
  options: { env?: Record<string, string | undefined>; timeoutMs?: number } = {},
): Promise<ProcessResult> {
  return new Promise((resolve, reject) => {
    const child = track(
      spawn(process.execPath, ['--import', 'tsx', script, ...args], {
        cwd: repoRoot,
        env: childEnv(options.env),
        stdio: ['ignore', 'pipe', 'pipe'],
      }),
    );
    let stdout = '';
    let stderr = '';
    child.stdout?.on('data', (chunk: Buffer) => {
      stdout += chunk.toString();
    });
    child.stderr?.on('data', (chunk: Buffer) => {
      stderr += chunk.toString();
    });
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${script} ${args.join(' ')} did not finish within ${options.timeoutMs ?? 150_000} ms\n${stdout}\n${stderr}`));
    }, options.timeoutMs ?? 150_000);
    child.once('error', reject);
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

/** The `idp` command, exactly as `npx idp` runs it (minus the bin shim). */
export function runCli(args: string[], env: Record<string, string | undefined> = {}): Promise<ProcessResult> {
  return runNode('src/cli/main.ts', args, { env });
}

/** A port nothing listens on right now (the kernel picks it). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

const tempDirs = new Set<string>();

export async function tempDir(prefix: string): Promise<{ path: string; remove(): Promise<void> }> {
  const dir = await mkdtemp(path.join(tmpdir(), `idp-${prefix}-`));
  tempDirs.add(dir);
  return {
    path: dir,
    remove: async () => {
      await rm(dir, { recursive: true, force: true });
      tempDirs.delete(dir);
    },
  };
}

/**
 * Removes every directory tempDir made in this suite that is still there: a
 * beforeAll that times out never returns its teardown. Call it from the
 * suite's last afterAll, after killSpawned.
 */
export async function removeTempDirs(): Promise<void> {
  await Promise.all([...tempDirs].map((dir) => rm(dir, { recursive: true, force: true })));
  tempDirs.clear();
}

export interface ServerProcess {
  url: string;
  port: number;
  pid: number;
  stdout(): string;
  stderr(): string;
  /** Sends `signal` and resolves with the exit code once the process is gone. */
  stop(signal?: NodeJS.Signals): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/**
 * Starts `src/main.ts` on a free port with PUBLIC_URL pointing at it, and
 * resolves once it has logged "listening" (main.ts does so after the
 * first-start banner, so stdout is complete for assertions) and /healthz
 * answers. Logs at info unless LOG_LEVEL says otherwise: the "listening"
 * line is info. Rejects (with the output) if the process exits first.
 */
export async function startServerProcess(env: Record<string, string | undefined> = {}, timeoutMs = 150_000): Promise<ServerProcess> {
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const child = track(
    spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
      cwd: repoRoot,
      env: childEnv({ PORT: String(port), PUBLIC_URL: url, LOG_LEVEL: 'info', ...env }),
      stdio: ['ignore', 'pipe', 'pipe'],
    }),
  );
  let stdout = '';
  let stderr = '';
  child.stdout?.on('data', (chunk: Buffer) => {
    stdout += chunk.toString();
  });
  child.stderr?.on('data', (chunk: Buffer) => {
    stderr += chunk.toString();
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    // 'close', not 'exit': by then stdout and stderr are fully read.
    child.once('close', (code, signal) => resolve({ code, signal }));
  });

  const deadline = Date.now() + timeoutMs;
  let ready = false;
  while (!ready) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(`server exited with ${child.exitCode ?? child.signalCode} before it was ready\n${stdout}\n${stderr}`);
    }
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`server not ready within ${timeoutMs} ms\n${stdout}\n${stderr}`);
    }
    ready =
      stdout.includes('"msg":"listening') &&
      (await fetch(`${url}/healthz`).then(
        (response) => response.ok,
        () => false,
      ));
    // Polling a process that is starting, not waiting for time to pass in the code under test.
    if (!ready) await new Promise((resolve) => setTimeout(resolve, 100));
  }

  return {
    url,
    port,
    pid: child.pid ?? 0,
    stdout: () => stdout,
    stderr: () => stderr,
    async stop(signal = 'SIGTERM') {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      return exited;
    },
  };
}
