/**
 * The sql source against real PostgreSQL and MariaDB servers (Debian's packages, started
 * here: test/helpers/db-servers.ts) holding KSC's views filled from the KSC fixtures, with
 * `cefd run` as a child process writing to a file output with a disk buffer:
 * - the backlog and rows inserted while cefd runs arrive once each, in cursor order, as
 *   the ksc objects of their fixtures;
 * - kill -9 in the middle of a backlog, then a restart: nothing lost, no id twice;
 * - database down and back, a wrong password, a query error, a query past its timeout:
 *   errors by reason in the metrics and the log (never the password), retried with
 *   backoff, and every row delivered once the cause is gone;
 * - `cefd sql test` prints normalized rows and writes nothing.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, test } from 'vitest';
import { CLI, freePort, runCefd } from '../../helpers/child.js';
import { readNdjson, scrape, waitFor } from '../../helpers/daemon.js';
import { DB_PASSWORD, startMariadb, startPostgres, type DbServer } from '../../helpers/db-servers.js';
import type { KscSchema } from '../../helpers/ksc-sql-schema.js';
import { FILE_OUTPUT, sqlBed, sqlDaemonYaml } from '../../helpers/sql-bed.js';

interface Ev {
  id: string;
  listener: string;
  sql: { cursor: number | string; row: Record<string, unknown> };
  ksc?: { eventType?: string; category?: string; format?: string; host?: { ip?: string } };
}

const num = (c: number | string) => Number(c);

/** `p`, or an error naming what did not finish (instead of a bare test timeout). */
async function within<T>(p: Promise<T>, ms: number, what: string, log?: () => string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([p, new Promise<never>((_, rej) => (timer = setTimeout(() => rej(new Error(`${what} did not finish in ${ms} ms\n${log?.().slice(-4000) ?? ''}`)), ms)))]);
  } finally {
    clearTimeout(timer);
  }
}

