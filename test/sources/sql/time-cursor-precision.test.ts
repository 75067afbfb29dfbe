/**
 * A time cursor on columns finer than the millisecond (PostgreSQL `timestamp`, MariaDB
 * `DATETIME(6)`), against the real servers (test/helpers/db-servers.ts): the driver reads
 * a row, the cursor moves to its time, a row later in the same millisecond commits, and
 * the next query's rows are planned as the source plans them (cursor.ts planBatch).
 */
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { DB_PASSWORD, DB_USER, startMariadb, startPostgres, type DbServer } from '../../helpers/db-servers.js';
import { DRIVERS } from '../../../src/sources/sql/drivers.js';
import { parseDbUrl } from '../../../src/sources/sql/url.js';
import { buildQuery } from '../../../src/sources/sql/query.js';
import { cursorOf, cursorParam, initialState, planBatch, type Cursor } from '../../../src/sources/sql/cursor.js';

// The last column: what the time literals end with (timestamptz: the offset, not the session's zone).
const cases: [string, () => Promise<DbServer>, string, string, string][] = [
  ['PostgreSQL timestamp', startPostgres, 'CREATE TABLE ev (id int PRIMARY KEY, t timestamp(6) NOT NULL)', 'SELECT id, t FROM ev WHERE t > @p1 ORDER BY t', ''],
  ['PostgreSQL timestamptz', startPostgres, 'CREATE TABLE ev (id int PRIMARY KEY, t timestamptz(6) NOT NULL)', 'SELECT id, t FROM ev WHERE t > @p1 ORDER BY t', '+00'],
  ['MariaDB DATETIME(6)', startMariadb, 'CREATE TABLE ev (id int PRIMARY KEY, t DATETIME(6) NOT NULL)', 'SELECT id, t FROM ev WHERE t > @p1 ORDER BY t', ''],
];

for (const [name, start, create, query, zone] of cases) {
  describe(name, () => {
    let db: DbServer;
    beforeAll(async () => {
      db = await start();
      await db.exec(create);
    }, 120_000);
    afterAll(async () => {
      await db?.stop();
    }, 120_000);

    test('a row later in the same millisecond as the cursor is read, and the one at the cursor not again', async () => {
      const target = parseDbUrl(db.url());
      const conn = await DRIVERS[target.driver].connect({ target, user: DB_USER, password: DB_PASSWORD, tls: { mode: 'disable' }, connectTimeoutMs: 10_000, queryTimeoutMs: 10_000, applicationName: 'cefd test' });
      const poll = async (cursor: Cursor) => {
        const q = buildQuery(query, target.driver, 100);
        const rows = await conn.query(q.text, new Array<string | number>(q.occurrences).fill(cursorParam(cursor)));
        const cursors = rows.map((r) => cursorOf(r['t'])!);
        const plan = planBatch({ state: initialState('db', cursor), cursors, full: false, gapWaitMs: 0, nowMs: 0, gaps: new Map() });
        if (plan.kind !== 'ok') throw new Error(`plan ${plan.kind}`);
        return { ids: plan.emit.map((i) => rows[i]!['id']), cursor: plan.cursor, rows };
      };
      try {
        await db.exec(`INSERT INTO ev VALUES (1, '2024-01-01 10:00:00.123100${zone}')`);
        const a = await poll('1970-01-01T00:00:00.000Z');
        expect(a.ids).toEqual([1]);
        expect(a.rows[0]!['t']).toBe('2024-01-01T10:00:00.123100Z');
        // Committed after the first poll, in the same millisecond, later in the database.
        await db.exec(`INSERT INTO ev VALUES (2, '2024-01-01 10:00:00.123900${zone}')`);
        await db.exec(`INSERT INTO ev VALUES (3, '2024-01-01 10:00:00.500000${zone}')`);
        const b = await poll(a.cursor);
        expect(b.ids).toEqual([2, 3]);
        // Times without digits below the millisecond read as before.
        expect(b.rows.at(-1)!['t']).toBe('2024-01-01T10:00:00.500Z');
        const c = await poll(b.cursor);
        expect(c.ids).toEqual([]);
      } finally {
        await conn.close();
      }
    }, 120_000);
  });
}
