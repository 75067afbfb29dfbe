/**
 * One interface over three database clients, so the source runs the same code for all:
 * `pg` (PostgreSQL), `mysql2` (MySQL, MariaDB) and `tedious` (SQL Server). Each client is
 * imported when first used: `cefd validate` reports one that is not installed.
 *
 * Values come back as JSON scalars (toJsonValue): numbers that are safe integers or
 * finite floats, text, `null`, times as ISO 8601 UTC text, dates as midnight UTC, bytes
 * as base64 text, and 64-bit integers beyond 2^53 as decimal text. A time JavaScript
 * cannot hold (PostgreSQL's `infinity`, a year past 9999) stays as the server wrote it.
 * Each result carries its columns' kinds (`Rows.kinds`, from the column types the
 * server reported), which the cursor keeps (cursor.ts CursorKind): a text column's
 * `'0042'` is text, whatever it looks like.
 */
import { readFileSync } from 'node:fs';
import type { CursorKind, SqlParam } from './cursor.js';
import type { DbTarget, DriverKind } from './url.js';

export type Row = Record<string, unknown>;

/** A result's rows, with the kind of each column by name (from the column types the server reported). */
export type Rows = Row[] & { kinds: Readonly<Record<string, CursorKind>> };

/** `rows` with `kinds` attached, not enumerable: the result is still a plain array of rows to anyone comparing or copying it. */
function withKinds(rows: Row[], kinds: Record<string, CursorKind>): Rows {
  return Object.defineProperty(rows, 'kinds', { value: kinds, enumerable: false }) as Rows;
}

/** Why an attempt failed; a metric label (`cefd_sql_errors_total{reason}`). */
export type SqlErrorReason = 'connect' | 'auth' | 'tls' | 'timeout' | 'query' | 'state' | 'other';

export class SqlError extends Error {
  override readonly name = 'SqlError';
  constructor(
    readonly reason: SqlErrorReason,
    message: string,
  ) {
    super(message);
  }
}

export interface SqlTls {
  /** `disable`, `prefer`/`require` (encrypted, certificate not checked), `verify` (checked). */
  mode: 'default' | 'disable' | 'require' | 'verify';
  ca_file?: string;
  server_name?: string;
}

export interface ConnectOptions {
  target: DbTarget;
  user?: string;
  password?: string;
  tls: SqlTls;
  connectTimeoutMs: number;
  queryTimeoutMs: number;
  /** Names the connection in the server's session list. */
  applicationName: string;
}

export interface SqlConnection {
  /** Runs `sql` with `params` bound in order; rejects with a SqlError. */
  query(sql: string, params: readonly SqlParam[]): Promise<Rows>;
  close(): Promise<void>;
}

export interface SqlDriver {
  readonly kind: DriverKind;
  /** The npm package behind it (for `cefd validate`). */
  readonly module: string;
  connect(o: ConnectOptions): Promise<SqlConnection>;
}

/** A column value as a JSON scalar (see the file comment). */
export function toJsonValue(v: unknown): string | number | boolean | null {
  if (v === null || v === undefined) return null;
  if (typeof v === 'string' || typeof v === 'boolean') return v;
  if (typeof v === 'number') return Number.isFinite(v) ? v : String(v);
  if (typeof v === 'bigint') return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v.toString();
  if (v instanceof Date) return Number.isNaN(v.getTime()) ? null : v.toISOString();
  if (Buffer.isBuffer(v)) return v.toString('base64');
  return JSON.stringify(v) ?? null;
}

/**
 * A time read from the server's text (`2024-01-01 10:00:00.123456`, with or without an
 * offset) as ISO 8601 UTC text that keeps the digits below the millisecond a Date drops,
 * when they are not all zero (microseconds: `2024-01-01T10:00:00.123100Z`;
 * else `...00.123Z` as Date#toISOString writes it). A time cursor cut to the millisecond would lose rows: a row
 * at .123900 committed after one at .123100 was read is past the cursor in the database
 * (`> '...00.123100'`) but compared equal to it here (both `.123`), and skipped as read.
 * compareCursor (cursor.ts) orders such texts by their digits.
 */