describe.each([
  ['PostgreSQL', startPostgres],
  ['MariaDB', startMariadb],
] as const)('%s', (_label, start) => {
  const bed = sqlBed(start, 'cefd-sqlsrc-');
  const { children } = bed;
  let db: DbServer;
  let schema: KscSchema;
  let dir: string;
  beforeAll(() => ({ db, schema, dir } = bed));

  const yaml = (metricsPort: number, sources: string) => sqlDaemonYaml(metricsPort, FILE_OUTPUT, sources);

  const source = (name: string, url: string, extra = '') => {
    const defaults = ['poll_interval: 200ms', 'max_backoff: 2s', 'query_timeout: 2s', 'connect_timeout: 2s'].filter((d) => !extra.includes(d.split(':')[0]! + ':'));
    return `  - name: ${name}\n    url: "${url}"\n${defaults.map((d) => `    ${d}\n`).join('')}${extra}`;
  };

  function events(sub: string): Ev[] {
    return readNdjson(join(dir, sub, 'events.ndjson'), { tolerateTornTail: true }) as unknown as Ev[];
  }

  function checkExactlyOnce(list: Ev[], total: number): void {
    const ids = new Set(list.map((e) => e.id));
    expect(ids.size).toBe(list.length);
    expect(list.length).toBe(total);
    // Cursor order, 1..total, each once.
    list.forEach((e, i) => expect(num(e.sql.cursor)).toBe(i + 1));
  }

  test('backlog then live rows: each once, in cursor order, normalized as its fixture', async () => {
    const sub = 'live';
    execFileSync('mkdir', ['-p', join(dir, sub)]);
    await schema.insertEvents(1, 300);
    const mport = await freePort();
    const d = runCefd(join(dir, sub), yaml(mport, source('ksc', db.url(), '    batch_rows: 64\n')));
    children.push(d);
    await waitFor(() => events(sub).length >= 300, 30_000, '300 events').catch((e) => {
      throw new Error(`${(e as Error).message}: ${events(sub).length}\n${d.text().slice(-3000)}`);
    });
    await schema.insertEvents(301, 340);
    await waitFor(() => events(sub).length >= 340, 30_000, '340 events');
    const list = events(sub);
    checkExactlyOnce(list, 340);
    const n = schema.fixtures.length;
    for (const e of list) {
      const fx = schema.fixtures[num(e.sql.cursor) % n]!;
      expect(e.listener).toBe('ksc');
      expect(e.ksc?.format).toBe('sql');
      expect(e.ksc?.eventType).toBe(fx.eventType);
      expect(e.ksc?.category).toBe(fx.category);
      if (fx.host.ip !== undefined) expect(e.ksc?.host?.ip).toBe(fx.host.ip);
    }
    // The cursor (file and gauge) moves once the outputs' buffers hold the batch (source.ts
    // awaits onDisk()), which can be after the file output wrote the events: wait for it.
    const stored = () => (JSON.parse(readFileSync(join(dir, sub, 'state', 'sql', 'ksc.json'), 'utf8')) as { cursor: number }).cursor;
    await waitFor(async () => stored() === 340 && (await scrape(mport)).get('cefd_sql_last_cursor{source="ksc"}') === 340, 30_000, 'the cursor at 340');
    const m = await scrape(mport);
    // A full batch's last row is read again by the next query (it might share its cursor
    // value with rows beyond the limit): rows read >= events.
    expect(m.get('cefd_sql_rows_total{source="ksc"}')).toBeGreaterThanOrEqual(340);
    expect(m.get('cefd_sql_events_total{source="ksc"}')).toBe(340);
    expect(m.get('cefd_sql_last_cursor{source="ksc"}')).toBe(340);
    expect(m.get('cefd_sql_last_success_timestamp_seconds{source="ksc"}')).toBeGreaterThan(0);
    expect(m.get('cefd_sql_query_duration_seconds_count{source="ksc"}')).toBeGreaterThan(5);
    const state = JSON.parse(readFileSync(join(dir, sub, 'state', 'sql', 'ksc.json'), 'utf8')) as { cursor: number };
    expect(state.cursor).toBe(340);
    d.proc.kill('SIGTERM');
    expect(await d.exit).toBe(0);
    expect(d.text()).not.toContain(DB_PASSWORD);
  }, 120_000);

  test('kill -9 mid-backlog and restart: nothing lost; the source reads nothing twice', async () => {
    const sub = 'kill';
    execFileSync('mkdir', ['-p', join(dir, sub)]);
    await schema.insertEvents(341, 20_000);
    const cfg = source('ksc', db.url(), '    batch_rows: 100\n    initial_cursor: "340"\n');
    const mport = await freePort();
    const d1 = runCefd(join(dir, sub), yaml(mport, cfg));
    children.push(d1);
    await waitFor(() => events(sub).length >= 3000, 60_000, '3000 events');
    d1.proc.kill('SIGKILL');
    await d1.exit;
    const stored = num((JSON.parse(readFileSync(join(dir, sub, 'state', 'sql', 'ksc.json'), 'utf8')) as { cursor: number }).cursor);
    expect(stored).toBeLessThan(20_000);
    const d2 = runCefd(join(dir, sub), yaml(mport, cfg));
    children.push(d2);
    await waitFor(() => new Set(events(sub).map((e) => e.id)).size >= 19_660, 120_000, '19660 distinct events');
    await waitFor(async () => ((await scrape(mport)).get('cefd_sql_last_cursor{source="ksc"}') ?? 0) === 20_000, 30_000, 'cursor 20000');
    // The restarted source went on from the stored cursor: it submitted each later row once.
    expect((await scrape(mport)).get('cefd_sql_events_total{source="ksc"}')).toBe(20_000 - stored);
    const list = events(sub);
    const byId = new Map<string, string>();
    const lines = readFileSync(join(dir, sub, 'events.ndjson'), 'utf8').split('\n').filter((l) => l !== '');
    let replayed = 0;
    for (let i = 0; i < list.length; i++) {
      const prev = byId.get(list[i]!.id);
      if (prev === undefined) {
        byId.set(list[i]!.id, lines[i]!);
        continue;
      }
      replayed++;
      const c = num(list[i]!.sql.cursor);
      // A record seen twice is the disk buffer's redelivery of the same bytes (its delivered
      // position is saved every 200 ms), or a row of the one batch after the stored cursor
      // (killed between the buffer append and the cursor write): same id either way.
      if (prev !== lines[i]) expect(c > stored && c <= stored + 100).toBe(true);
    }
    const cursors = [...new Set(list.map((e) => num(e.sql.cursor)))].sort((a, b) => a - b);
    expect(cursors).toEqual(Array.from({ length: 19_660 }, (_, i) => 341 + i));
    expect(byId.size).toBe(19_660);
    expect(replayed).toBe(list.length - 19_660);
    d2.proc.kill('SIGTERM');
    expect(await d2.exit).toBe(0);
  }, 240_000);

  test('wrong password, query error, slow query, database down and back: counted, retried, nothing lost', async () => {
    const sub = 'faults';
    execFileSync('mkdir', ['-p', join(dir, sub)]);
    const slow = db.kind === 'postgres' ? 'SELECT e.*, pg_sleep(5) AS z FROM v_akpub_ev_event e WHERE e."nId" > @p1 ORDER BY e."nId"' : 'SELECT e.*, SLEEP(5) AS z FROM v_akpub_ev_event e WHERE e.nId > @p1 ORDER BY e.nId';
    await schema.insertEvents(30_001, 30_010);
    const mport = await freePort();
    const cfg = [
      source('good', db.url(), '    batch_rows: 500\n    initial_cursor: "30000"\n'),
      source('badpw', db.url('not-the-password')),
      source('badquery', db.url(), '    query: "SELECT * FROM v_akpub_no_such_view WHERE nId > @p1 ORDER BY nId"\n    latest_query: ""\n'),
      source('slow', db.url(), `    query: '${slow}'\n    latest_query: ""\n    query_timeout: 500ms\n`),
    ].join('');
    const d = runCefd(join(dir, sub), yaml(mport, cfg));
    children.push(d);
    await waitFor(() => events(sub).filter((e) => e.listener === 'good').length >= 10, 30_000, 'the good source').catch((e) => {
      throw new Error(`${(e as Error).message}\n${d.text().slice(-3000)}`);
    });
    await waitFor(async () => {
      const m = await scrape(mport);
      return (m.get('cefd_sql_errors_total{source="badpw",reason="auth"}') ?? 0) >= 2 && (m.get('cefd_sql_errors_total{source="badquery",reason="query"}') ?? 0) >= 2 && (m.get('cefd_sql_errors_total{source="slow",reason="timeout"}') ?? 0) >= 2;
    }, 30_000, 'auth, query and timeout errors').catch(async (e) => {
      const m = await scrape(mport);
      throw new Error(`${(e as Error).message}\n${[...m].filter(([k]) => k.startsWith('cefd_sql_errors')).join('\n')}\n${d.text().slice(-3000)}`);
    });
    const text = d.text();
    expect(text).toMatch(/sql source badpw: auth error/);
    expect(text).toMatch(/sql source badquery: query error: .*v_akpub_no_such_view/);
    expect(text).toMatch(/sql source slow: timeout error/);
    expect(text).not.toContain('not-the-password');
    expect(text).not.toContain(DB_PASSWORD);
    // Database down: connect errors, backoff (no busy loop), then back with new rows.
    await within(db.down(), 40_000, 'database stop', () => db.log());
    await waitFor(async () => ((await scrape(mport)).get('cefd_sql_errors_total{source="good",reason="connect"}') ?? 0) >= 2, 30_000, 'connect errors').catch(async (e) => {
      const m = await scrape(mport);
      throw new Error(`${(e as Error).message}\n${[...m].filter(([k]) => k.startsWith('cefd_sql_errors')).join('\n')}\n${d.text().slice(-3000)}`);
    });
    const m1 = await scrape(mport);
    expect(m1.get('cefd_sql_up{source="good"}')).toBe(0);
    // Backoff doubles from 1 s to max_backoff 2 s: a busy loop would count thousands.
    await new Promise((r) => setTimeout(r, 3000));
    expect((await scrape(mport)).get('cefd_sql_errors_total{source="good",reason="connect"}')).toBeLessThan(10);
    await within(db.up(), 40_000, 'database start', () => db.log());
    await schema.insertEvents(30_011, 30_060);
    await waitFor(() => events(sub).filter((e) => e.listener === 'good').length >= 60, 30_000, 'rows after the database came back');
    const good = events(sub).filter((e) => e.listener === 'good');
    expect(good.map((e) => num(e.sql.cursor))).toEqual(Array.from({ length: 60 }, (_, i) => 30_001 + i));
    expect(events(sub).filter((e) => e.listener !== 'good')).toEqual([]);
    // Up once the poll finished, which is after the outputs' buffers held its rows (onDisk()):
    // the file output may show them first.
    await waitFor(async () => (await scrape(mport)).get('cefd_sql_up{source="good"}') === 1, 30_000, 'the good source up');
    expect((await scrape(mport)).get('cefd_sql_up{source="good"}')).toBe(1);
    d.proc.kill('SIGTERM');
    expect(await within(d.exit, 30_000, 'cefd exit', () => d.text())).toBe(0);
  }, 180_000);

  test('out-of-order inserts (gap_wait) and a cursor that goes backwards (restored database)', async () => {
    const sub = 'order';
    execFileSync('mkdir', ['-p', join(dir, sub)]);
    await schema.insertEvents(40_001, 40_005);
    const mport = await freePort();
    const cfg = source('ksc', db.url(), '    initial_cursor: "40000"\n    gap_wait: 30s\n');
    const d = runCefd(join(dir, sub), yaml(mport, cfg));
    children.push(d);
    const mine = () => events(sub).map((e) => num(e.sql.cursor));
    await waitFor(() => mine().length >= 5, 30_000, 'rows 40001-40005');
    // 40007 commits before 40006: both arrive, once each, and the stored cursor waits at the gap.
    await schema.insertEvents(40_007, 40_007);
    await waitFor(() => mine().includes(40_007), 30_000, 'row 40007');
    const state = () => JSON.parse(readFileSync(join(dir, sub, 'state', 'sql', 'ksc.json'), 'utf8')) as { cursor: number; seen: string[]; epoch: number };
    // The cursor file is written after the outputs' buffers hold the batch (source.ts awaits
    // onDisk()), so the file output can show the row first: wait for the file to say so.
    await waitFor(() => state().cursor === 40_005 && state().seen.length > 0, 30_000, 'the cursor file with 40007 seen');
    expect(state()).toMatchObject({ cursor: 40_005, seen: ['40007'] });
    await schema.insertEvents(40_006, 40_006);
    await waitFor(() => mine().includes(40_006), 30_000, 'row 40006');
    await waitFor(() => state().cursor === 40_007, 30_000, 'the cursor past the filled gap');
    expect(mine()).toEqual([40_001, 40_002, 40_003, 40_004, 40_005, 40_007, 40_006]);
    // The database goes back (rows above 30060 gone, as after a restore): noticed (a
    // warning: a delete looks the same), and once new rows reuse ids below the cursor,
    // counted, and those rows arrive under a new epoch of ids.
    await db.exec(`DELETE FROM ev WHERE ${db.kind === 'postgres' ? '"nId"' : 'nId'} > 30060`);
    await waitFor(() => /sql_newest_below_cursor/.test(d.text()), 30_000, 'the newest id below the cursor noticed');
    expect((await scrape(mport)).get('cefd_sql_errors_total{source="ksc",reason="cursor_backwards"}') ?? 0).toBe(0);
    await schema.insertEvents(30_061, 30_062);
    await waitFor(async () => ((await scrape(mport)).get('cefd_sql_errors_total{source="ksc",reason="cursor_backwards"}') ?? 0) >= 1, 30_000, 'cursor_backwards');
    // The counter moves before the log line reaches the child's stdout: wait for the line too.
    await waitFor(() => /the database went back/.test(d.text()), 30_000, 'the "database went back" log line');
    await waitFor(() => events(sub).length >= 9, 30_000, 'rows after the restore');
    const last = events(sub).slice(7);
    expect(last.map((e) => num(e.sql.cursor))).toEqual([30_061, 30_062]);
    expect(last.every((e) => /^[0-9a-f]{12}\.1-3006[12]$/.test(e.id))).toBe(true);
    expect(state().epoch).toBe(1);
    d.proc.kill('SIGTERM');
    expect(await d.exit).toBe(0);
  }, 120_000);

  test('cefd sql test prints normalized rows and changes nothing', async () => {
    const sub = 'cli';
    execFileSync('mkdir', ['-p', join(dir, sub)]);
    const file = join(dir, sub, 'cefd.yaml');
    const { writeFileSync } = await import('node:fs');
    writeFileSync(file, yaml(await freePort(), source('ksc', db.url(), '    initial_cursor: "5"\n')));
    const out = execFileSync(process.execPath, [CLI, 'sql', 'test', '--config', file, '--rows', '3'], { cwd: join(dir, sub), stdio: ['ignore', 'pipe', 'pipe'] }).toString();
    const lines = out.trim().split('\n').map((l) => JSON.parse(l) as Ev);
    expect(lines.map((e) => num(e.sql.cursor))).toEqual([6, 7, 8]);
    expect(lines.every((e) => e.ksc?.format === 'sql')).toBe(true);
    expect(existsSync(join(dir, sub, 'state'))).toBe(false);
    const bad = join(dir, sub, 'bad.yaml');
    writeFileSync(bad, yaml(await freePort(), source('ksc', db.url('wrong'))));
    let code = 0;
    let err = '';
    try {
      execFileSync(process.execPath, [CLI, 'sql', 'test', '--config', bad], { cwd: join(dir, sub), stdio: ['ignore', 'pipe', 'pipe'] });
    } catch (e) {
      code = (e as { status: number }).status;
      err = String((e as { stderr: Buffer }).stderr);
    }
    expect(code).toBe(1);
    expect(err).toMatch(/auth error/);
    expect(err).not.toContain('wrong@');
  }, 120_000);
});
