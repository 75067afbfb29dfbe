/**
 * The `sql` source's configuration fragment (its schema, type and checks, in one place):
 * the config schema lists it under `sql_sources`; docs/sql-source.md explains each option.
 */
import { dur, MAX_TIMER_SECONDS, type ObjectSpec, type Spec } from '../../config/spec.js';
import { countPlaceholders, DEFAULT_QUERY_COLUMNS, orderByProblem, quotedNamesLike } from './query.js';
import { parseDbUrl } from './url.js';

export interface SqlSourceConfig {
  name: string;
  url: string;
  user?: string;
  password?: string;
  query?: string;
  latest_query?: string;
  cursor_column: string;
  id_column?: string;
  initial_cursor: string;
  poll_interval: number;
  batch_rows: number;
  query_timeout: number;
  connect_timeout: number;
  max_backoff: number;
  gap_wait: number;
  on_cursor_backwards: 'latest' | 'replay';
  normalizers: string[];
  tls: { mode: 'default' | 'disable' | 'require' | 'verify'; ca_file?: string; server_name?: string };
}

const s = (doc: string, extra: Record<string, unknown> = {}): Spec => ({ kind: 'string', doc, ...extra }) as Spec;

export const SQL_SOURCE_SPEC: ObjectSpec = {
  kind: 'object',
  doc: 'A source that polls a database (KSC\'s event views) and turns each new row into an event.',
  fields: {
    name: s('Source name (unique); recorded on every event as `listener`, names the cursor file `state_dir/sql/<name>.json`, and is a metric label.', { required: true }),
    url: s('Database URL in KUMA\'s form: `sqlserver://{user}:{password}@{server:port}/{instance}?database=KAV` (a domain login as `domain%5Cuser`), `postgres://user:password@host:5432/database`, `mysql://user:password@host:3306/database`. Never logged (printed with the password as `***`).', { required: true, secret: true }),
    user: s('Database login; overrides the URL\'s.'),
    password: s('Database password; overrides the URL\'s. Prefer password_file.', { secret: true }),
    password_file: { kind: 'path', doc: 'File holding the database password.' },
    query: s('The query; `@p1` stands for the last cursor value seen, and it must end with `ORDER BY <cursor_column> [ASC]` (cefd appends the row limit: no LIMIT, OFFSET or FETCH of its own). Default: KSC\'s events joined to their hosts (docs/sql-source.md).'),
    latest_query: s('Query returning the newest cursor value (one row, one column), for `initial_cursor: latest` and to notice a cursor that went backwards (empty: no check). Default: `SELECT MAX(nId) FROM v_akpub_ev_event`; required (a query or "") with a custom `query` or a `cursor_column` other than nId.'),
    cursor_column: s('Column holding the cursor (KUMA\'s "Identity column").', { default: 'nId' }),
    id_column: s('Column whose value, with the database, makes the event id (default: cursor_column, which must then be nId: with another cursor_column it is required and must be unique, e.g. nId).'),
    initial_cursor: s('Where a source with no stored cursor starts (KUMA\'s "Identity seed"): a value (`0`: every row of an integer column; a time column needs a time, e.g. `1970-01-01T00:00:00Z`) or `latest` (rows from now on). A changed value is taken while no row has been read.', { default: '0' }),
    poll_interval: dur('Wait between queries once the backlog is read (KUMA\'s "Poll interval").', '10s', 0.001, MAX_TIMER_SECONDS),
    batch_rows: { kind: 'int', doc: 'Most rows per query: a backlog is read this many rows at a time (held in memory with their events: KSC rows are a few KB each, so 100,000 rows can take some hundred MB).', default: 1000, min: 1, max: 100_000 },
    query_timeout: dur('A query running longer is cancelled and retried (error reason `timeout`).', '30s', 0.001, MAX_TIMER_SECONDS),
    connect_timeout: dur('Longest wait for a connection (and login).', '15s', 0.001, MAX_TIMER_SECONDS),
    max_backoff: dur('Longest wait between retries after errors (doubling from 1 s).', '60s', 0.001, MAX_TIMER_SECONDS),
    gap_wait: dur('Out-of-order inserts: how long a gap in an integer cursor holds the cursor back while later rows are delivered (0: off; the cursor follows the largest value delivered).', '0s', 0),
    on_cursor_backwards: { kind: 'enum', doc: 'When the database went back (a restore: the newest value fell below the stored cursor and rows at or below it were written since; a delete alone is only a warning): `latest` (continue after the newest value it fell to) or `replay` (read every row again from `initial_cursor`); either way event ids get a new epoch.', values: ['latest', 'replay'], default: 'latest' },
    normalizers: { kind: 'list', doc: 'Normalizers run on the rows\' events, in order.', item: s('normalizer name or module path'), default: ['ksc_sql'] },
    tls: {
      kind: 'object',
      doc: 'TLS to the database (default: what the URL says: `sslmode` for PostgreSQL, `ssl` for MySQL, `encrypt`/`TrustServerCertificate` for SQL Server).',
      fields: {
        mode: { kind: 'enum', doc: '`default` (from the URL), `disable`, `require` (encrypted, certificate not checked) or `verify` (encrypted, certificate checked).', values: ['default', 'disable', 'require', 'verify'], default: 'default' },
        ca_file: { kind: 'path', doc: 'PEM CA bundle to check the server certificate against.' },
        server_name: s('Name expected in the server certificate (default: the URL\'s host).'),
      },
    },
  },
};

