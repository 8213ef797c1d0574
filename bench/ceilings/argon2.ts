import { runTs } from '../lib/processes.js';
import { THREADPOOL_SIZE } from '../lib/server.js';
import type { Ceiling } from './rs256.js';

/**
 * Argon2id verifications per second at our parameters on all cores: one
 * verification in flight per core, on a thread pool of at least one thread per
 * core (the server runs with the same UV_THREADPOOL_SIZE).
 */
export async function measureArgon2(durationS: number, cores: number): Promise<Ceiling> {
  const output = await runTs('bench/ceilings/argon2-child.ts', {
    args: [String(durationS), String(cores)],
    env: { ...process.env, UV_THREADPOOL_SIZE: THREADPOOL_SIZE },
  });
  const { count, ms } = JSON.parse(output) as { count: number; ms: number };
  return { perSecond: count / (ms / 1000), threads: cores, durationS };
}
