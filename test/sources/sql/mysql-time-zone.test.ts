/**
 * MariaDB (Debian's package, test/helpers/db-servers.ts) whose server time zone is not
 * UTC: a TIMESTAMP column comes back in the session's time zone, so the driver sets the
 * session to UTC, and the instant read is the instant stored.
 */
import { afterAll, beforeAll, expect, test } from 'vitest';
import { DB_PASSWORD, DB_USER, startMariadb, type DbServer } from '../../helpers/db-servers.js';
import { DRIVERS } from '../../../src/sources/sql/drivers.js';
import { parseDbUrl } from '../../../src/sources/sql/url.js';

let db: DbServer;

beforeAll(async () => {
  db = await startMariadb();
  // New sessions start in UTC+3 (as on a server whose system zone is local time).
  await db.exec(`SET GLOBAL time_zone = '+03:00'`);
  await db.exec('CREATE TABLE tz (id int PRIMARY KEY, ts TIMESTAMP(3) NULL)');
  // FROM_UNIXTIME is an instant whatever the session's zone: 2024-01-01T00:00:00Z.
  await db.exec('INSERT INTO tz VALUES (1, FROM_UNIXTIME(1704067200))');
}, 120_000);

afterAll(async () => {
  await db?.stop();
}, 120_000);

test('a TIMESTAMP reads back as the UTC instant stored, with a server time zone of +03:00', async () => {
  const conn = await DRIVERS.mysql.connect({
    target: parseDbUrl(db.url()),
    user: DB_USER,
    password: DB_PASSWORD,
    tls: { mode: 'disable' },
    connectTimeoutMs: 5000,
    queryTimeoutMs: 5000,
    applicationName: 'cefd test',
  });
  try {
    const rows = await conn.query('SELECT id, ts, @@global.time_zone AS g FROM tz WHERE id > ? ORDER BY id', [0]);
    expect(rows).toEqual([{ id: 1, ts: '2024-01-01T00:00:00.000Z', g: '+03:00' }]);
  } finally {
    await conn.close();
  }
}, 120_000);
