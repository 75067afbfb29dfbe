#!/usr/bin/env node
// bench/run.mjs — `npm run bench`: the per-stage micro-benchmarks (stages.mjs: where the
// time goes) and then the end-to-end benchmark of the real daemon (e2e.mjs), each
// printing its table.
//
//   npm run bench [-- --n 200000 --runs 3]
//
// --n and --runs go to both. For the side-by-side run with syslog-ng, rsyslog and the
// Node baselines, see docs/performance.md (bench/cefd-sut.sh with
// ../shared/bench-peer).
import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const pass = process.argv.slice(2);
for (const [title, script, flags] of [
  ['Per stage, one thread', 'stages.mjs', ['--expose-gc']],
  ['End to end: cefd run over loopback TCP', 'e2e.mjs', []],
]) {
  console.log(`\n## ${title} (bench/${script})\n`);
  const r = spawnSync(process.execPath, [...flags, join(here, script), ...pass], { stdio: 'inherit' });
  if (r.status !== 0) {
    console.error(`bench/${script} failed (${r.status ?? r.signal})`);
    process.exit(1);
  }
}