export function preciseTime(d: Date, text: string): Date | string {
  if (Number.isNaN(d.getTime())) return d;
  const m = /:\d{2}\.\d{3}(\d+)/.exec(text);
  if (m === null || !/[1-9]/.test(m[1]!)) return d;
  // Microseconds always as 3 more digits (PostgreSQL writes `.1231`, MariaDB `.123100`).
  return d.toISOString().replace(/Z$/, `${m[1]!.padEnd(3, '0')}Z`);
}

/**
 * A SQL Server time (datetime2, datetimeoffset, time) as tedious reads it: a Date with the
 * digits below the millisecond in its non-enumerable `nanosecondsDelta` (seconds, in steps
 * of 100 ns), written as preciseTime writes them for PostgreSQL and MariaDB: microseconds
 * (`.123900Z`), or the seven digits of a datetime2(7) (`.1234567Z`) when the last is not 0.
 */
export function mssqlTime(d: Date): Date | string {
  const delta = (d as Date & { nanosecondsDelta?: unknown }).nanosecondsDelta;
  if (typeof delta !== 'number' || Number.isNaN(d.getTime())) return d;
  const units = Math.round(delta * 1e7);
  if (units <= 0 || units >= 10_000) return d;
  const digits = String(units).padStart(4, '0');
  return d.toISOString().replace(/Z$/, `${digits.endsWith('0') ? digits.slice(0, 3) : digits}Z`);
}

/**
 * A time parsed from the server's `text`: preciseTime when the parse gave a valid Date,
 * else the text as it is (pg's parser returns Infinity for `infinity` and null for text
 * it does not understand; a Date cannot hold a year past 275760, nor `0000-00-00`).
 */
export function timeOrText(d: unknown, text: string): Date | string {
  return d instanceof Date && !Number.isNaN(d.getTime()) ? preciseTime(d, text) : text;
}

/** A date (`2024-01-01`) as midnight UTC, like the other drivers' dates; other text (`infinity`, BC) as it is. */
export function dateText(v: string): string {
  return /^\d{4}-\d{2}-\d{2}$/.test(v) ? `${v}T00:00:00.000Z` : v;
}

/** A 64-bit integer's decimal text as a number when it is a safe integer, else the text. */
export function int64Value(v: string): number | string {
  const n = Number(v);
  return /^-?\d+$/.test(v) && Number.isSafeInteger(n) ? n : v;
}

/** PostgreSQL type OIDs by cursor kind (pg_type): int2/int4/int8/oid, float4/float8/numeric, date/timestamp/timestamptz. */
export function pgColumnKind(oid: number): CursorKind {
  if (oid === 20 || oid === 21 || oid === 23 || oid === 26) return 'int';
  if (oid === 700 || oid === 701 || oid === 1700) return 'num';
  if (oid === 1082 || oid === 1114 || oid === 1184) return 'time';
  return 'text';
}

/** MySQL protocol column types by cursor kind (mysql2's Types: TINY..LONGLONG, YEAR; DECIMAL, FLOAT, DOUBLE; TIMESTAMP, DATE, DATETIME). */
export function mysqlColumnKind(type: number): CursorKind {
  if ([1, 2, 3, 8, 9, 13].includes(type)) return 'int';
  if ([0, 4, 5, 246].includes(type)) return 'num';
  if ([7, 10, 12, 14].includes(type)) return 'time';
  return 'text';
}

/** tedious data type names by cursor kind (IntN, DecimalN ... are the nullable forms). */
export function mssqlColumnKind(name: string): CursorKind {
  if (/^(TinyInt|SmallInt|Int|BigInt|IntN)$/i.test(name)) return 'int';
  if (/^(Decimal|Numeric|DecimalN|NumericN|Float|Real|FloatN|Money|SmallMoney|MoneyN)$/i.test(name)) return 'num';
  if (/date/i.test(name)) return 'time';
  return 'text';
}

