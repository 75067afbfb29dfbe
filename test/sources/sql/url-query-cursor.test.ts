/**
 * The sql source without a server: KUMA's URL forms (SQL Server included), the query as
 * each driver runs it, the mapping of values and parameters, and the cursor planning
 * (equal values, out-of-order inserts).
 */
import { describe, expect, test, vi } from 'vitest';
import { buildQuery, countPlaceholders, defaultQuery, hasOrderBy, orderByProblem } from '../../../src/sources/sql/query.js';
import { parseDbUrl, redactUrl, sameDatabase } from '../../../src/sources/sql/url.js';
import { classify, closeTedious, mssqlConfig, mssqlParamType, mssqlTime, toJsonValue } from '../../../src/sources/sql/drivers.js';
import { bindCursor, compareCursor, cursorOf, cursorParam, idsGivenUp, initialState, orderCursor, planBatch, readState, sameCursorKind, writeState } from '../../../src/sources/sql/cursor.js';
import { loadConfigText, ConfigError } from '../../../src/config/load.js';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { Registry } from 'prom-client';
import { sqlMetrics } from '../../../src/sources/sql/metrics.js';
import { EventEmitter } from 'node:events';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

describe('URLs', () => {
  test('redaction hides the whole password, even with @ or / in it', () => {
    expect(redactUrl('postgres://cefd:p@ssw0rd@db.example:5432/kav')).toBe('postgres://cefd:***@db.example:5432/kav');
    expect(parseDbUrl('postgres://cefd:p@ssw0rd@db.example:5432/kav')).toMatchObject({ password: 'p@ssw0rd', host: 'db.example', redacted: 'postgres://cefd:***@db.example:5432/kav' });
    expect(redactUrl('postgres://cefd:pa/ss@db.example/kav')).toBe('postgres://cefd:***@db.example/kav');
    expect(redactUrl('postgres://ce/fd:pass@db.example/kav')).toBe('postgres://***@db.example/kav');
    expect(redactUrl('postgres://cefd@db.example/kav')).toBe('postgres://cefd@db.example/kav');
    expect(redactUrl('postgres://db.example/kav')).toBe('postgres://db.example/kav');
    expect(redactUrl('cefd:secret@db')).toBe('***');
    // Config errors about such URLs never echo a piece of the password.
    for (const url of ['postgres://cefd:se/cret@db.example/kav', 'postgres://cefd:12/secret@db.example/kav', 'mysql://cefd:sec?ret@db.example/kav', 'postgres://cefd:se#cret@db.example/kav']) {
      let msg = '';
      try {
        loadConfigText(`sql_sources:\n  - name: ksc\n    url: "${url}"\n    latest_query: ""\n`, 'c.yaml', {});
      } catch (e) {
        msg = (e as Error).message;
      }
      for (const piece of ['cret', 'se/', '12/', 'sec?']) expect(msg).not.toContain(piece);
    }
  });
  test('a password in the query (go-mssqldb\'s `password`, libpq\'s) is used and never shown', () => {
    const t = parseDbUrl('sqlserver://kscdb.example.com:1433?database=KAV&user%20id=sa&password=S3cr%3Bt&encrypt=false');
    expect(t).toMatchObject({ user: 'sa', password: 'S3cr;t', database: 'KAV' });
    expect(t.redacted).toBe('sqlserver://kscdb.example.com:1433?database=KAV&user%20id=sa&password=***&encrypt=false');
    expect(redactUrl('postgres://cefd@db.example/kav?sslmode=require&password=S3cret')).toBe('postgres://cefd@db.example/kav?sslmode=require&password=***');
    expect(redactUrl('postgres://cefd:pw@db.example/kav?PWD=S3cret#x')).toBe('postgres://cefd:***@db.example/kav?PWD=***#x');
    // The userinfo's password wins over the query's.
    expect(parseDbUrl('postgres://cefd:pw@db.example/kav?password=other').password).toBe('pw');
    for (const url of ['sqlserver://h?password=S3cret', 'mysql://u@h/db?a=1&password=S3cret']) expect(redactUrl(url)).not.toContain('S3cret');
  });
  test("KUMA's recommended SQL Server form", () => {
    const t = parseDbUrl('sqlserver://kuma:S3cr%40t@kscdb.example.com:1433/SQLEXPRESS?database=KAV');
    expect(t).toMatchObject({ driver: 'mssql', host: 'kscdb.example.com', port: 1433, portGiven: true, instance: 'SQLEXPRESS', database: 'KAV', user: 'kuma', password: 'S3cr@t' });
    expect(t.domain).toBeUndefined();
    expect(t.redacted).toBe('sqlserver://kuma:***@kscdb.example.com:1433/SQLEXPRESS?database=KAV');
    // With a port the instance is not connected to: no part of the identity (earlier versions' form still matches).
    expect(t.identity).toBe('mssql://kscdb.example.com:1433/KAV');
    expect(t.formerIdentity).toBe('mssql://kscdb.example.com:1433/SQLEXPRESS/KAV');
  });
  test('the identity of a SQL Server database: names without case, an instance beside a port ignored; old cursor files still match', () => {
    const id = (u: string) => parseDbUrl(u).identity;
    // Forms that worked before keep their identity (event ids, cursor files).
    expect(id('sqlserver://u:p@KscDB:1433?database=KAV')).toBe('mssql://kscdb:1433/KAV');
    expect(id('sqlserver://u:p@ksc/SQLEXPRESS')).toBe('mssql://ksc:1433/SQLEXPRESS/KAV');
    expect(id('postgres://u:p@db:5432/Kav')).toBe('postgres://db:5432/Kav');
    expect(parseDbUrl('postgres://u:p@db:5432/Kav').formerIdentity).toBeUndefined();
    // One database, however its name is cased or an ignored instance is added.
    for (const u of ['sqlserver://u:p@kscdb:1433?database=kav', 'sqlserver://u:p@kscdb:1433?database=Kav', 'sqlserver://u:p@kscdb:1433/SQLEXPRESS?database=KAV', 'sqlserver://u:p@kscdb:1433/sqlexpress?database=kav']) {
      expect(id(u)).toBe('mssql://kscdb:1433/KAV');
    }
    // A cursor file an earlier version wrote for the same URL is this database's.
    const t = parseDbUrl('sqlserver://u:p@kscdb:1433/SQLEXPRESS?database=kav');
    expect(sameDatabase(t, 'mssql://kscdb:1433/SQLEXPRESS/kav')).toBe(true);
    expect(sameDatabase(t, 'mssql://kscdb:1433/KAV')).toBe(true);
    expect(sameDatabase(t, 'mssql://kscdb:1433/OTHER')).toBe(false);
    // Another host name is another database (docs/sql-source.md).
    expect(sameDatabase(parseDbUrl('postgres://u:p@localhost:5432/kav'), 'postgres://127.0.0.1:5432/kav')).toBe(false);
  });
  test('a domain login written domain%5Cuser logs in with NTLM', () => {
    const t = parseDbUrl('sqlserver://CORP%5Csvc-kuma:pw@ksc.example.com:1433/SQLEXPRESS?database=KAV');
    expect(t.domain).toBe('CORP');
    expect(t.user).toBe('svc-kuma');
    const c = mssqlConfig({ target: t, user: t.user, password: t.password, tls: { mode: 'default' }, connectTimeoutMs: 1000, queryTimeoutMs: 2000, applicationName: 'x' });
    expect(c['authentication']).toEqual({ type: 'ntlm', options: { userName: 'svc-kuma', password: 'pw', domain: 'CORP' } });
    const o = c['options'] as Record<string, unknown>;
    // A port and an instance: tedious takes one; the port wins.
    expect(o['port']).toBe(1433);
    expect(o['instanceName']).toBeUndefined();
    expect(o['database']).toBe('KAV');
    expect(o['requestTimeout']).toBe(2000);
    expect(o['useUTC']).toBe(true);
    expect(o['encrypt']).toBe(true);
    expect(o['trustServerCertificate']).toBe(false);
  });
  test('SQL Server without a port goes through the instance name; without database, KAV', () => {
    const t = parseDbUrl('sqlserver://u:p@ksc/SQLEXPRESS?encrypt=false');
    expect(t.database).toBe('KAV');
    const o = mssqlConfig({ target: t, tls: { mode: 'default' }, connectTimeoutMs: 1, queryTimeoutMs: 1, applicationName: 'x' })['options'] as Record<string, unknown>;
    expect(o['instanceName']).toBe('SQLEXPRESS');
    expect(o['port']).toBeUndefined();
    expect(o['encrypt']).toBe(false);
    const o2 = mssqlConfig({ target: parseDbUrl('sqlserver://u:p@ksc:1433?TrustServerCertificate=true'), tls: { mode: 'default' }, connectTimeoutMs: 1, queryTimeoutMs: 1, applicationName: 'x' })['options'] as Record<string, unknown>;
    expect(o2['trustServerCertificate']).toBe(true);
  });
  test('postgres and mysql forms', () => {
    expect(parseDbUrl('postgresql://a:b@[::1]/kav?sslmode=require')).toMatchObject({ driver: 'postgres', host: '::1', port: 5432, database: 'kav' });
    expect(parseDbUrl('mariadb://a@db:3307/kav')).toMatchObject({ driver: 'mysql', port: 3307, database: 'kav', user: 'a', password: undefined });
  });
  test('bad URLs: clear errors without the password', () => {
    for (const [u, msg] of [
      ['oracle://u:topsecret@h/db', 'unsupported scheme'],
      ['postgres://u:topsecret@h', 'no database'],
      ['not a url topsecret', 'not a URL'],
      ['mysql://u:topsecret@h/a/b', 'must be a database name'],
    ] as const) {
      let m = '';
      try {
        parseDbUrl(u);
      } catch (e) {
        m = (e as Error).message;
      }
      expect(m).toContain(msg);
      expect(m).not.toContain('topsecret');
    }
    expect(redactUrl('postgres://u:p%40ss@h/db')).toBe('postgres://u:***@h/db');
  });
});

