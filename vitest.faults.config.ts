import { defineConfig } from 'vitest/config';

// Fault-injection tests: kill -9, full disks, floods, a million events against a stalled
// output. Slow; run one file at a time so their measurements do not disturb each other.
export default defineConfig({
  test: {
    include: ['test/faults/**/*.test.ts'],
    testTimeout: 600_000,
    // Hooks start servers (nats-server, rsyslogd): on a loaded CI machine that can take long.
    hookTimeout: 120_000,
    pool: 'forks',
    // Removes every folder test/helpers/temp.ts made, after each test file.
    setupFiles: ['test/helpers/setup.ts'],
    fileParallelism: false,
  },
});
