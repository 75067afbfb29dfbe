/**
 * The cursor keeps the kind of its column (src/sources/sql/cursor.ts CursorKind), against
 * real PostgreSQL and MariaDB servers (test/helpers/db-servers.ts) with the source run in
 * this process (in-process.ts):
 * - text that looks like an integer (`'0001'`) stays text: bound and stored as text, so
 *   no row is skipped; a text cursor on MariaDB starts from the default `initial_cursor: 0`
 *   (bound as text, not as the number 0 that MariaDB would compare numerically);
 * - the database's order is trusted for text (an ICU or `_ci` collation differs from JS's
 *   code units), and decimals are ordered as numbers: no false "not in ascending order";
 * - what worked before still does: integer ids (numbers in the state), bigint beyond 2^53
 *   (text, exact), ties of a time cursor across batches, a state file written before kinds;
 * - `initial_cursor: latest` on an empty table saves nothing and asks again at each poll
 *   (0 is no time), and `replay` of a time cursor (a row deleted, then one written below
 *   the cursor) starts at a time (`cefd sql test` too).
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { startMariadb, startPostgres, type DbServer } from '../../helpers/db-servers.js';
import { tempDir } from '../../helpers/temp.js';
import { waitFor } from '../../helpers/daemon.js';
import { parseDbUrl } from '../../../src/sources/sql/url.js';
import { sqlTest } from '../../../src/sources/sql/cli.js';
import { idle, startSource, type RunningSource } from './in-process.js';

const running: RunningSource[] = [];
async function run(db: DbServer, lines: string[], stateDir?: string): Promise<RunningSource> {
  const s = await startSource(db.url(), lines, stateDir);
  running.push(s);
  return s;
}
async function stopAll(): Promise<void> {
  for (const s of running.splice(0)) await s.stop();
}

/** A source over `table`'s column k (ids in id), with latest_query MAX(k). */
const over = (table: string, extra: string[] = [], q = (s: string) => s) => [
  `    query: 'SELECT ${q('id')}, ${q('k')} FROM ${table} WHERE ${q('k')} > @p1 ORDER BY ${q('k')}'`,
  '    cursor_column: k',
  '    id_column: id',
  `    latest_query: 'SELECT MAX(${q('k')}) FROM ${table}'`,
  '    normalizers: []',
  ...extra,
];

const noQueryErrors = (s: RunningSource) => expect(s.errors()).toEqual([]);

/** A text cursor whose collation orders a, B, c, D, e unlike JavaScript's code units: every row, in the database's order. */
async function inCollation(db: DbServer, table: string, column: string): Promise<void> {
  await db.exec(`CREATE TABLE ${table} (id int PRIMARY KEY, k ${column} NOT NULL)`);
  await db.exec(`INSERT INTO ${table} VALUES (1, 'a'), (2, 'B'), (3, 'c'), (4, 'D'), (5, 'e')`);
  const s = await run(db, over(table, ['    batch_rows: 2']));
  await s.waitEvents(5);
  await idle();
  await s.stop();
  expect(s.cursors()).toEqual(['a', 'B', 'c', 'D', 'e']);
  noQueryErrors(s);
}

