import { defineConfig } from 'vitest/config';

/**
 * The browser end-to-end suite (test/e2e): Chromium through playwright-core.
 * Kept apart from vitest.config.ts so a browser is started once, by one
 * worker, after the other suites have finished with the CPU.
 */
export default defineConfig({
  test: {
    include: ['test/e2e/**/*.test.ts'],
    pool: 'forks',
    maxWorkers: 1,
    // Real browser steps on a shared 2-core machine: generous, never a measure of speed.
    testTimeout: 180_000,
    hookTimeout: 180_000,
  },
});