export function mapRow(r: Record<string, unknown>): Row {
  const out: Row = {};
  for (const k of Object.keys(r)) out[k] = toJsonValue(r[k]);
  return out;
}

function readCa(tls: SqlTls): Buffer | undefined {
  return tls.ca_file !== undefined ? readFileSync(tls.ca_file) : undefined;
}

/** Error codes of the clients and the server, sorted into reasons. */
export function classify(e: unknown): SqlError {
  if (e instanceof SqlError) return e;
  const err = e as { code?: string | number; errno?: number; message?: string; name?: string };
  const code = String(err.code ?? '');
  const msg = String(err.message ?? e);
  let reason: SqlErrorReason = 'other';
  if (['28P01', '28000', 'ER_ACCESS_DENIED_ERROR', 'ER_DBACCESS_DENIED_ERROR', 'ELOGIN'].includes(code) || err.errno === 1045) reason = 'auth';
  else if (code === '57014' || code === 'ETIMEOUT' || code === 'PROTOCOL_SEQUENCE_TIMEOUT' || code === 'ER_STATEMENT_TIMEOUT' || err.errno === 1969 || /timeout|timed out/i.test(msg)) reason = 'timeout';
  else if (['ECONNREFUSED', 'ECONNRESET', 'ENOTFOUND', 'EHOSTUNREACH', 'ENETUNREACH', 'EPIPE', 'ESOCKET', 'PROTOCOL_CONNECTION_LOST', '57P01', '57P03', 'ECONNCLOSED', 'EINSTLOOKUP'].includes(code) || /connection terminated|closed the connection|server has gone away|connection is closed|Connection lost|connection error and is not queryable|connection is in closed state/i.test(msg)) reason = 'connect';
  else if (/certificate|self[- ]signed|SSL|TLS/i.test(msg) || code.startsWith('ERR_TLS') || code === 'DEPTH_ZERO_SELF_SIGNED_CERT') reason = 'tls';
  else if (/^[0-9A-Z]{5}$/.test(code) || code.startsWith('ER_') || code === 'EREQUEST') reason = 'query';
  return new SqlError(reason, msg.replace(/\s+/g, ' ').slice(0, 500));
}

// ---- PostgreSQL (pg) ----

const postgres: SqlDriver = {
  kind: 'postgres',
  module: 'pg',
  async connect(o) {
    const pg = (await import('pg')).default;
    const t = o.target;
    const mode = o.tls.mode !== 'default' ? o.tls.mode : sslModeOf(t.params['sslmode']);
    const client = new pg.Client({
      host: t.host,
      port: t.port,
      database: t.database,
      user: o.user,
      password: o.password,
      application_name: o.applicationName,
      connectionTimeoutMillis: o.connectTimeoutMs,
      // The server cancels a query that runs longer (SQLSTATE 57014); the connection stays usable.
      statement_timeout: o.queryTimeoutMs,
      // A peer that stops answering (a hung server, a dropped route) never cancels: the
      // client gives up a little later than the server would (the source then drops the
      // connection), and TCP keepalive finds a dead peer of an idle connection.
      query_timeout: o.queryTimeoutMs + PG_CLIENT_TIMEOUT_MARGIN_MS,
      keepAlive: true,
      ssl: mode === 'disable' ? false : { rejectUnauthorized: mode === 'verify', ca: readCa(o.tls), servername: o.tls.server_name },
      // The session's output formats, whatever the server's, database's or role's defaults:
      // the parsers below read ISO times (another DateStyle would make them unreadable).
      options: '-c DateStyle=ISO,MDY -c IntervalStyle=postgres',
      // `timestamp without time zone` holds UTC in KSC's schema: read it as UTC, not local time.
      // Both timestamp types keep their microseconds (preciseTime); one a Date cannot hold
      // (`infinity`, year 12000) stays as the server's text. A `date` is midnight UTC (not
      // local midnight, which pg's own parser makes of it). int8 is a number when it fits.
      types: {
        getTypeParser: ((oid: number, format?: string) => {
          if (oid === 1114) return (v: string) => timeOrText(new Date(`${v.replace(' ', 'T')}Z`), v);
          if (oid === 1184) {
            const parse = pg.types.getTypeParser(1184, 'text') as (v: string) => unknown;
            return (v: string) => timeOrText(parse(v), v);
          }
          if (oid === 1082) return dateText;
          if (oid === 20) return int64Value;
          return pg.types.getTypeParser(oid, format as 'text');
        }) as typeof pg.types.getTypeParser,
      },
    });
    // Errors of an idle connection (server restart) surface on the next query.
    client.on('error', () => undefined);
    try {
      await client.connect();
    } catch (e) {
      void client.end().catch(() => undefined);
      throw classify(e);
    }
    return {
      async query(sql, params) {
        try {
          const r = await client.query<Record<string, unknown>>(sql, params.map((p) => (typeof p === 'bigint' ? p.toString() : p)));
          const kinds: Record<string, CursorKind> = {};
          for (const f of r.fields ?? []) kinds[f.name] = pgColumnKind(f.dataTypeID);
          return withKinds(r.rows.map(mapRow), kinds);
        } catch (e) {
          throw classify(e);
        }
      },
      // end() waits for the server to close: a hung one never does, so the socket goes too.
      close: () =>
        settleWithin(client.end(), 1000).finally(() => {
          (client as unknown as { connection?: { stream?: { destroy?: () => void } } }).connection?.stream?.destroy?.();
        }),
    };
  },
};