describe('PostgreSQL', () => {
  let db: DbServer;
  beforeAll(async () => {
    db = await startPostgres();
  }, 120_000);
  afterAll(async () => {
    await stopAll();
    await db?.stop();
  }, 120_000);

  test('a text cursor of digits (0001..0020) stays text: every row, cursor "0020"', async () => {
    await db.exec('CREATE TABLE t_digits (id int PRIMARY KEY, k text NOT NULL UNIQUE)');
    await db.exec(`INSERT INTO t_digits SELECT g, lpad(g::text, 4, '0') FROM generate_series(1, 20) g`);
    const s = await run(db, over('t_digits', ['    initial_cursor: "0000"', '    batch_rows: 5']));
    await s.waitEvents(20);
    await idle();
    await s.stop();
    expect(s.cursors()).toEqual(Array.from({ length: 20 }, (_, i) => String(i + 1).padStart(4, '0')));
    expect(s.state()).toMatchObject({ cursor: '0020', kind: 'text' });
    noQueryErrors(s);
  }, 60_000);

  test('numeric 8.5, 9.5, 10, 10.25: ordered as numbers, every row, no order error', async () => {
    await db.exec('CREATE TABLE t_num (id int PRIMARY KEY, k numeric NOT NULL)');
    await db.exec(`INSERT INTO t_num VALUES (1, 8.5), (2, 9.5), (3, 10), (4, 10.25), (5, 100.50)`);
    const s = await run(db, over('t_num', ['    batch_rows: 2']));
    await s.waitEvents(5);
    await idle();
    await s.stop();
    expect(s.cursors()).toEqual(['8.5', '9.5', '10', '10.25', '100.50']);
    expect(s.state()).toMatchObject({ cursor: '100.50', kind: 'num' });
    noQueryErrors(s);
  }, 60_000);

  test('text in an ICU collation (a, B, c, D): the database\'s order, no order error', () => inCollation(db, 't_icu', 'text COLLATE "und-x-icu"'), 60_000);

  test('integer ids: numbers in the state; bigint beyond 2^53 as exact text', async () => {
    await db.exec('CREATE TABLE t_int (id bigint PRIMARY KEY, k bigint NOT NULL)');
    await db.exec('INSERT INTO t_int SELECT g, g FROM generate_series(1, 7) g');
    const a = await run(db, over('t_int', ['    batch_rows: 3']));
    await a.waitEvents(7);
    await idle();
    await a.stop();
    expect(a.cursors()).toEqual([1, 2, 3, 4, 5, 6, 7]);
    expect(a.state()).toMatchObject({ cursor: 7, kind: 'int' });
    noQueryErrors(a);
    await db.exec('CREATE TABLE t_big (id bigint PRIMARY KEY, k bigint NOT NULL)');
    await db.exec('INSERT INTO t_big SELECT g, g FROM generate_series(9007199254740991, 9007199254740998) g');
    const b = await run(db, over('t_big', ['    batch_rows: 3', '    initial_cursor: "9007199254740990"']));
    await b.waitEvents(8);
    await idle();
    await b.stop();
    expect(b.cursors()).toEqual([9007199254740991, '9007199254740992', '9007199254740993', '9007199254740994', '9007199254740995', '9007199254740996', '9007199254740997', '9007199254740998']);
    expect(b.state()).toMatchObject({ cursor: '9007199254740998', kind: 'int' });
    noQueryErrors(b);
  }, 60_000);

  test('a time cursor with ties across batches: every row once', async () => {
    await db.exec('CREATE TABLE t_ties (id int PRIMARY KEY, k timestamp(6) NOT NULL)');
    await db.exec(`INSERT INTO t_ties VALUES (1, '2024-01-01 10:00:00.000001'), (2, '2024-01-01 10:00:00.000001'), (3, '2024-01-01 10:00:00.000001'), (4, '2024-01-01 10:00:01'), (5, '2024-01-01 10:00:01'), (6, '2024-01-01 10:00:02')`);
    const s = await run(db, over('t_ties', ['    batch_rows: 2', '    initial_cursor: "2024-01-01T00:00:00Z"']));
    await s.waitEvents(6);
    await idle();
    await s.stop();
    expect(s.events.map((e) => (e.sql as { row: { id: number } }).row.id).sort()).toEqual([1, 2, 3, 4, 5, 6]);
    expect(s.events.length).toBe(6);
    expect(s.state()).toMatchObject({ cursor: '2024-01-01T10:00:02.000Z', kind: 'time' });
    noQueryErrors(s);
  }, 60_000);

  test('a state file written before kinds: its cursor is read as then (a number: an integer)', async () => {
    await db.exec('CREATE TABLE t_old (id int PRIMARY KEY, k int NOT NULL)');
    await db.exec('INSERT INTO t_old SELECT g, g FROM generate_series(1, 6) g');
    const dir = tempDir('cefd-sqlold-');
    mkdirSync(join(dir, 'sql'));
    writeFileSync(join(dir, 'sql', 'src.json'), JSON.stringify({ version: 1, database: parseDbUrl(db.url()).identity, epoch: 0, cursor: 4, seen: [], updated: '2024-01-01T00:00:00.000Z' }));
    const s = await run(db, over('t_old'), dir);
    await s.waitEvents(2);
    await idle();
    await s.stop();
    expect(s.cursors()).toEqual([5, 6]);
    expect(s.state()).toMatchObject({ cursor: 6, kind: 'int' });
    noQueryErrors(s);
  }, 60_000);

  test('initial_cursor latest on an empty table (time cursor): nothing saved until a row; replay starts at a time', async () => {
    await db.exec('CREATE TABLE t_empty (id int PRIMARY KEY, k timestamptz NOT NULL)');
    // cefd sql test: no value is no place to start, not an error.
    const dir = tempDir('cefd-sqlcli-');
    const cfg = join(dir, 'cefd.yaml');
    writeFileSync(cfg, ['state_dir: ./state', 'listeners: []', 'outputs:', '  - { name: o, type: stdout }', 'sql_sources:', '  - name: src', `    url: "${db.url()}"`, ...over('t_empty', ['    initial_cursor: latest'])].join('\n') + '\n');
    let out = '';
    let err = '';
    const code = await sqlTest(cfg, undefined, 3, (t) => (out += t), (t) => (err += t));
    expect({ code, out }).toEqual({ code: 0, out: '' });
    expect(err).toContain('latest_query returned no value');

    const s = await run(db, over('t_empty', ['    initial_cursor: latest', '    on_cursor_backwards: replay']));
    await idle();
    expect(s.state()).toBeNull();
    noQueryErrors(s);
    // The first row: the source starts after it (latest), and reads the next.
    await db.exec(`INSERT INTO t_empty VALUES (1, '2024-01-01 10:00:00+00')`);
    await waitFor(() => s.state() !== null, 10_000, 'the cursor file');
    expect(s.state()).toMatchObject({ cursor: '2024-01-01T10:00:00.000Z', kind: 'time' });
    await db.exec(`INSERT INTO t_empty VALUES (2, '2024-01-01 10:00:01+00')`);
    await s.waitEvents(1);
    expect(s.cursors()).toEqual(['2024-01-01T10:00:01.000Z']);
    // The database goes back (row 2 gone, then a row written below the cursor, as after a
    // restore): replay reads every row again, from a time.
    await db.exec('DELETE FROM t_empty WHERE id = 2');
    await waitFor(() => s.logs.parsed().some((l) => l['code'] === 'sql_newest_below_cursor'), 10_000, 'the newest value below the cursor noticed');
    await db.exec(`INSERT INTO t_empty VALUES (3, '2024-01-01 10:00:00.5+00')`);
    await s.waitEvents(3);
    await idle();
    await s.stop();
    expect(s.cursors()).toEqual(['2024-01-01T10:00:01.000Z', '2024-01-01T10:00:00.000Z', '2024-01-01T10:00:00.500Z']);
    expect(s.state()).toMatchObject({ cursor: '2024-01-01T10:00:00.500Z', kind: 'time', epoch: 1 });
    expect(s.errors().map((e) => e.reason)).toEqual([]);
  }, 60_000);
});

