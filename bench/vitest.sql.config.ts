import { defineConfig } from 'vitest/config';

// The sql source's backlog benchmark (bench/sql-backlog.bench.ts): not part of npm test.
export default defineConfig({
  test: { include: ['bench/sql-backlog.bench.ts'], testTimeout: 3_600_000, hookTimeout: 600_000, pool: 'forks' },
});
