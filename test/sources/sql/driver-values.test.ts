/**
 * What the drivers (src/sources/sql/drivers.ts) make of values and lost connections,
 * against real PostgreSQL and MariaDB servers (test/helpers/db-servers.ts), in a process
 * whose local time zone is not UTC:
 * - PostgreSQL times a Date cannot hold (`infinity`, year 12000) stay as the server's
 *   text instead of failing the query (timestamptz) or becoming null (timestamp), and a
 *   DateStyle set for the database does not change what the driver reads (it pins ISO);
 * - a `date` is midnight UTC whatever the daemon's zone; `bigint` is a number when it fits;
 * - a connection the server dropped is a `connect` error on every later query too.
 */
process.env['TZ'] = 'Europe/Berlin';

import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { DB_PASSWORD, DB_USER, startMariadb, startPostgres, type DbServer } from '../../helpers/db-servers.js';
import { DRIVERS, SqlError, type SqlConnection } from '../../../src/sources/sql/drivers.js';
import { parseDbUrl } from '../../../src/sources/sql/url.js';
import { idle, startSource } from './in-process.js';

function connect(url: string): Promise<SqlConnection> {
  const target = parseDbUrl(url);
  return DRIVERS[target.driver].connect({ target, user: DB_USER, password: DB_PASSWORD, tls: { mode: 'disable' }, connectTimeoutMs: 10_000, queryTimeoutMs: 10_000, applicationName: 'cefd test' });
}

/** The reasons of the errors of `n` queries on `conn`. */
async function reasons(conn: SqlConnection, sql: string, n: number): Promise<string[]> {
  const out: string[] = [];
  for (let i = 0; i < n; i++) {
    try {
      await conn.query(sql, []);
      out.push('ok');
    } catch (e) {
      out.push(e instanceof SqlError ? `${e.reason}: ${e.message}` : `not a SqlError: ${String(e)}`);
    }
  }
  return out;
}

describe('PostgreSQL', () => {
  let db: DbServer;
  beforeAll(async () => {
    db = await startPostgres();
    // A database whose sessions default to another DateStyle (as a DBA may set it).
    await db.exec('CREATE DATABASE kav_sql_style');
    await db.exec(`ALTER DATABASE kav_sql_style SET DateStyle = 'SQL, DMY'`);
  }, 120_000);
  afterAll(async () => {
    await db?.stop();
  }, 120_000);

  test('the process runs in a zone other than UTC', () => {
    expect(new Date(Date.UTC(2024, 0, 1)).getHours()).toBe(1);
  });

  test('timestamptz infinity and a DateStyle of the database: read, not a failed query', async () => {
    const conn = await connect(db.url().replace(/\/kav$/, '/kav_sql_style'));
    try {
      await conn.query('CREATE TABLE tz (id int PRIMARY KEY, t timestamptz, u timestamp)', []);
      await conn.query(`INSERT INTO tz VALUES (1, '2024-01-02 10:00:00.123456+00', '2024-01-02 10:00:00.5'), (2, 'infinity', 'infinity'), (3, '-infinity', '12000-01-01 00:00:00')`, []);
      const rows = await conn.query('SELECT id, t, u FROM tz ORDER BY id', []);
      expect([...rows]).toEqual([
        { id: 1, t: '2024-01-02T10:00:00.123456Z', u: '2024-01-02T10:00:00.500Z' },
        { id: 2, t: 'infinity', u: 'infinity' },
        { id: 3, t: '-infinity', u: '12000-01-01 00:00:00' },
      ]);
      expect(rows.kinds).toEqual({ id: 'int', t: 'time', u: 'time' });
    } finally {
      await conn.close();
    }
  }, 60_000);

  test('a time cursor over a row at infinity: every row, no error', async () => {
    await db.exec('CREATE TABLE tinf (id int PRIMARY KEY, k timestamptz NOT NULL)');
    await db.exec(`INSERT INTO tinf VALUES (1, '2024-01-01 00:00:00+00'), (2, '2024-01-02 00:00:00+00'), (3, 'infinity')`);
    const s = await startSource(db.url(), [
      `    query: 'SELECT id, k FROM tinf WHERE k > @p1 ORDER BY k'`,
      '    cursor_column: k',
      '    id_column: id',
      `    latest_query: 'SELECT MAX(k) FROM tinf'`,
      '    initial_cursor: "1970-01-01T00:00:00Z"',
      '    normalizers: []',
    ]);
    try {
      await s.waitEvents(3);
      await idle();
      expect(s.cursors()).toEqual(['2024-01-01T00:00:00.000Z', '2024-01-02T00:00:00.000Z', 'infinity']);
      expect(s.errors()).toEqual([]);
    } finally {
      await s.stop();
    }
  }, 60_000);

  test('date is midnight UTC in any local zone; bigint a number when it fits', async () => {
    const conn = await connect(db.url());
    try {
      const rows = await conn.query(`SELECT date '2024-01-01' AS d, 42::int8 AS small, 9007199254740993::int8 AS big, (-9007199254740991)::int8 AS low`, []);
      expect([...rows]).toEqual([{ d: '2024-01-01T00:00:00.000Z', small: 42, big: '9007199254740993', low: -9007199254740991 }]);
      // A date cursor binds back as the same day.
      const again = await conn.query('SELECT 1 AS one WHERE $1::date = $2::date', ['2024-01-01T00:00:00.000Z', '2024-01-01']);
      expect(again.length).toBe(1);
    } finally {
      await conn.close();
    }
  }, 60_000);

  test('a connection the server ended: a connect error, and on every later query', async () => {
    const conn = await connect(db.url());
    try {
      const [{ pid }] = (await conn.query('SELECT pg_backend_pid() AS pid', [])) as unknown as [{ pid: number }];
      await db.exec(`SELECT pg_terminate_backend(${pid})`);
      await new Promise((r) => setTimeout(r, 200));
      const got = await reasons(conn, 'SELECT 1', 3);
      expect(got.filter((r) => !r.startsWith('connect:'))).toEqual([]);
      expect(got.some((r) => /not queryable/.test(r))).toBe(true);
    } finally {
      await conn.close();
    }
  }, 60_000);
});

describe('MariaDB', () => {
  let db: DbServer;
  beforeAll(async () => {
    db = await startMariadb();
  }, 120_000);
  afterAll(async () => {
    await db?.stop();
  }, 120_000);

  test('DATE is midnight UTC in any local zone, as PostgreSQL\'s', async () => {
    const conn = await connect(db.url());
    try {
      const rows = await conn.query(`SELECT DATE '2024-01-01' AS d, CAST(42 AS SIGNED) AS small`, []);
      expect([...rows]).toEqual([{ d: '2024-01-01T00:00:00.000Z', small: 42 }]);
      expect(rows.kinds).toEqual({ d: 'time', small: 'int' });
    } finally {
      await conn.close();
    }
  }, 60_000);

  test('a connection the server killed: a connect error, and on every later query', async () => {
    const conn = await connect(db.url());
    try {
      const [{ id }] = (await conn.query('SELECT CONNECTION_ID() AS id', [])) as unknown as [{ id: number }];
      await db.exec(`KILL ${id}`);
      await new Promise((r) => setTimeout(r, 200));
      const got = await reasons(conn, 'SELECT 1', 3);
      expect(got.filter((r) => !r.startsWith('connect:'))).toEqual([]);
      expect(got.some((r) => /closed state/.test(r))).toBe(true);
    } finally {
      await conn.close();
    }
  }, 60_000);
});