describe('MariaDB', () => {
  let db: DbServer;
  beforeAll(async () => {
    db = await startMariadb();
  }, 120_000);
  afterAll(async () => {
    await stopAll();
    await db?.stop();
  }, 120_000);

  test('a varchar cursor from the default initial_cursor 0: bound as text, every row', async () => {
    await db.exec('CREATE TABLE t_var (id int PRIMARY KEY, k varchar(20) NOT NULL UNIQUE)');
    await db.exec(`INSERT INTO t_var VALUES (1, 'ev-01'), (2, 'ev-02'), (3, 'ev-03'), (4, 'ev-04')`);
    const s = await run(db, over('t_var', ['    batch_rows: 3']));
    await s.waitEvents(4);
    await idle();
    await s.stop();
    expect(s.cursors()).toEqual(['ev-01', 'ev-02', 'ev-03', 'ev-04']);
    expect(s.state()).toMatchObject({ cursor: 'ev-04', kind: 'text' });
    noQueryErrors(s);
  }, 60_000);

  test('a utf8mb4_general_ci varchar (a, B, c, D): the database\'s order, no order error', () => inCollation(db, 't_ci', 'varchar(20) CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci'), 60_000);

  test('decimal and bigint beyond 2^53: ordered and bound exactly', async () => {
    await db.exec('CREATE TABLE t_dec (id int PRIMARY KEY, k decimal(10,2) NOT NULL)');
    await db.exec('INSERT INTO t_dec VALUES (1, 8.5), (2, 9.5), (3, 10), (4, 10.25)');
    const a = await run(db, over('t_dec', ['    batch_rows: 2']));
    await a.waitEvents(4);
    await idle();
    await a.stop();
    expect(a.cursors()).toEqual(['8.50', '9.50', '10.00', '10.25']);
    noQueryErrors(a);
    await db.exec('CREATE TABLE t_big (id bigint PRIMARY KEY, k bigint NOT NULL)');
    await db.exec('INSERT INTO t_big VALUES (1, 9007199254740992), (2, 9007199254740993), (3, 9007199254740994), (4, 9007199254740995)');
    const b = await run(db, over('t_big', ['    batch_rows: 2', '    initial_cursor: "9007199254740991"']));
    await b.waitEvents(4);
    await idle();
    await b.stop();
    expect(b.cursors()).toEqual(['9007199254740992', '9007199254740993', '9007199254740994', '9007199254740995']);
    expect(b.state()).toMatchObject({ cursor: '9007199254740995', kind: 'int' });
    noQueryErrors(b);
  }, 60_000);
});
