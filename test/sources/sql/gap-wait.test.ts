/**
 * `gap_wait` (src/sources/sql/cursor.ts planBatch, source.ts pollOnce) against a real
 * PostgreSQL server (test/helpers/db-servers.ts), the source run in this process
 * (in-process.ts): holes in the id sequence must not hold back the rows after them.
 * - permanent holes (every 10th id missing, as rollbacks leave): every row arrives at once,
 *   not one batch per gap_wait, and the holes expire together (one gap_wait, not six);
 * - an open transaction holding a low id: the 30 committed ids above it arrive before
 *   gap_wait ends, and the held id arrives when it commits;
 * - two held ids (3 and 23) with batch_rows 5, 23 beyond the rows a query from the cursor
 *   returns: both arrive when committed, none is lost or delivered twice;
 * - ids still missing after gap_wait: counted (`cefd_sql_gap_ids_skipped_total`) and logged
 *   with their ranges;
 * - `seen` is bounded: behind a held id, reading ahead stops once MAX_SEEN_IDS ids were
 *   delivered above it (no busy loop), and goes on when the id commits.
 */
import pg from 'pg';
import { describe, expect, test } from 'vitest';
import { DB_NAME, DB_PASSWORD, DB_USER } from '../../helpers/db-servers.js';
import { waitFor } from '../../helpers/daemon.js';
import { MAX_SEEN_IDS } from '../../../src/sources/sql/cursor.js';
import { idle, postgresSuite, type RunningSource } from './in-process.js';

const clients: pg.Client[] = [];

/** A source over `table`'s integer column id (cursor and event id) with gap_wait. */
const over = (table: string, extra: string[]) => [
  `    query: 'SELECT id FROM ${table} WHERE id > @p1 ORDER BY id'`,
  '    cursor_column: id',
  '    id_column: id',
  `    latest_query: 'SELECT MAX(id) FROM ${table}'`,
  '    normalizers: []',
  ...extra,
];

const ids = (s: RunningSource) => s.cursors().map(Number);
const sorted = (a: number[]) => [...a].sort((x, y) => x - y);
const range = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => from + i);
/** When the source read each event (the poll's time), in ms. */
const receivedMs = (s: RunningSource) => s.events.map((e) => Date.parse(e.received as string));