/** How much longer than query_timeout the PostgreSQL client waits for an answer itself. */
const PG_CLIENT_TIMEOUT_MARGIN_MS = 5000;

function sslModeOf(v: string | undefined): SqlTls['mode'] {
  if (v === undefined || v === 'disable' || v === 'allow' || v === 'prefer') return 'disable';
  if (v === 'verify-ca' || v === 'verify-full') return 'verify';
  return 'require';
}

// ---- MySQL / MariaDB (mysql2) ----

const mysql: SqlDriver = {
  kind: 'mysql',
  module: 'mysql2',
  async connect(o) {
    const m = (await import('mysql2/promise')).default;
    const t = o.target;
    const sslParam = t.params['ssl'] ?? t.params['ssl-mode'] ?? t.params['sslmode'];
    const mode = o.tls.mode !== 'default' ? o.tls.mode : sslParam === undefined || /^(false|0|disabled?|preferred)$/i.test(sslParam) ? 'disable' : /verify/i.test(sslParam) ? 'verify' : 'require';
    let conn: import('mysql2/promise').Connection;
    try {
      conn = await m.createConnection({
        host: t.host,
        port: t.port,
        database: t.database,
        user: o.user,
        password: o.password,
        connectTimeout: o.connectTimeoutMs,
        // Times as UTC text, 64-bit integers exact.
        timezone: 'Z',
        dateStrings: false,
        // DATETIME(6) / TIMESTAMP(6) keep their microseconds (preciseTime); the session is UTC
        // (below); a zero date (`0000-00-00`) stays as its text. A DATE is midnight UTC.
        typeCast: (field: { type: string; string(): string | null }, next: () => unknown) => {
          if (field.type === 'DATE' || field.type === 'NEWDATE') {
            const v = field.string();
            return v === null ? null : dateText(v);
          }
          if (field.type !== 'DATETIME' && field.type !== 'TIMESTAMP') return next();
          const v = field.string();
          return v === null ? null : timeOrText(new Date(`${v.replace(' ', 'T')}Z`), v);
        },
        supportBigNumbers: true,
        bigNumberStrings: false,
        ssl: mode === 'disable' ? undefined : { rejectUnauthorized: mode === 'verify', ca: readCa(o.tls) },
      });
    } catch (e) {
      throw classify(e);
    }
    conn.on('error', () => undefined);
    // TIMESTAMP columns come back in the session's time zone (the server's default, often
    // local time), which mysql2 (timezone 'Z') would read as UTC: the session is UTC.
    try {
      await conn.query(`SET time_zone = '+00:00'`);
    } catch (e) {
      conn.destroy();
      throw classify(e);
    }
    // The server stops a query past the timeout too (MariaDB: max_statement_time in
    // seconds; MySQL: max_execution_time in ms); each refuses the other's variable.
    await conn.query(`SET SESSION max_statement_time = ${o.queryTimeoutMs / 1000}`).catch(() => undefined);
    await conn.query(`SET SESSION max_execution_time = ${Math.ceil(o.queryTimeoutMs)}`).catch(() => undefined);
    return {
      async query(sql, params) {
        try {
          // mysql2 gives up at the timeout (the source then drops the connection).
          // An integer beyond 2^53 goes into the query's text as its digits (mysql2 would quote a string).
          const values = params.map((p) => (typeof p === 'bigint' ? { toSqlString: () => p.toString() } : p));
          const [rows, fields] = await conn.query({ sql, values, timeout: o.queryTimeoutMs });
          const kinds: Record<string, CursorKind> = {};
          for (const f of (fields as unknown as { name: string; columnType?: number; type?: number }[] | undefined) ?? []) kinds[f.name] = mysqlColumnKind(f.columnType ?? f.type ?? -1);
          return withKinds((rows as Record<string, unknown>[]).map(mapRow), kinds);
        } catch (e) {
          throw classify(e);
        }
      },
      // end() never settles on a connection mysql2 destroyed itself (after a query
      // timeout): wait a little, then destroy.
      // mysql2's destroy() only half-closes the socket: the stream is destroyed as well.
      close: () =>
        settleWithin(conn.end(), 1000).finally(() => {
          conn.destroy();
          (conn as unknown as { connection?: { stream?: { destroy?: () => void } } }).connection?.stream?.destroy?.();
        }),
    };
  },
};

