/**
 * What the sql source (src/sources/sql/source.ts) takes for a database that went back,
 * and where it starts, against a real PostgreSQL server (test/helpers/db-servers.ts), the
 * source run in this process (in-process.ts):
 * - deleting the newest rows is no restore: a warning, the cursor and the event ids kept,
 *   nothing replayed (even with `on_cursor_backwards: replay`); rows written after the
 *   delete below the cursor are what makes it one (servers.test.ts, cursor-kinds.test.ts);
 * - an `initial_cursor` above every row (no row has confirmed it) is not checked at all:
 *   no false restore at start, no new epoch per poll with `replay`;
 * - the default `initial_cursor: 0` against a timestamp column: the query error says what
 *   to set, and a changed `initial_cursor` is taken while no row has been read.
 */
import { describe, expect, test } from 'vitest';
import { waitFor } from '../../helpers/daemon.js';
import { tempDir } from '../../helpers/temp.js';
import { idle, postgresSuite, type RunningSource } from './in-process.js';


/** A source over `table`'s column k (ids in id), with latest_query MAX(k). */
const over = (table: string, extra: string[] = []) => [
  `    query: 'SELECT id, k FROM ${table} WHERE k > @p1 ORDER BY k'`,
  '    cursor_column: k',
  '    id_column: id',
  `    latest_query: 'SELECT MAX(k) FROM ${table}'`,
  '    normalizers: []',
  ...extra,
];

/** The source's log lines about the newest value below the cursor, or a database that went back. */
const backwards = (s: RunningSource) => s.logs.parsed().filter((l) => l['code'] === 'sql_newest_below_cursor' || /went back/.test(String(l['msg'])));

describe('a cursor above the newest row (PostgreSQL)', () => {
  const pg = postgresSuite();
  const run = pg.run;

  test('deleting the newest rows is no restore: a warning, the cursor and the ids kept, nothing replayed', async () => {
    await pg.db.exec('CREATE TABLE b_del (id int PRIMARY KEY, k int NOT NULL)');
    await pg.db.exec('INSERT INTO b_del SELECT g, g FROM generate_series(1, 5) g');
    const s = await run(over('b_del', ['    on_cursor_backwards: replay']));
    await s.waitEvents(5);
    await pg.db.exec('DELETE FROM b_del WHERE id = 5');
    await waitFor(() => s.logs.parsed().some((l) => l['code'] === 'sql_newest_below_cursor' && l['level'] === 'warn'), 10_000, 'the warning');
    await idle(800);
    expect(s.cursors()).toEqual([1, 2, 3, 4, 5]);
    expect(s.state()).toMatchObject({ cursor: 5, epoch: 0 });
    // New rows come after the cursor, as after any delete: read under the same id prefix.
    await pg.db.exec('INSERT INTO b_del VALUES (6, 6), (7, 7)');
    await s.waitEvents(7);
    await idle();
    await s.stop();
    expect(s.cursors()).toEqual([1, 2, 3, 4, 5, 6, 7]);
    expect(new Set(s.events.map((e) => String(e.id).split('-')[0])).size).toBe(1);
    expect(s.state()).toMatchObject({ cursor: 7, epoch: 0 });
    expect(s.logs.parsed().filter((l) => /went back/.test(String(l['msg'])))).toEqual([]);
    expect(await s.metric('cefd_sql_errors_total{source="src",reason="cursor_backwards"}')).toBe(0);
    expect(s.errors()).toEqual([]);
  }, 60_000);

  test('an initial_cursor above every row: not checked (no new epoch per poll with replay, no rows below it)', async () => {
    await pg.db.exec('CREATE TABLE b_high (id int PRIMARY KEY, k int NOT NULL)');
    await pg.db.exec('INSERT INTO b_high SELECT g, g FROM generate_series(1, 5) g');
    const s = await run(over('b_high', ['    initial_cursor: "100"', '    on_cursor_backwards: replay']));
    await idle(1000);
    expect(s.events).toEqual([]);
    expect(s.state()).toMatchObject({ cursor: '100', kind: null, epoch: 0 });
    // Rows below the configured cursor are still skipped, as the user asked.
    await pg.db.exec('INSERT INTO b_high VALUES (6, 6), (7, 7), (8, 8)');
    await idle(800);
    expect(s.events).toEqual([]);
    await pg.db.exec('INSERT INTO b_high VALUES (101, 101)');
    await s.waitEvents(1);
    await idle();
    await s.stop();
    expect(s.cursors()).toEqual([101]);
    expect(s.events[0]!.id).toMatch(/^[0-9a-f]{12}-101$/);
    expect(s.state()).toMatchObject({ cursor: 101, kind: 'int', epoch: 0 });
    expect(backwards(s)).toEqual([]);
    expect(s.errors()).toEqual([]);
  }, 60_000);

  test('initial_cursor 0 against a timestamp: the query error says what to set; a changed initial_cursor is taken while no row was read', async () => {
    await pg.db.exec('CREATE TABLE b_time (id int PRIMARY KEY, k timestamp NOT NULL)');
    await pg.db.exec(`INSERT INTO b_time VALUES (1, '2024-01-01 00:00:00'), (2, '2024-01-02 00:00:00')`);
    const dir = tempDir('cefd-sqlproc-');
    const a = await run(over('b_time'), dir);
    await waitFor(() => a.errors().some((e) => e.reason === 'query'), 10_000, 'a query error');
    await a.stop();
    const err = a.errors().find((e) => e.reason === 'query')!.err;
    expect(err).toContain('initial_cursor');
    expect(err).toContain('1970-01-01T00:00:00Z');
    expect(a.state()).toMatchObject({ cursor: '0', kind: null });
    // The fixed configuration is taken: the stored cursor was never confirmed by a row.
    const b = await run(over('b_time', ['    initial_cursor: "1970-01-01T00:00:00Z"']), dir);
    await b.waitEvents(2);
    await idle();
    await b.stop();
    expect(b.cursors()).toEqual(['2024-01-01T00:00:00.000Z', '2024-01-02T00:00:00.000Z']);
    expect(b.state()).toMatchObject({ cursor: '2024-01-02T00:00:00.000Z', kind: 'time', epoch: 0 });
    expect(b.errors()).toEqual([]);
    // A cursor a row has confirmed stays, whatever initial_cursor says.
    const c = await run(over('b_time', ['    initial_cursor: "1980-01-01T00:00:00Z"']), dir);
    await idle();
    await c.stop();
    expect(c.events).toEqual([]);
    expect(c.state()).toMatchObject({ cursor: '2024-01-02T00:00:00.000Z', kind: 'time', epoch: 0 });
  }, 60_000);
});