describe('gap_wait (PostgreSQL)', () => {
  const suite = postgresSuite(async () => {
    for (const c of clients.splice(0)) await c.end().catch(() => undefined);
  });
  const run = suite.run;
  /** A session of its own, for a transaction left open. */
  async function session(): Promise<pg.Client> {
    const c = new pg.Client({ host: '127.0.0.1', port: suite.db.port, user: DB_USER, password: DB_PASSWORD, database: DB_NAME });
    c.on('error', () => undefined);
    await c.connect();
    clients.push(c);
    return c;
  }

  test('permanent holes (every 10th id of 1-60): all 54 rows at once, the holes expire together', async () => {
    const wait = 3000;
    await suite.db.exec('CREATE TABLE g_perm (id int PRIMARY KEY)');
    await suite.db.exec('INSERT INTO g_perm SELECT g FROM generate_series(1, 60) g WHERE g % 10 <> 0');
    const expected = range(1, 59).filter((i) => i % 10 !== 0);
    const t0 = Date.now();
    const s = await run(over('g_perm', ['    batch_rows: 5', `    gap_wait: ${wait}ms`]));
    // Before: one batch per hole per gap_wait (6 × 3 s). Now every row is read in one
    // burst, long before the first hole expires.
    await s.waitEvents(54, 1.5 * wait);
    const got = receivedMs(s);
    expect(Math.max(...got) - Math.min(...got)).toBeLessThan(wait);
    expect(ids(s)).toEqual(expected);
    // Every hole's timer started when it was first seen: the cursor is past all six within
    // about one gap_wait of the first poll (before: 6 × gap_wait).
    await waitFor(() => s.state()?.cursor === 59 && s.state()?.seen.length === 0, 2.5 * wait, 'cursor 59, nothing seen above it');
    expect(Date.now() - t0).toBeLessThan(3 * wait);
    expect(ids(s)).toEqual(expected);
    expect(s.errors()).toEqual([]);
  }, 60_000);

  test('ids given up after gap_wait are counted and logged with their ranges; a row committed there later is not read', async () => {
    await suite.db.exec('CREATE TABLE g_lost (id int PRIMARY KEY)');
    const tx = await session();
    await tx.query('BEGIN');
    await tx.query('INSERT INTO g_lost VALUES (3)');
    await suite.db.exec('INSERT INTO g_lost VALUES (1), (2), (4), (5), (8)');
    const s = await run(over('g_lost', ['    gap_wait: 300ms']));
    await s.waitEvents(5);
    await waitFor(() => s.state()?.cursor === 8 && s.state()?.seen.length === 0, 10_000, 'cursor 8 past the expired gaps');
    expect(await s.metric('cefd_sql_gap_ids_skipped_total{source="src"}')).toBe(3);
    const warned = s.logs.parsed().filter((l) => l['code'] === 'sql_gap_given_up');
    expect(warned.map((l) => [l['level'], l['ids'], l['count']])).toEqual([['warn', '3, 6-7', 3]]);
    expect(String(warned[0]!['msg'])).toContain('id 3, 6-7 (3 ids) had no row after gap_wait');
    // The late row is lost (the documented limit of gap_wait), but no longer silently.
    await tx.query('COMMIT');
    await idle();
    expect(ids(s)).toEqual([1, 2, 4, 5, 8]);
    expect(s.errors()).toEqual([]);
  }, 60_000);

  test('an open transaction holds id 1: ids 2-31 arrive before gap_wait ends, id 1 when it commits', async () => {
    const wait = 15_000;
    await suite.db.exec('CREATE TABLE g_held (id int PRIMARY KEY)');
    const tx = await session();
    await tx.query('BEGIN');
    await tx.query('INSERT INTO g_held VALUES (1)');
    await suite.db.exec('INSERT INTO g_held SELECT g FROM generate_series(2, 31) g');
    const t0 = Date.now();
    const s = await run(over('g_held', ['    batch_rows: 5', `    gap_wait: ${wait / 1000}s`]));
    // Before: only the first batch (2-6) until the hole expired.
    await s.waitEvents(30, wait / 2);
    expect(ids(s)).toEqual(range(2, 31));
    // The stored cursor waits below the hole; the rows above it are remembered.
    await waitFor(() => s.state()?.seen.length === 30, 5000, 'ids 2-31 in seen');
    expect(s.state()).toMatchObject({ cursor: 0, seen: range(2, 31).map(String) });
    await tx.query('COMMIT');
    await s.waitEvents(31, wait);
    // The held id arrived before gap_wait gave it up: once, after the others.
    expect(Date.now() - t0).toBeLessThan(wait);
    await waitFor(() => s.state()?.cursor === 31, 5000, 'cursor 31');
    expect(s.state()).toMatchObject({ cursor: 31, seen: [] });
    expect(ids(s)).toEqual([...range(2, 31), 1]);
    // New rows after that: read as usual.
    await suite.db.exec('INSERT INTO g_held SELECT g FROM generate_series(32, 40) g');
    await s.waitEvents(40, 10_000);
    expect(sorted(ids(s))).toEqual(range(1, 40));
    expect(s.errors()).toEqual([]);
  }, 60_000);

  test('two held ids (3 and 23, batch_rows 5): the rows around them at once, both when committed, none twice', async () => {
    const wait = 20_000;
    await suite.db.exec('CREATE TABLE g_two (id int PRIMARY KEY)');
    const a = await session();
    const b = await session();
    await a.query('BEGIN');
    await a.query('INSERT INTO g_two VALUES (3)');
    await b.query('BEGIN');
    await b.query('INSERT INTO g_two VALUES (23)');
    await suite.db.exec('INSERT INTO g_two SELECT g FROM generate_series(1, 40) g WHERE g NOT IN (3, 23)');
    const s = await run(over('g_two', ['    batch_rows: 5', `    gap_wait: ${wait / 1000}s`]));
    const others = range(1, 40).filter((i) => i !== 3 && i !== 23);
    await s.waitEvents(38, wait / 2);
    expect(ids(s)).toEqual(others);
    // 23 commits first: beyond the rows a query from the cursor (2) returns, it is read when
    // the cursor gets there, which is when 3 commits (it must not be lost meanwhile).
    await b.query('COMMIT');
    await a.query('COMMIT');
    await s.waitEvents(40, wait / 2);
    await waitFor(() => s.state()?.cursor === 40 && s.state()?.seen.length === 0, 5000, 'cursor 40');
    expect(ids(s).slice(0, 38)).toEqual(others);
    expect(sorted(ids(s))).toEqual(range(1, 40));
    expect(s.events.length).toBe(40);
    expect(s.errors()).toEqual([]);
  }, 60_000);

  test('seen is bounded: behind a held id, reading ahead stops near MAX_SEEN_IDS; the rest follows the commit', async () => {
    const batch = 20_000;
    const total = MAX_SEEN_IDS + 3 * batch;
    await suite.db.exec('CREATE TABLE g_many (id int PRIMARY KEY)');
    const tx = await session();
    await tx.query('BEGIN');
    await tx.query('INSERT INTO g_many VALUES (1)');
    await suite.db.exec(`INSERT INTO g_many SELECT g FROM generate_series(2, ${total}) g`);
    const s = await run(over('g_many', [`    batch_rows: ${batch}`, '    gap_wait: 60s']));
    await s.waitEvents(MAX_SEEN_IDS, 40_000);
    await waitFor(() => (s.state()?.seen.length ?? 0) >= MAX_SEEN_IDS, 10_000, 'seen at the bound');
    // Stopped: nothing more is read ahead, and the source polls at its interval (a few
    // queries a poll), not in a loop.
    const n = s.events.length;
    const lines = s.logs.lines.length;
    await idle(1000);
    expect(s.events.length).toBe(n);
    expect(n).toBeLessThan(total - 1);
    expect(s.state()!.seen.length).toBeLessThanOrEqual(MAX_SEEN_IDS + 2 * batch);
    expect(s.logs.lines.length - lines).toBeLessThan(100);
    expect(s.state()).toMatchObject({ cursor: 0 });
    await tx.query('COMMIT');
    await s.waitEvents(total, 40_000);
    await waitFor(() => s.state()?.cursor === total && s.state()?.seen.length === 0, 20_000, `cursor ${total}`);
    const got = ids(s);
    expect(got.length).toBe(total);
    expect(new Set(got).size).toBe(total);
    expect(got[n]).toBe(1);
    expect(s.errors()).toEqual([]);
  }, 120_000);
});