// ---- SQL Server (tedious) ----

/**
 * The tedious parameter type for a cursor value (cursor.ts bindCursor binds by the
 * cursor's kind): BigInt for integers (numbers, bigint), NVarChar for text, whatever it
 * looks like (`'0042'` from a text column is text; SQL Server converts it for a number column).
 */
export function mssqlParamType(v: SqlParam): 'BigInt' | 'NVarChar' {
  return typeof v === 'bigint' || (typeof v === 'number' && Number.isInteger(v)) ? 'BigInt' : 'NVarChar';
}

/** tedious connection settings for a target (pure: tested without a server). */
export function mssqlConfig(o: ConnectOptions): Record<string, unknown> {
  const t = o.target;
  const p = t.params;
  const enc = p['encrypt'];
  let mode = o.tls.mode;
  if (mode === 'default') {
    if (enc !== undefined && /^(false|disable|no|0)$/i.test(enc)) mode = 'disable';
    else if (/^true$/i.test(p['trustservercertificate'] ?? '')) mode = 'require';
    else mode = 'verify';
  }
  const auth =
    t.domain !== undefined
      ? { type: 'ntlm', options: { userName: o.user ?? '', password: o.password ?? '', domain: t.domain } }
      : { type: 'default', options: { userName: o.user ?? '', password: o.password ?? '' } };
  const options: Record<string, unknown> = {
    database: t.database,
    appName: o.applicationName,
    connectTimeout: o.connectTimeoutMs,
    requestTimeout: o.queryTimeoutMs,
    // Times from datetime columns are UTC in KSC (OPEN-API.md §5).
    useUTC: true,
    rowCollectionOnRequestCompletion: false,
    encrypt: mode === 'disable' ? false : /^strict$/i.test(enc ?? '') ? 'strict' : true,
    trustServerCertificate: mode === 'require',
  };
  // tedious takes a port or an instance name (resolved through SQL Browser), not both.
  if (t.instance !== undefined && !t.portGiven) options['instanceName'] = t.instance;
  else options['port'] = t.port;
  if (o.tls.server_name !== undefined) options['serverName'] = o.tls.server_name;
  if (o.tls.ca_file !== undefined) options['cryptoCredentialsDetails'] = { ca: readCa(o.tls) };
  return { server: t.host, authentication: auth, options };
}

