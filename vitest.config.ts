import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // The slow fault-injection tests run with `npm run test:faults` (vitest.faults.config.ts).
    exclude: ['test/faults/**', 'node_modules/**'],
    // A backstop, not a measure: each test bounds what it waits for itself (waitFor deadlines).
    // On a loaded 2-core CI machine a test that takes 5 s alone takes several times that, and
    // tests that wait up to 60-120 s for a restart or a drain must not be cut off at 30 s.
    testTimeout: 120_000,
    hookTimeout: 120_000,
    pool: 'forks',
    // Removes every folder test/helpers/temp.ts made, after each test file.
    setupFiles: ['test/helpers/setup.ts'],
  },
});
