import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['src/**/*.test.ts', 'test/**/*.test.ts'],
    exclude: ['test/e2e/**', 'node_modules/**'],
    pool: 'forks',
    // Generous: suites build providers, hash with Argon2 and spawn processes on a 2-core machine
    // that may be busy; no test asserts on time, so a limit only guards against hangs.
    testTimeout: 60_000,
    hookTimeout: 180_000,
    // Two cores: more workers only contend for CPU with Argon2 and PGlite.
    maxWorkers: 2,
  },
});