const mssql: SqlDriver = {
  kind: 'mssql',
  module: 'tedious',
  async connect(o) {
    const tedious = await import('tedious');
    const conn = new tedious.Connection(mssqlConfig(o) as unknown as import('tedious').ConnectionConfiguration);
    await new Promise<void>((resolve, reject) => {
      conn.once('connect', (err) => (err ? reject(classify(err)) : resolve()));
      conn.connect();
    });
    conn.on('error', () => undefined);
    return {
      query(sql, params) {
        return new Promise<Rows>((resolve, reject) => {
          const rows: Row[] = [];
          const kinds: Record<string, CursorKind> = {};
          const req = new tedious.Request(sql, (err) => (err ? reject(classify(err)) : resolve(withKinds(rows, kinds))));
          if (params.length > 0) {
            const v = params[0]!;
            const type = mssqlParamType(v) === 'BigInt' ? tedious.TYPES.BigInt : tedious.TYPES.NVarChar;
            req.addParameter('p1', type, type === tedious.TYPES.BigInt || typeof v === 'bigint' ? String(v) : v);
          }
          req.on('columnMetadata', (cols: unknown) => {
            const list = (Array.isArray(cols) ? cols : Object.values(cols as object)) as { colName: string; type: { name: string } }[];
            for (const c of list) kinds[c.colName] = mssqlColumnKind(c.type.name);
          });
          req.on('row', (cols: { metadata: { colName: string }; value: unknown }[]) => {
            const r: Row = {};
            // tedious returns bigint as text: a number when it fits, as the other drivers do;
            // a time keeps its digits below the millisecond (mssqlTime). Decimals come as
            // numbers (tedious has no setting for their text: docs/sql-source.md).
            for (const c of cols) {
              const v = c.value instanceof Date ? mssqlTime(c.value) : c.value;
              r[c.metadata.colName] = typeof v === 'string' && kinds[c.metadata.colName] === 'int' ? int64Value(v) : toJsonValue(v);
            }
            rows.push(r);
          });
          conn.execSql(req);
        });
      },
      close: () => closeTedious(conn),
    };
  },
};

/** What closeTedious needs of a tedious Connection. */
export interface TediousClosable {
  /** Set by tedious once the connection is closed; it emits `end` only once, when it closes. */
  readonly closed: boolean;
  once(event: 'end', listener: () => void): unknown;
  close(): void;
}

/**
 * Closes a tedious connection: at once when tedious closed it already (after a lost
 * connection: `end` was emitted then and never comes again), else when `end` comes, and
 * after `ms` at the latest.
 */
export function closeTedious(conn: TediousClosable, ms = 1000): Promise<void> {
  if (conn.closed) return Promise.resolve();
  return settleWithin(
    new Promise<void>((resolve) => {
      conn.once('end', () => resolve());
      conn.close();
    }),
    ms,
  );
}

/** Resolves when `p` settles or after `ms`, whichever comes first; never rejects. */
export function settleWithin(p: Promise<unknown>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([p.then(() => undefined, () => undefined), new Promise<void>((r) => (timer = setTimeout(r, ms)))]).finally(() => clearTimeout(timer));
}

export const DRIVERS: Record<DriverKind, SqlDriver> = { postgres, mysql, mssql };

/** Null when the driver's package loads, else why it does not. */
export async function driverMissing(kind: DriverKind): Promise<string | null> {
  const d = DRIVERS[kind];
  try {
    await import(d.module);
    return null;
  } catch (e) {
    return `the ${kind} driver (npm package ${d.module}) cannot be loaded: ${(e as Error).message.split('\n')[0]}`;
  }
}
