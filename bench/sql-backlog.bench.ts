/**
 * The sql source reading a backlog of 1,000,000 KSC event rows from a real PostgreSQL
 * (started here, as in the tests) into a file output with a disk buffer: rows/s and the
 * peak memory of cefd (VmHWM), for each `batch_rows` given. One short run:
 *
 *   npm run build && BATCH_ROWS=1000,10000 npx vitest run --config bench/vitest.sql.config.ts
 *
 * Prints one JSON line per run. docs/sql-source.md has the figures.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect, test } from 'vitest';
import { freePort, peakRss, runCefd } from '../test/helpers/child.js';
import { scrape, waitFor } from '../test/helpers/daemon.js';
import { startPostgres, startMariadb } from '../test/helpers/db-servers.js';
import { createKscSchema } from '../test/helpers/ksc-sql-schema.js';

const ROWS = Number(process.env['ROWS'] ?? 1_000_000);
const BATCHES = (process.env['BATCH_ROWS'] ?? '1000').split(',').map(Number);
const SERVER = process.env['SERVER'] ?? 'postgres';

test(`sql backlog of ${ROWS} rows`, async () => {
  const db = SERVER === 'mariadb' ? await startMariadb() : await startPostgres();
  const dir = mkdtempSync(join(tmpdir(), 'cefd-sqlbench-'));
  try {
    const schema = await createKscSchema(db);
    const t0 = Date.now();
    for (let from = 1; from <= ROWS; from += 250_000) await schema.insertEvents(from, Math.min(ROWS, from + 249_999));
    const insertMs = Date.now() - t0;
    for (const batch of BATCHES) {
      const sub = join(dir, `b${batch}`);
      const { mkdirSync } = await import('node:fs');
      mkdirSync(sub);
      const mport = await freePort();
      const yaml = [
        'state_dir: ./state',
        'listeners: []',
        `metrics: { enabled: true, host: 127.0.0.1, port: ${mport} }`,
        'outputs:',
        '  - { name: events, type: file, path: ./events.ndjson }',
        'dead_letter: { path: ./dead.ndjson }',
        'sql_sources:',
        `  - { name: ksc, url: "${db.url()}", batch_rows: ${batch}, poll_interval: 1s }`,
      ].join('\n');
      const d = runCefd(sub, yaml);
      let start = 0;
      await waitFor(async () => {
        try {
          const m = await scrape(mport);
          if (start === 0) start = Date.now();
          return (m.get('cefd_sql_events_total{source="ksc"}') ?? 0) >= ROWS;
        } catch {
          return false;
        }
      }, 1_800_000, 'the backlog');
      const ms = Date.now() - start;
      const rss = await peakRss(d.proc.pid!);
      const m = await scrape(mport);
      d.proc.kill('SIGTERM');
      await d.exit;
      const out = { server: SERVER, rows: ROWS, batch_rows: batch, seconds: ms / 1000, rows_per_s: Math.round(ROWS / (ms / 1000)), peak_rss_mib: Math.round(rss / 1048576), queries: m.get('cefd_sql_queries_total{source="ksc"}'), insert_s: insertMs / 1000 };
      process.stdout.write(JSON.stringify(out) + '\n');
      expect(m.get('cefd_sql_events_total{source="ksc"}')).toBe(ROWS);
    }
  } finally {
    await db.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}, 3_600_000);
