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
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { freePort, runCefd, type ChildDaemon } from '../../helpers/child.js';
import { scrape, waitFor } from '../../helpers/daemon.js';
import { startPostgres, type DbServer } from '../../helpers/db-servers.js';
import { createKscSchema, type KscSchema } from '../../helpers/ksc-sql-schema.js';

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
  let db: DbServer;
  let schema: KscSchema;
  let dir: string;
  const children: ChildDaemon[] = [];
  const receivers: { close: () => Promise<void> }[] = [];

  beforeAll(async () => {
    db = await startPostgres();
    schema = await createKscSchema(db);
    await schema.insertEvents(1, 3000);
    dir = mkdtempSync(join(tmpdir(), 'cefd-sqldeliv-'));
  }, 120_000);

  afterAll(async () => {
    for (const c of children) if (c.proc.exitCode === null && c.proc.signalCode === null) c.proc.kill('SIGKILL');
    await Promise.all(children.map((c) => c.exit));
    for (const r of receivers) await r.close();
    await db?.stop();
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
  }, 60_000);

  function yaml(httpPort: number, metricsPort: number, whenFull: string): string {
    return [
      'state_dir: ./state',
      'decode_workers: 0',
      'listeners: []',
      'logging: { level: info, repeat_interval: 0s }',
      `metrics: { enabled: true, host: 127.0.0.1, port: ${metricsPort} }`,
      'outputs:',
      `  - { name: siem, type: http, url: "http://127.0.0.1:${httpPort}/", timeout: 5s, batch_max_events: 500, when_full: ${whenFull}, buffer: { type: disk, max_size: 1MiB, fsync: never } }`,
      'dead_letter: { path: ./dead.ndjson }',
      'sql_sources:',
      `  - name: ksc`,
      `    url: "${db.url()}"`,
      '    poll_interval: 200ms',
      '    max_backoff: 2s',
      '    batch_rows: 300',
    ].join('\n');
  }

  test('drop_newest: no row is dropped while the buffer is full; all arrive later', async () => {
    const sub = join(dir, 'drop');
    mkdirSync(sub);
    const hport = await freePort();
    const mport = await freePort();
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
    await waitFor(() => stateCursor(sub) === 3000, 10_000, 'cursor 3000');
    const m2 = await scrape(mport);
    expect(m2.get('cefd_output_dropped_events_total{output="siem",reason="queue_full"}') ?? 0).toBe(0);
    d.proc.kill('SIGTERM');
    expect(await d.exit).toBe(0);
  }, 120_000);

  test('block: kill -9 while the buffer is full loses nothing', async () => {
    const sub = join(dir, 'block');
    mkdirSync(sub);
    const hport = await freePort();
    const mport = await freePort();
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