/** The list the config schema holds. */
export const SQL_SOURCES_SPEC: Spec = { kind: 'list', doc: 'Sources that poll a database (the KSC database\'s event views): see docs/sql-source.md.', item: SQL_SOURCE_SPEC, uniqueNames: true, default: [] };

/** Checks that need more than one key; `problem(key, message)` per problem. */
export function sqlSourceProblems(c: SqlSourceConfig, key: string, problem: (key: string, message: string) => void): void {
  if (!/^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$/.test(c.name)) problem(`${key}.name`, 'use 1-64 letters, digits, _ . - (it names the cursor file)');
  try {
    parseDbUrl(c.url);
  } catch (e) {
    problem(`${key}.url`, (e as Error).message);
  }
  if (c.query !== undefined) {
    const n = countPlaceholders(c.query);
    if (n === 0) problem(`${key}.query`, 'the query has no cursor placeholder @p1 (write e.g. `WHERE e.nId > @p1`)');
    const order = orderByProblem(c.query, c.cursor_column);
    if (order !== null) problem(`${key}.query`, order);
  }
  const col = c.cursor_column;
  if (c.query === undefined && col !== 'nId') {
    const like = DEFAULT_QUERY_COLUMNS.find((k) => k.toLowerCase() === col.toLowerCase());
    problem(
      `${key}.cursor_column`,
      like === 'nId'
        ? `the default query returns the column as "nId" (names are case-sensitive): write cursor_column: nId`
        : `the default query reads and orders by nId: with cursor_column ${col} write a query that filters (${col} > @p1) and orders by it`,
    );
  } else if (c.query !== undefined) {
    const like = quotedNamesLike(c.query, col);
    if (like.length > 0) problem(`${key}.cursor_column`, `the query quotes the column as ${JSON.stringify(like[0])}, which the result names exactly so (names are case-sensitive): write cursor_column: ${like[0]}`);
  }
  // Event ids come from id_column: a non-unique cursor (a time) would give many rows one
  // id, and outputs that deduplicate by id (Elasticsearch _id, JetStream Nats-Msg-Id)
  // would keep one of them.
  if (col !== 'nId' && c.id_column === undefined) {
    // Reported at cursor_column: an absent key has no line in the file.
    problem(`${key}.cursor_column`, `with cursor_column ${col}, set id_column to a unique column for the event ids (e.g. id_column: nId): rows sharing a ${col} value would share an id, and outputs that deduplicate by id would drop all but one`);
  }
  // The default latest_query is MAX(nId): for another cursor column, or a query of other
  // tables, it answers about the wrong thing (a database that "went back" on every poll).
  if (c.latest_query === undefined && (col !== 'nId' || c.query !== undefined)) {
    problem(c.query !== undefined ? `${key}.query` : `${key}.cursor_column`, `with ${c.query !== undefined ? 'a custom query' : `cursor_column ${col}`}, write a latest_query returning MAX(${col}) of the rows the query reads, or latest_query: "" (no check for a database that went back; no initial_cursor: latest)`);
  }
  if (c.initial_cursor.trim() === '') problem(`${key}.initial_cursor`, 'a value or `latest`');
  if (c.initial_cursor === 'latest' && c.latest_query === '') problem(`${key}.latest_query`, '`initial_cursor: latest` needs a latest_query');
}
