import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { createServer } from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository root: every child runs from here, as `npm start` would. */
export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

export interface NodeChild {
  child: ChildProcess;
  /** Everything the child wrote to stderr so far (for error messages). */
  stderr(): string;
  /** SIGTERM, then SIGKILL after `graceMs`; resolves with the exit code. */
  stop(graceMs?: number): Promise<number | null>;
}

/** `node [nodeArgs] --import tsx <script> [args]` from the repository root, stdout and stderr captured. */
export function spawnTs(script: string, options: { args?: string[]; env?: NodeJS.ProcessEnv; nodeArgs?: string[] } = {}): NodeChild {
  return spawnNode(script, { ...options, nodeArgs: [...(options.nodeArgs ?? []), '--import', 'tsx'] });
}

/** `node [nodeArgs] <script> [args]` from the repository root, stdout and stderr captured. */
export function spawnNode(script: string, options: { args?: string[]; env?: NodeJS.ProcessEnv; nodeArgs?: string[] } = {}): NodeChild {
  const child = spawn(process.execPath, [...(options.nodeArgs ?? []), script, ...(options.args ?? [])], {
    cwd: ROOT,
    env: options.env ?? process.env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => {
    stderr = (stderr + chunk.toString()).slice(-20_000);
  });
  const exited = once(child, 'exit').then(([code]) => code as number | null);
  return {
    child,
    stderr: () => stderr,
    async stop(graceMs = 15_000) {
      if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
      const code = await exited;
      clearTimeout(timer);
      return code;
    },
  };
}

/** Runs a TypeScript script to completion and returns its stdout; a non-zero exit is an error carrying stderr. */
export async function runTs(
  script: string,
  options: { args?: string[]; env?: NodeJS.ProcessEnv; timeoutMs?: number } = {},
): Promise<string> {
  const running = spawnTs(script, options);
  let stdout = '';
  running.child.stdout?.on('data', (chunk: Buffer) => {
    stdout += chunk.toString();
  });
  const timer = setTimeout(() => running.child.kill('SIGKILL'), options.timeoutMs ?? 120_000);
  const [code] = (await once(running.child, 'exit')) as [number | null];
  clearTimeout(timer);
  if (code !== 0) throw new Error(`${script} ${(options.args ?? []).join(' ')} exited with ${code}: ${running.stderr().trim()}`);
  return stdout;
}

/** A port nothing listens on right now (the kernel's choice), on the loopback interface. */
export async function freePort(): Promise<number> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  server.close();
  await once(server, 'close');
  return port;
}

/** Polls `url` until it answers 200, or fails after `timeoutMs` (or when `alive` says the process died). */
export async function waitForOk(
  url: string,
  { timeoutMs = 60_000, alive = () => true }: { timeoutMs?: number; alive?: () => boolean } = {},
) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (!alive()) throw new Error(`the process serving ${url} exited`);
    try {
      const response = await fetch(url, { signal: AbortSignal.timeout(2_000) });
      await response.body?.cancel();
      if (response.ok) return;
    } catch {
      // not listening yet
    }
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  throw new Error(`${url} did not answer 200 within ${timeoutMs} ms`);
}
