/**
 * Run as a child process by ceilings/argon2.ts, so that UV_THREADPOOL_SIZE is
 * set before libuv starts its thread pool (argon2 hashes on that pool).
 * Verifies with the server's own hasher (createPasswordHasher: Argon2id,
 * 19 MiB, t=2, p=1), `concurrency` verifications in flight at all times.
 */
import { createPasswordHasher } from '../../src/crypto/passwords.js';

async function main(): Promise<void> {
  const durationMs = Number(process.argv[2]) * 1000;
  const concurrency = Number(process.argv[3]);
  const hasher = createPasswordHasher();
  const password = 'correct horse battery staple';
  const hash = await hasher.hash(password);
  await hasher.verify(hash, password);
  const started = performance.now();
  const end = started + durationMs;
  let count = 0;
  const lane = async () => {
    while (performance.now() < end) {
      if (!(await hasher.verify(hash, password))) throw new Error('verification failed');
      count += 1;
    }
  };
  await Promise.all(Array.from({ length: concurrency }, lane));
  process.stdout.write(`${JSON.stringify({ count, ms: performance.now() - started })}\n`);
}

await main();