describe('queries', () => {
  const q = 'SELECT nId, wstrPar1 FROM v WHERE nId > @p1 AND wstrPar1 <> \'@p1\' -- @p1\nORDER BY nId;';
  test('@p1 per driver, outside quotes and comments, with the row limit', () => {
    expect(countPlaceholders(q)).toBe(1);
    expect(buildQuery(q, 'postgres', 500).text).toBe("SELECT nId, wstrPar1 FROM v WHERE nId > $1 AND wstrPar1 <> '@p1' -- @p1\nORDER BY nId\nLIMIT 500");
    expect(buildQuery(q, 'mysql', 500).text).toBe("SELECT nId, wstrPar1 FROM v WHERE nId > ? AND wstrPar1 <> '@p1' -- @p1\nORDER BY nId\nLIMIT 500");
    expect(buildQuery(q, 'mssql', 500).text).toBe("SELECT nId, wstrPar1 FROM v WHERE nId > @p1 AND wstrPar1 <> '@p1' -- @p1\nORDER BY nId\nOFFSET 0 ROWS FETCH NEXT 500 ROWS ONLY");
    const two = buildQuery('SELECT 1 WHERE a > @p1 OR b > @P1 ORDER BY a', 'mysql', 1);
    expect(two.occurrences).toBe(2);
    expect(two.text).toBe('SELECT 1 WHERE a > ? OR b > ? ORDER BY a\nLIMIT 1');
    expect(countPlaceholders('SELECT @p10 FROM [x@p1] ORDER BY a')).toBe(0);
    expect(hasOrderBy('SELECT 1 /* order by */')).toBe(false);
  });
  test('the query must end with ORDER BY the cursor column, ascending, and nothing after it', () => {
    const ok = [
      'SELECT nId FROM v WHERE nId > @p1 ORDER BY nId',
      'SELECT nId FROM v WHERE nId > @p1 ORDER BY e.nId ASC;',
      'SELECT "nId" FROM v WHERE "nId" > @p1 ORDER BY e."nId" ASC -- newest last; order by nothing else\n',
      'SELECT nId FROM v WHERE nId > @p1 ORDER BY [nId], tmRiseTime DESC',
      "SELECT nId FROM v WHERE nId > @p1 ORDER BY nId, f('limit 1')",
      'SELECT a AS nId FROM v WHERE a > @p1 ORDER BY a',
      'SELECT nId FROM (SELECT nId FROM v ORDER BY x DESC LIMIT 9) t WHERE nId > @p1 ORDER BY nid',
    ];
    for (const q of ok) expect(orderByProblem(q, 'nId'), q).toBeNull();
    for (const d of ['mssql', 'postgres', 'mysql'] as const) expect(orderByProblem(defaultQuery(d), 'nId')).toBeNull();
    const bad: [string, RegExp][] = [
      ['SELECT nId, tmRiseTime FROM v_akpub_ev_event WHERE nId > @p1 ORDER BY tmRiseTime DESC LIMIT 10', /remove the LIMIT/],
      ['SELECT nId FROM v WHERE nId > @p1 ORDER BY nId DESC', /orders by nId DESC.*ORDER BY nId ASC/],
      ['SELECT nId FROM v WHERE nId > @p1 ORDER BY tmRiseTime', /sorts by tmRiseTime, not by the cursor column/],
      ['SELECT nId FROM v WHERE nId > @p1 ORDER BY nId OFFSET 0 ROWS FETCH NEXT 5 ROWS ONLY', /remove the OFFSET/],
      ['SELECT nId FROM (SELECT nId FROM v ORDER BY nId) t WHERE nId > @p1', /must end with ORDER BY nId/],
      ['SELECT 1 /* order by nId */', /must end with ORDER BY nId/],
    ];
    for (const [q, m] of bad) expect(orderByProblem(q, 'nId'), q).toMatch(m);
    // cefd validate refuses it, at the query's line.
    const y = `sql_sources:\n  - name: ksc\n    url: "sqlserver://u:pw@ksc:1433?database=KAV"\n    latest_query: ""\n    query: "${bad[0]![0]}"\n`;
    expect(() => loadConfigText(y, 'c.yaml', {})).toThrow(/c\.yaml:5: sql_sources\[0\]\.query: the query must end with ORDER BY nId .*remove the LIMIT/);
  });
  test('the default query: events LEFT JOIN hosts, by nId', () => {
    for (const d of ['mssql', 'postgres', 'mysql'] as const) {
      const text = defaultQuery(d);
      expect(countPlaceholders(text)).toBe(1);
      expect(hasOrderBy(text)).toBe(true);
      expect(text).toMatch(/LEFT JOIN/);
    }
    expect(defaultQuery('mssql')).toContain('FROM v_akpub_ev_event e\nLEFT JOIN v_akpub_host h ON h.nId = e.nHostId');
  });
});

