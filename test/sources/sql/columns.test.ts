/**
 * The sql source's cursor and id columns against a real PostgreSQL (Debian's package,
 * test/helpers/db-servers.ts), with `cefd run` as a child process writing to a file
 * output: a cursor column the result lacks, a time cursor, event ids of a non-unique
 * cursor.
 */
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { freePort, runCefd, type ChildDaemon } from '../../helpers/child.js';
import { readNdjson, scrape, waitFor } from '../../helpers/daemon.js';
import { startPostgres } from '../../helpers/db-servers.js';
import { FILE_OUTPUT, sqlBed, sqlDaemonYaml } from '../../helpers/sql-bed.js';

const noMetrics = () => new Map<string, number>();

describe('sql source columns (PostgreSQL)', () => {
  // Up to 120: MAX(nId) then sorts as text below a time ("120" < "2...").
  const bed = sqlBed(startPostgres, 'cefd-sqlcols-', (schema) => schema.insertEvents(1, 120));
  const { children } = bed;

  async function run(sub: string, source: string): Promise<{ d: ChildDaemon; mport: number; dir: string }> {
    const at = join(bed.dir, sub);
    mkdirSync(at);
    const mport = await freePort();
    const yaml = sqlDaemonYaml(mport, FILE_OUTPUT, [`  - name: ksc`, `    url: "${bed.db.url()}"`, '    poll_interval: 100ms', '    max_backoff: 200ms', source].join('\n'));
    const d = runCefd(at, yaml);
    children.push(d);
    return { d, mport, dir: at };
  }

  const metric = async (port: number, name: string) => (await scrape(port).catch(noMetrics)).get(name) ?? 0;

  test('a cursor column the result lacks: a query error, no dead letters', async () => {
    const { d, mport, dir: at } = await run(
      'missing',
      // Ordered by position (column 1 is nId): `cefd validate` cannot tell that from the
      // cursor column, so the run-time check is what finds the column missing.
      ['    query: SELECT * FROM v_akpub_ev_event WHERE "nId" > @p1 ORDER BY 1', '    cursor_column: ident', '    id_column: nId', '    latest_query: ""'].join('\n'),
    );
    await waitFor(async () => (await metric(mport, 'cefd_sql_errors_total{source="ksc",reason="query"}')) >= 3, 30_000, 'query errors').catch((e) => {
      throw new Error(`${(e as Error).message}\n${d.text().slice(-3000)}`);
    });
    expect(await metric(mport, 'cefd_sql_dead_letters_total{source="ksc"}')).toBe(0);
    expect(existsSync(join(at, 'dead.ndjson')) ? readFileSync(join(at, 'dead.ndjson'), 'utf8') : '').toBe('');
    expect(d.text()).toContain('cursor column ident not in the result');
    d.proc.kill('SIGTERM');
    expect(await d.exit).toBe(0);
    expect(readNdjson(join(at, 'events.ndjson'), { tolerateTornTail: true })).toEqual([]);
  }, 120_000);
  test('a time cursor with a latest_query of another column: no false "database went back"', async () => {
    const { d, mport, dir: at } = await run(
      'kinds',
      [
        '    query: SELECT * FROM v_akpub_ev_event WHERE "tmRiseTime" > @p1 ORDER BY "tmRiseTime"',
        '    cursor_column: tmRiseTime',
        '    id_column: nId',
        '    initial_cursor: "1970-01-01T00:00:00Z"',
        '    latest_query: SELECT MAX("nId") FROM v_akpub_ev_event',
      ].join('\n'),
    );
    const events = () => readNdjson(join(at, 'events.ndjson'), { tolerateTornTail: true }) as { id: string }[];
    await waitFor(() => events().length >= 120, 30_000, '120 events').catch((e) => {
      throw new Error(`${(e as Error).message}: ${events().length}\n${d.text().slice(-3000)}`);
    });
    // Idle polls, each running the latest query.
    const q0 = await metric(mport, 'cefd_sql_queries_total{source="ksc"}');
    await waitFor(async () => (await metric(mport, 'cefd_sql_queries_total{source="ksc"}')) >= q0 + 5, 30_000, 'idle polls');
    expect(await metric(mport, 'cefd_sql_errors_total{source="ksc",reason="cursor_backwards"}')).toBe(0);
    expect(await metric(mport, 'cefd_sql_errors_total{source="ksc",reason="query"}')).toBe(0);
    expect(d.text()).toContain('sql_cursor_kind_mismatch');
    d.proc.kill('SIGTERM');
    expect(await d.exit).toBe(0);
    const list = events();
    expect(list.length).toBe(120);
    expect(new Set(list.map((e) => e.id)).size).toBe(120);
    const state = JSON.parse(readFileSync(join(at, 'state', 'sql', 'ksc.json'), 'utf8')) as { epoch: number; cursor: unknown };
    expect(state.epoch).toBe(0);
    expect(typeof state.cursor).toBe('string');
  }, 120_000);
});
