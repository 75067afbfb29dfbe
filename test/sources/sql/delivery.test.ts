/**
 * The sql source's cursor against full output buffers, with a real PostgreSQL (Debian's
 * package, test/helpers/db-servers.ts) and `cefd run` as a child process whose http output
 * points at a port where nothing listens at first, later at a receiver in this test:
 * - `when_full: drop_newest` with a disk buffer smaller than the backlog: no row dropped,
 *   the cursor stops where the buffer stopped taking rows, and every row arrives once the
 *   receiver is up;
 * - `when_full: block`: the cursor is written only once the rows are in the buffer's
 *   files (not in its memory overflow), so kill -9 loses nothing.
 */
import { mkdirSync, readFileSync } from 'node:fs';
import http from 'node:http';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { freePort, runCefd } from '../../helpers/child.js';
import { scrape, waitFor } from '../../helpers/daemon.js';
import { startPostgres } from '../../helpers/db-servers.js';
import { sqlBed, sqlDaemonYaml } from '../../helpers/sql-bed.js';

/** An HTTP receiver of NDJSON batches: the event ids it got. */
async function receiver(port: number): Promise<{ ids: Set<string>; close: () => Promise<void> }> {
  const ids = new Set<string>();
  const srv = http.createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (c: string) => (body += c));
    req.on('end', () => {
      for (const line of body.split('\n')) if (line !== '') ids.add((JSON.parse(line) as { id: string }).id);
      res.writeHead(200).end();
    });
  });
  await new Promise<void>((r) => srv.listen(port, '127.0.0.1', r));
  return {
    ids,
    close: () =>
      new Promise<void>((r) => {
        srv.closeAllConnections();
        srv.close(() => r());
      }),
  };
}

function stateCursor(dir: string): number {
  try {
    return Number((JSON.parse(readFileSync(join(dir, 'state', 'sql', 'ksc.json'), 'utf8')) as { cursor: number }).cursor);
  } catch {
    return 0;
  }
}

describe('sql source and full output buffers (PostgreSQL)', () => {
  const bed = sqlBed(startPostgres, 'cefd-sqldeliv-', (schema) => schema.insertEvents(1, 3000));
  const { children } = bed;
  const receivers: { close: () => Promise<void> }[] = [];
  afterAll(async () => {
    for (const r of receivers) await r.close();
  });

  const yaml = (httpPort: number, metricsPort: number, whenFull: string) =>
    sqlDaemonYaml(
      metricsPort,
      `  - { name: siem, type: http, url: "http://127.0.0.1:${httpPort}/", timeout: 5s, batch_max_events: 500, when_full: ${whenFull}, buffer: { type: disk, max_size: 1MiB, fsync: never } }`,
      ['  - name: ksc', `    url: "${bed.db.url()}"`, '    poll_interval: 200ms', '    max_backoff: 2s', '    batch_rows: 300'].join('\n'),
    );

  /** A subfolder for one run, the http output's port (nothing listens yet) and a metrics port. */
  async function place(name: string): Promise<{ sub: string; hport: number; mport: number }> {
    const sub = join(bed.dir, name);
    mkdirSync(sub);
    return { sub, hport: await freePort(), mport: await freePort() };
  }

  test('drop_newest: no row is dropped while the buffer is full; all arrive later', async () => {
    const { sub, hport, mport } = await place('drop');
    const d = runCefd(sub, yaml(hport, mport, 'drop_newest'));
    children.push(d);
    // The buffer fills (the output cannot deliver) and the source stops reading.
    await waitFor(async () => ((await scrape(mport).catch(() => new Map<string, number>())).get('cefd_sql_queries_total{source="ksc"}') ?? 0) >= 10, 30_000, 'queries');
    const m = await scrape(mport);
    expect(m.get('cefd_output_dropped_events_total{output="siem",reason="queue_full"}') ?? 0).toBe(0);
    const held = stateCursor(sub);
    expect(held).toBeLessThan(3000);
    const r = await receiver(hport);
    receivers.push(r);
    await waitFor(() => r.ids.size >= 3000, 60_000, '3000 ids').catch((e) => {
      throw new Error(`${(e as Error).message}: ${r.ids.size}\n${d.text().slice(-3000)}`);
    });
    expect(r.ids.size).toBe(3000);
    await waitFor(() => stateCursor(sub) === 3000, 30_000, 'cursor 3000');
    const m2 = await scrape(mport);
    expect(m2.get('cefd_output_dropped_events_total{output="siem",reason="queue_full"}') ?? 0).toBe(0);
    d.proc.kill('SIGTERM');
    expect(await d.exit).toBe(0);
  }, 120_000);

  test('block: kill -9 while the buffer is full loses nothing', async () => {
    const { sub, hport, mport } = await place('block');
    const d1 = runCefd(sub, yaml(hport, mport, 'block'));
    children.push(d1);
    // Full: the source reads no more (the cursor stays put over a few polls).
    let last = -1;
    let same = 0;
    await waitFor(
      () => {
        const c = stateCursor(sub);
        same = c === last && c > 0 ? same + 1 : 0;
        last = c;
        return same >= 5;
      },
      30_000,
      'the cursor to stop',
    );
    d1.proc.kill('SIGKILL');
    await d1.exit;
    const r = await receiver(hport);
    receivers.push(r);
    const d2 = runCefd(sub, yaml(hport, await freePort(), 'block'));
    children.push(d2);
    await waitFor(() => r.ids.size >= 3000, 60_000, '3000 ids').catch((e) => {
      throw new Error(`${(e as Error).message}: ${r.ids.size} (cursor at kill: ${last})\n${d2.text().slice(-3000)}`);
    });
    expect(r.ids.size).toBe(3000);
    d2.proc.kill('SIGTERM');
    expect(await d2.exit).toBe(0);
  }, 120_000);
});