describe('values', () => {
  test('rows become JSON scalars; SQL Server parameters typed', () => {
    expect(toJsonValue(new Date(Date.UTC(2024, 4, 6, 9, 14, 27)))).toBe('2024-05-06T09:14:27.000Z');
    expect(toJsonValue(12n)).toBe(12);
    expect(toJsonValue(2n ** 60n)).toBe('1152921504606846976');
    expect(toJsonValue(Buffer.from('hi'))).toBe('aGk=');
    expect(toJsonValue(undefined)).toBeNull();
    expect(toJsonValue(Number.NaN)).toBe('NaN');
    expect(mssqlParamType(5)).toBe('BigInt');
    // An integer beyond 2^53 is bound as a bigint (cursor.ts bindCursor); text is text, whatever it looks like.
    expect(mssqlParamType(9007199254740993n)).toBe('BigInt');
    expect(mssqlParamType('0042')).toBe('NVarChar');
    expect(mssqlParamType('2024-05-06T09:14:27.000Z')).toBe('NVarChar');
    expect(cursorParam('42')).toBe(42);
    expect(cursorParam('9007199254740993')).toBe('9007199254740993');
  });
  test('SQL Server times keep the digits below the millisecond tedious reads (nanosecondsDelta)', () => {
    const at = (ms: number, delta?: number) => {
      const d = new Date(Date.UTC(2024, 0, 1, 10, 0, 0, ms));
      if (delta !== undefined) Object.defineProperty(d, 'nanosecondsDelta', { enumerable: false, value: delta });
      return d;
    };
    // datetime2(7) .1234567 as tedious builds it: 123 ms and 4567 × 100 ns.
    expect(mssqlTime(at(123, 4567 / 1e7))).toBe('2024-01-01T10:00:00.1234567Z');
    // Microseconds as PostgreSQL and MariaDB times are written (drivers.ts preciseTime).
    expect(mssqlTime(at(123, 9000 / 1e7))).toBe('2024-01-01T10:00:00.123900Z');
    expect(mssqlTime(at(123, 0.0001))).toBe('2024-01-01T10:00:00.123100Z');
    // Nothing below the millisecond, or a datetime (no nanosecondsDelta): the Date as it is.
    expect(toJsonValue(mssqlTime(at(123, 0)))).toBe('2024-01-01T10:00:00.123Z');
    expect(toJsonValue(mssqlTime(at(123)))).toBe('2024-01-01T10:00:00.123Z');
    // Ordered as times against the millisecond form: a row at .1239 is after a cursor at .123.
    expect(orderCursor(mssqlTime(at(123, 9000 / 1e7)) as string, '2024-01-01T10:00:00.123Z', 'time')).toBe(1);
  });
  test('closing a tedious connection settles when tedious closed it already, and never waits forever', async () => {
    const fake = (closed: boolean, endOnClose: boolean) => {
      const e = new EventEmitter() as EventEmitter & { closed: boolean; close(): void; calls: number };
      e.closed = closed;
      e.calls = 0;
      e.close = () => {
        e.calls++;
        if (endOnClose) setImmediate(() => e.emit('end'));
      };
      return e;
    };
    // Lost mid-query: tedious emitted `end` then and will not again.
    // Settled before anything a timer could do: no wait for an `end` that never comes.
    const settledAtOnce = (p: Promise<unknown>) => Promise.race([p.then(() => 'settled'), new Promise((r) => setImmediate(() => r('pending')))]);
    const lost = fake(true, false);
    expect(await settledAtOnce(closeTedious(lost, 60_000))).toBe('settled');
    expect(lost.calls).toBe(0);
    const open = fake(false, true);
    await closeTedious(open, 60_000);
    expect(open.calls).toBe(1);
    // No `end` at all: settled by its own limit (fake time: no timing in the test).
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    try {
      const stuck = fake(false, false);
      let done = false;
      const p = closeTedious(stuck, 200).then(() => (done = true));
      await vi.advanceTimersByTimeAsync(199);
      expect(done).toBe(false);
      await vi.advanceTimersByTimeAsync(1);
      await p;
      expect(done).toBe(true);
    } finally {
      vi.useRealTimers();
    }
  });
  test('driver errors sorted into reasons', () => {
    expect(classify({ code: '28P01', message: 'password authentication failed' }).reason).toBe('auth');
    expect(classify({ code: 'ELOGIN', message: "Login failed for user 'x'" }).reason).toBe('auth');
    expect(classify({ code: 'ER_ACCESS_DENIED_ERROR', errno: 1045, message: 'Access denied' }).reason).toBe('auth');
    expect(classify({ code: '57014', message: 'canceling statement due to statement timeout' }).reason).toBe('timeout');
    expect(classify({ code: 'ETIMEOUT', message: 'Timeout: Request failed to complete in 2000ms' }).reason).toBe('timeout');
    expect(classify({ code: 'ECONNREFUSED', message: 'connect ECONNREFUSED' }).reason).toBe('connect');
    expect(classify({ code: '42P01', message: 'relation "v" does not exist' }).reason).toBe('query');
    expect(classify({ code: 'EREQUEST', message: "Invalid object name 'v'" }).reason).toBe('query');
    expect(classify(new Error('Client has encountered a connection error and is not queryable')).reason).toBe('connect');
    expect(classify(new Error("Can't add new command when connection is in closed state")).reason).toBe('connect');
  });
});

describe('cursor planning', () => {
  const gaps = () => new Map<string, number>();
  test('integers compare as numbers of any size, times as text', () => {
    expect(compareCursor(9, '10')).toBe(-1);
    expect(compareCursor('9007199254740993', '9007199254740992')).toBe(1);
    expect(compareCursor('2024-01-02T00:00:00Z', '2024-01-01T23:00:00Z')).toBe(1);
    // Times of different precision (a driver writes digits below the millisecond only when there are some).
    expect(compareCursor('2024-01-01T10:00:00.123Z', '2024-01-01T10:00:00.1231Z')).toBe(-1);
    expect(compareCursor('2024-01-01T10:00:00Z', '2024-01-01T10:00:00.1Z')).toBe(-1);
    expect(compareCursor('2024-01-01T10:00:00.500Z', '2024-01-01T10:00:00.5Z')).toBe(0);
  });
  test('the cursor follows the last row; rows at or below it are not emitted again', () => {
    const p = planBatch({ state: initialState('d', 3), cursors: [2, 4, 5], full: false, gapWaitMs: 0, nowMs: 0, gaps: gaps() });
    expect(p).toEqual({ kind: 'ok', emit: [1, 2], cursor: 5, seen: [] });
  });
  test('a full batch ending inside a run of equal values holds the run back', () => {
    const t = ['2024-01-01T00:00:01Z', '2024-01-01T00:00:02Z', '2024-01-01T00:00:03Z', '2024-01-01T00:00:03Z'];
    expect(planBatch({ state: initialState('d', '2024'), cursors: t, full: true, gapWaitMs: 0, nowMs: 0, gaps: gaps() })).toEqual({ kind: 'ok', emit: [0, 1], cursor: t[1], seen: [] });
    expect(planBatch({ state: initialState('d', '2024'), cursors: [t[2]!, t[3]!], full: true, gapWaitMs: 0, nowMs: 0, gaps: gaps() })).toEqual({ kind: 'grow' });
    expect(planBatch({ state: initialState('d', '2024'), cursors: [t[2]!, t[3]!], full: false, gapWaitMs: 0, nowMs: 0, gaps: gaps() })).toMatchObject({ emit: [0, 1], cursor: t[2] });
  });
  test('a full batch with nothing to emit (a >= query at the cursor, then a held-back run) grows', () => {
    expect(planBatch({ state: initialState('d', 5), cursors: [5, 5, 6, 6], full: true, gapWaitMs: 0, nowMs: 0, gaps: gaps() })).toEqual({ kind: 'grow' });
    expect(planBatch({ state: initialState('d', 5), cursors: [5, 5, 6, 6, 7, 7, 8], full: true, gapWaitMs: 0, nowMs: 0, gaps: gaps() })).toEqual({ kind: 'ok', emit: [2, 3, 4, 5], cursor: 7, seen: [] });
    expect(planBatch({ state: initialState('d', 5), cursors: [5, 5], full: false, gapWaitMs: 0, nowMs: 0, gaps: gaps() })).toEqual({ kind: 'ok', emit: [], cursor: 5, seen: [] });
  });
  test('gap_wait: the ids a cursor moved over without a row, as ranges', () => {
    expect(idsGivenUp(2, 8, ['4', 5, 8, 1])).toEqual([{ first: 3n, last: 3n }, { first: 6n, last: 7n }]);
    expect(idsGivenUp(2, 5, [3, 4, 5])).toEqual([]);
    expect(idsGivenUp(5, 5, [])).toEqual([]);
    expect(idsGivenUp('9007199254740991', '9007199254740995', ['9007199254740993', '9007199254740995'])).toEqual([
      { first: 9007199254740992n, last: 9007199254740992n },
      { first: 9007199254740994n, last: 9007199254740994n },
    ]);
  });
  test('rows out of cursor order are refused', () => {
    expect(planBatch({ state: initialState('d', 0), cursors: [3, 2], full: false, gapWaitMs: 0, nowMs: 0, gaps: gaps() })).toEqual({ kind: 'unordered', at: 1 });
  });
  test('gap_wait: a gap holds the cursor; a late row is emitted once; the gap expires', () => {
    const g = gaps();
    const s0 = initialState('d', 0);
    const a = planBatch({ state: s0, cursors: [1, 2, 4, 5], full: false, gapWaitMs: 1000, nowMs: 0, gaps: g });
    expect(a).toEqual({ kind: 'ok', emit: [0, 1, 2, 3], cursor: 2, seen: ['4', '5'] });
    if (a.kind !== 'ok') return;
    // Row 3 commits late: read with 4 and 5 again, which are not emitted twice.
    const b = planBatch({ state: { ...s0, cursor: a.cursor, seen: a.seen }, cursors: [3, 4, 5], full: false, gapWaitMs: 1000, nowMs: 10, gaps: g });
    expect(b).toEqual({ kind: 'ok', emit: [0], cursor: 5, seen: [] });
    // A gap that never fills is given up after gap_wait.
    const g2 = gaps();
    const c = planBatch({ state: s0, cursors: [1, 3], full: false, gapWaitMs: 1000, nowMs: 0, gaps: g2 });
    expect(c).toMatchObject({ emit: [0, 1], cursor: 1, seen: ['3'] });
    if (c.kind !== 'ok') return;
    const st = { ...s0, cursor: c.cursor, seen: c.seen };
    expect(planBatch({ state: st, cursors: [3], full: false, gapWaitMs: 1000, nowMs: 500, gaps: g2 })).toEqual({ kind: 'ok', emit: [], cursor: 1, seen: ['3'] });
    expect(planBatch({ state: st, cursors: [3], full: false, gapWaitMs: 1000, nowMs: 1000, gaps: g2 })).toEqual({ kind: 'ok', emit: [], cursor: 3, seen: [] });
  });
  test('gap_wait also holds a gap in integer ids of a decimal column (pg numeric, SQL Server numeric(18,0) IDENTITY); not for fractions', () => {
    const s0 = initialState('d', '100', 'num');
    expect(planBatch({ state: s0, cursors: ['101', '102', '104'], kind: 'num', full: false, gapWaitMs: 30_000, nowMs: 0, gaps: gaps() })).toEqual({ kind: 'ok', emit: [0, 1, 2], cursor: 102, seen: ['104'] });
    expect(planBatch({ state: s0, cursors: ['100.5', '102', '104'], kind: 'num', full: false, gapWaitMs: 30_000, nowMs: 0, gaps: gaps() })).toMatchObject({ kind: 'ok', cursor: '104', seen: [] });
  });
  test('gap_wait: every gap waits from when it is first seen, in parallel; only a query that covered a gap gives it up', () => {
    const s0 = initialState('d', 0);
    const at = (cursor: number, seen: string[]) => ({ ...s0, cursor, seen });
    // Two gaps (3, 6) in one batch: both timers start now, and both expire together.
    const g = gaps();
    expect(planBatch({ state: s0, cursors: [1, 2, 4, 5, 7, 8], full: false, gapWaitMs: 1000, nowMs: 0, gaps: g })).toEqual({ kind: 'ok', emit: [0, 1, 2, 3, 4, 5], cursor: 2, seen: ['4', '5', '7', '8'] });
    expect([...g.keys()]).toEqual(['4', '7']);
    expect(planBatch({ state: at(2, ['4', '5', '7', '8']), cursors: [4, 5, 7, 8], full: false, gapWaitMs: 1000, nowMs: 1000, gaps: g })).toEqual({ kind: 'ok', emit: [], cursor: 8, seen: [] });
    expect(g.size).toBe(0);
    // A full batch from the cursor covers the gaps up to its last row only: gap 4 (above 3,
    // the last row) is not given up by it, expired or not; the next query from 3 does.
    const g2 = new Map([['2', 0], ['5', 0]]);
    expect(planBatch({ state: at(0, ['2', '3', '5', '6']), cursors: [2, 3], full: true, gapWaitMs: 1000, nowMs: 1000, gaps: g2 })).toEqual({ kind: 'ok', emit: [], cursor: 3, seen: ['5', '6'] });
    expect(planBatch({ state: at(3, ['5', '6']), cursors: [5, 6], full: true, gapWaitMs: 1000, nowMs: 1000, gaps: g2 })).toEqual({ kind: 'ok', emit: [], cursor: 6, seen: [] });
    // Reading ahead (from the largest id seen): new rows are emitted and their gaps timed,
    // but the expired gap below `from` was not covered by this query and holds the cursor.
    const g3 = new Map([['2', 0]]);
    expect(planBatch({ state: at(0, ['2']), cursors: [3, 5], full: false, gapWaitMs: 1000, nowMs: 1000, gaps: g3, from: '2' })).toEqual({ kind: 'ok', emit: [0, 1], cursor: 0, seen: ['2', '3', '5'] });
    expect(g3).toEqual(new Map([['2', 0], ['5', 1000]]));
    // A late row inside a gap (3 of 2-4) does not restart the wait for the rest of it.
    const g4 = gaps();
    expect(planBatch({ state: s0, cursors: [1, 5], full: false, gapWaitMs: 1000, nowMs: 0, gaps: g4 })).toMatchObject({ cursor: 1, seen: ['5'] });
    expect(planBatch({ state: at(1, ['5']), cursors: [3, 5], full: false, gapWaitMs: 1000, nowMs: 600, gaps: g4 })).toEqual({ kind: 'ok', emit: [0], cursor: 1, seen: ['3', '5'] });
    expect(planBatch({ state: at(1, ['3', '5']), cursors: [3, 5], full: false, gapWaitMs: 1000, nowMs: 1000, gaps: g4 })).toEqual({ kind: 'ok', emit: [], cursor: 5, seen: [] });
    // Integers beyond 2^53 stay exact; a seen list out of order (hand-edited) is sorted.
    const big = '9007199254740993';
    expect(planBatch({ state: at(1, ['5', '3']), cursors: [2, 3, 5, 6], full: false, gapWaitMs: 1000, nowMs: 0, gaps: gaps() })).toEqual({ kind: 'ok', emit: [0, 3], cursor: 3, seen: ['5', '6'] });
    expect(planBatch({ state: initialState('d', '9007199254740991'), cursors: [9007199254740992, big], kind: 'int', full: false, gapWaitMs: 1000, nowMs: 0, gaps: gaps() })).toEqual({ kind: 'ok', emit: [0, 1], cursor: big, seen: [] });
  });
  test('kinds: text is bound and kept as text, numbers ordered as decimals, text order left to the database', () => {
    expect(cursorParam('0042', 'text')).toBe('0042');
    expect(cursorParam('0', null)).toBe('0');
    expect(bindCursor('0', null)).toBe('0');
    expect(bindCursor('42', 'int')).toBe(42);
    expect(bindCursor('9007199254740993', 'int')).toBe(9007199254740993n);
    expect(bindCursor('8.50', 'num')).toBe('8.50');
    expect(cursorOf('0042', 'text')).toBe('0042');
    expect(cursorOf('42', 'int')).toBe(42);
    expect(orderCursor('9.5', '10', 'num')).toBe(-1);
    expect(orderCursor('10.00', 10, 'num')).toBe(0);
    expect(orderCursor('-0.5', '-0.25', 'num')).toBe(-1);
    expect(orderCursor('100.5', '99.999', 'num')).toBe(1);
    expect(orderCursor('B', 'a', 'text')).toBeUndefined();
    expect(orderCursor('a', 'a', 'text')).toBe(0);
    expect(orderCursor('infinity', '2024-01-01T00:00:00.000Z', 'time')).toBeUndefined();
    // Text in the database's order (an ICU collation: a, B, c) is not refused; decimals in order are not either.
    const ok = (cursors: string[], kind: 'text' | 'num') => planBatch({ state: initialState('d', '0', null), cursors, kind, full: false, gapWaitMs: 0, nowMs: 0, gaps: gaps() });
    expect(ok(['a', 'B', 'c'], 'text')).toEqual({ kind: 'ok', emit: [0, 1, 2], cursor: 'c', seen: [] });
    expect(ok(['8.5', '9.5', '10'], 'num')).toEqual({ kind: 'ok', emit: [0, 1, 2], cursor: '10', seen: [] });
    expect(ok(['10', '9.5'], 'num')).toEqual({ kind: 'unordered', at: 1 });
    // A text cursor: only the row equal to it (a >= query) is skipped; a run of equal text is held back.
    expect(planBatch({ state: initialState('d', 'b', 'text'), cursors: ['b', 'C', 'd', 'd'], kind: 'text', full: true, gapWaitMs: 0, nowMs: 0, gaps: gaps() })).toEqual({ kind: 'ok', emit: [1], cursor: 'C', seen: [] });
  });
  test('state file: kinds kept; a file written before kinds gets the kind its cursor had then', () => {
    const dir = mkdtempSync(join(tmpdir(), 'cefd-sqlstate-'));
    try {
      const f = join(dir, 'sql', 'ksc.json');
      writeState(f, initialState('db', '0042', 'text'));
      expect(readState(f)).toMatchObject({ cursor: '0042', kind: 'text' });
      writeState(f, initialState('db', '0', null));
      expect(readState(f)).toMatchObject({ cursor: '0', kind: null });
      for (const [cursor, kind] of [[4, 'int'], ['9007199254740993', 'int'], [8.5, 'num'], ['2024-01-01T00:00:00.000Z', 'time'], ['abc', 'text']] as const) {
        writeFileSync(f, JSON.stringify({ version: 1, database: 'db', epoch: 0, cursor, seen: [] }));
        expect(readState(f)).toMatchObject({ cursor, kind });
      }
      writeFileSync(f, JSON.stringify({ version: 1, database: 'db', epoch: 0, cursor: 1, kind: 'float', seen: [] }));
      expect(() => readState(f)).toThrow();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
  test('state file: written whole, read back, refused when damaged', () => {
    const dir = mkdtempSync(join(tmpdir(), 'cefd-sqlstate-'));
    try {
      const f = join(dir, 'sql', 'ksc.json');
      expect(readState(f)).toBeNull();
      writeState(f, { ...initialState('db', 7), seen: ['9'] });
      expect(readState(f)).toMatchObject({ version: 1, database: 'db', epoch: 0, cursor: 7, seen: ['9'] });
      writeFileSync(f, '{"version":1');
      expect(() => readState(f)).toThrow();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('metrics', () => {
  test('a source that stopped leaves the metrics once no source of its name holds them', async () => {
    const reg = new Registry();
    const a = sqlMetrics(reg, 'gone');
    a.stats.up = 1;
    a.duration.observe({ source: 'gone' }, 0.01);
    const b1 = sqlMetrics(reg, 'kept');
    b1.stats.up = 1;
    // A reload that starts the new source of a name before the old one has stopped.
    const b2 = sqlMetrics(reg, 'kept');
    expect(b2.stats).toBe(b1.stats);
    expect(await reg.metrics()).toContain('cefd_sql_up{source="gone"} 1');
    a.release();
    b1.release();
    b1.release();
    const text = await reg.metrics();
    expect(text).not.toContain('source="gone"');
    expect(text).toContain('cefd_sql_up{source="kept"} 1');
  });
});

describe('configuration', () => {
  test('cross-checks of listeners and outputs name the line too', () => {
    const y = 'listeners:\n  - { name: a, type: tcp, host: 127.0.0.1, port: 5514 }\n  - { name: b, type: tcp, host: 127.0.0.1, port: 5514 }\noutputs:\n  - name: dead_letter\n    type: stdout\n';
    expect(() => loadConfigText(y, 'c.yaml', {})).toThrow(/c\.yaml:3: listeners\[1\]\.port: tcp port 5514/);
    expect(() => loadConfigText(y, 'c.yaml', {})).toThrow(/c\.yaml:5: outputs\[0\]\.name: "dead_letter"/);
  });
  test('batch_rows is capped at 100,000 (a batch is held in memory)', () => {
    const y = (n: number) => `sql_sources:\n  - name: ksc\n    url: "sqlserver://kuma:pw@ksc:1433/SQLEXPRESS?database=KAV"\n    batch_rows: ${n}\n`;
    expect(() => loadConfigText(y(100_000), 'c.yaml', {})).not.toThrow();
    expect(() => loadConfigText(y(100_001), 'c.yaml', {})).toThrow(/c\.yaml:4: sql_sources\[0\]\.batch_rows/);
  });
  const yaml = (extra: string) => `sql_sources:\n  - name: ksc\n    url: "sqlserver://kuma:pw@ksc:1433/SQLEXPRESS?database=KAV"\n${extra}`;
  test('defaults; the URL is a secret', () => {
    const c = loadConfigText(yaml(''), undefined, {});
    expect(c.sql_sources[0]).toMatchObject({ cursor_column: 'nId', initial_cursor: '0', poll_interval: 10, batch_rows: 1000, normalizers: ['ksc_sql'], gap_wait: 0 });
  });
  test('a sql source can be named as a trusted KSC origin', () => {
    const base = yaml('listeners: []\nksc:\n  trusted_sources: [{ connection: main, listeners: [LISTENER] }]\n');
    expect(() => loadConfigText(base.replace('LISTENER', 'ksc'), undefined, {})).not.toThrow();
    expect(() => loadConfigText(base.replace('LISTENER', 'nope'), undefined, {})).toThrow(/no listener named "nope"/);
  });
  test('a cursor column the query returns under another case is refused', () => {
    const pg = `sql_sources:\n  - name: ksc\n    url: "postgres://u:pw@db:5432/kav"\n`;
    expect(() => loadConfigText(`${pg}    cursor_column: nid\n    latest_query: ""\n`, 'c.yaml', {})).toThrow(/c\.yaml:4.*"nId"/s);
    expect(() => loadConfigText(`${pg}    cursor_column: nope\n    latest_query: ""\n`, 'c.yaml', {})).toThrow(/default query reads and orders by nId/);
    const q = `${pg}    query: 'SELECT * FROM v WHERE "nId" > @p1 ORDER BY "nId"'\n    latest_query: ""\n    id_column: nId\n`;
    expect(() => loadConfigText(`${q}    cursor_column: NID\n`, 'c.yaml', {})).toThrow(/quotes the column as "nId"/);
    expect(() => loadConfigText(`${q}    cursor_column: nId\n`, 'c.yaml', {})).not.toThrow();
  });
  test('a cursor column other than nId needs an id_column (ids of a non-unique cursor collide)', () => {
    const q = `sql_sources:\n  - name: ksc\n    url: "postgres://u:pw@db:5432/kav"\n    query: 'SELECT * FROM v WHERE "tmRiseTime" > @p1 ORDER BY "tmRiseTime"'\n    latest_query: ""\n    cursor_column: tmRiseTime\n`;
    expect(() => loadConfigText(q, 'c.yaml', {})).toThrow(/c\.yaml:6: sql_sources\[0\]\.cursor_column: .*set id_column to a unique column/);
    expect(() => loadConfigText(`${q}    id_column: nId\n`, 'c.yaml', {})).not.toThrow();
  });
  test('a custom query or another cursor column needs its own latest_query (or "")', () => {
    const pg = `sql_sources:\n  - name: ksc\n    url: "postgres://u:pw@db:5432/kav"\n    id_column: nId\n`;
    const q = `    query: 'SELECT * FROM v WHERE "nId" > @p1 ORDER BY "nId"'\n`;
    const t = `    query: 'SELECT * FROM v WHERE "tmRiseTime" > @p1 ORDER BY "tmRiseTime"'\n    cursor_column: tmRiseTime\n`;
    expect(() => loadConfigText(`${pg}${t}`, 'c.yaml', {})).toThrow(/sql_sources\[0\]\.query: with a custom query, write a latest_query/);
    expect(() => loadConfigText(`${pg}${q}`, 'c.yaml', {})).toThrow(/c\.yaml:5: sql_sources\[0\]\.query: .*custom query.*latest_query/);
    expect(() => loadConfigText(`${pg}${q}    latest_query: ""\n`, 'c.yaml', {})).not.toThrow();
    expect(() => loadConfigText(`${pg}${t}    latest_query: SELECT MAX("tmRiseTime") FROM v_akpub_ev_event\n`, 'c.yaml', {})).not.toThrow();
    expect(() => loadConfigText(pg, 'c.yaml', {})).not.toThrow();
  });
  test('cursors of different kinds are never ordered against each other', () => {
    expect(sameCursorKind(120, '2024-01-01T00:00:00.000Z')).toBe(false);
    expect(sameCursorKind('120', 7)).toBe(true);
    expect(sameCursorKind('2024-01-01T00:00:00.000Z', '2023-01-01T00:00:00.000Z')).toBe(true);
  });
  test('a query without @p1 or ORDER BY, a bad URL: problems with file lines', () => {
    let err: ConfigError | undefined;
    try {
      loadConfigText('sql_sources:\n  - name: ksc\n    url: "oracle://u:topsecret@h/x"\n    query: "SELECT * FROM v_akpub_ev_event"\n', 'c.yaml', {});
    } catch (e) {
      err = e as ConfigError;
    }
    expect(err).toBeInstanceOf(ConfigError);
    const m = err!.message;
    expect(m).toContain('sql_sources[0].url');
    expect(m).toContain('no cursor placeholder @p1');
    expect(m).toContain('ORDER BY nId');
    expect(m).not.toContain('topsecret');
  });
});
