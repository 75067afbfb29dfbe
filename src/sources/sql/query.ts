/**
 * The query as each driver runs it. The configured query is written as KUMA writes it:
 * one cursor placeholder `@p1` (last cursor value seen). It becomes `$1` for PostgreSQL,
 * `?` for MySQL/MariaDB (one bound value per occurrence) and stays `@p1` for SQL Server
 * (a named parameter). Placeholders inside quoted text, quoted names and comments are
 * left alone.
 *
 * Paging: the query must end with its ORDER BY (by the cursor column, ascending:
 * orderByProblem); cefd appends the row limit in each dialect (`LIMIT n`; SQL Server
 * 2012+: `OFFSET 0 ROWS FETCH NEXT n ROWS ONLY`), so a backlog is read `batch_rows` rows
 * at a time and never loaded whole.
 */
import type { DriverKind } from './url.js';

export interface BuiltQuery {
  text: string;
  /** How many times the cursor value is bound (MySQL's `?` is positional). */
  occurrences: number;
}

/** Splits `sql` into code and non-code (quoted, commented) pieces, calling `code` on the former and `other` on the latter. */
function mapCode(sql: string, code: (s: string) => string, other: (s: string) => string = (s) => s): string {
  let out = '';
  let i = 0;
  let start = 0;
  const n = sql.length;
  while (i < n) {
    const c = sql[i]!;
    let end = -1;
    if (c === "'" || c === '"' || c === '`' || c === '[') {
      const close = c === '[' ? ']' : c;
      let j = i + 1;
      for (; j < n; j++) {
        if (sql[j] === close) {
          if (sql[j + 1] === close) j++;
          else break;
        }
      }
      end = Math.min(n, j + 1);
    } else if (c === '-' && sql[i + 1] === '-') {
      const j = sql.indexOf('\n', i);
      end = j === -1 ? n : j;
    } else if (c === '/' && sql[i + 1] === '*') {
      const j = sql.indexOf('*/', i + 2);
      end = j === -1 ? n : j + 2;
    }
    if (end === -1) {
      i++;
      continue;
    }
    out += code(sql.slice(start, i)) + other(sql.slice(i, end));
    i = end;
    start = end;
  }
  return out + code(sql.slice(start));
}

const PLACEHOLDER = /@p1(?![A-Za-z0-9_@$#])/gi;

/** How many `@p1` the query has outside quotes and comments. */
export function countPlaceholders(sql: string): number {
  let count = 0;
  mapCode(sql, (s) => {
    count += (s.match(PLACEHOLDER) ?? []).length;
    return s;
  });
  return count;
}

/** True when the query has an ORDER BY outside quotes and comments. */
export function hasOrderBy(sql: string): boolean {
  let found = false;
  mapCode(sql, (s) => {
    if (/\border\s+by\b/i.test(s)) found = true;
    return s;
  });
  return found;
}

/** The positions of `text` (comments removed) that are outside quotes and parentheses. */
function topLevel(text: string): boolean[] {
  const top = new Array<boolean>(text.length).fill(false);
  let depth = 0;
  let quote: string | null = null;
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (quote !== null) {
      if (c === quote) {
        if (text[i + 1] === quote) i++;
        else quote = null;
      }
      continue;
    }
    if (c === "'" || c === '"' || c === '`') quote = c;
    else if (c === '[') quote = ']';
    else if (c === '(') depth++;
    else if (c === ')') depth--;
    else top[i] = depth === 0;
  }
  return top;
}

/** One part of a name: `"nId"`, `` `nId` ``, `[nId]` or `nId`. */
const NAME_PART = '(?:"(?:[^"]|"")+"|`[^`]+`|\\[[^\\]]+\\]|[A-Za-z_][A-Za-z0-9_$#@]*)';

/** A name as written (`e."nId"`, `[nId]`, `nId`): its last part without quotes; null for anything else (an expression). */
function lastName(expr: string): string | null {
  if (!new RegExp(`^(?:${NAME_PART}\\s*\\.\\s*)*${NAME_PART}$`).test(expr)) return null;
  const t = new RegExp(`${NAME_PART}$`).exec(expr)![0];
  return /^["`[]/.test(t) ? t.slice(1, -1).replace(/""/g, '"') : t;
}

/**
 * Why `sql` does not end with `ORDER BY <col> [ASC]` as its last top-level clause (cefd
 * appends the row limit after it: buildQuery); null when it does. Further sort keys after
 * the cursor column are allowed. A sort key aliased `AS <col>` in the query, or a position
 * (`ORDER BY 1`), cannot be told from the cursor column here and is taken as it.
 */
export function orderByProblem(sql: string, col: string): string | null {
  let text = mapCode(sql, (s) => s, (s) => (s.startsWith('--') || s.startsWith('/*') ? ' ' : s)).trim();
  while (text.endsWith(';')) text = text.slice(0, -1).trimEnd();
  const top = topLevel(text);
  let end = -1;
  for (const m of text.matchAll(/\border\s+by\b/gi)) if (top[m.index] === true) end = m.index + m[0].length;
  const want = `the query must end with ORDER BY ${col} (cefd appends the row limit after it)`;
  if (end === -1) return want;
  const tail = text.slice(end);
  // The ORDER BY's sort keys, cut at their top-level commas; any other clause after them breaks the appended limit.
  let code = '';
  let comma = -1;
  for (let i = 0; i < tail.length; i++) {
    if (top[end + i] !== true) continue;
    code += tail[i];
    if (tail[i] === ',' && comma === -1) comma = i;
  }
  const extra = /\b(LIMIT|OFFSET|FETCH|TOP|FOR|UNION|INTERSECT|EXCEPT)\b/i.exec(code);
  if (extra !== null) return `${want}: remove the ${extra[1]!.toUpperCase()} after the ORDER BY (cefd appends its own row limit, batch_rows)`;
  const first = (comma === -1 ? tail : tail.slice(0, comma)).trim();
  const m = /^([\s\S]*?)(?:\s+(ASC|DESC))?(?:\s+NULLS\s+(?:FIRST|LAST))?$/i.exec(first)!;
  const expr = m[1]!.trim();
  if (m[2]?.toUpperCase() === 'DESC') return `${want}: it orders by ${expr} DESC, and cefd reads the rows after the cursor in ascending order (ORDER BY ${col} ASC)`;
  const name = lastName(expr);
  if ((name !== null && name.toLowerCase() === col.toLowerCase()) || /^\d+$/.test(expr)) return null;
  // `SELECT x AS <col> ... ORDER BY x`: the alias names the column cefd reads.
  const c = col.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  if (new RegExp(`\\bAS\\s+(?:${c}|"${c}"|\`${c}\`|\\[${c}\\])(?![A-Za-z0-9_$#@])`, 'i').test(text)) return null;
  return `${want}: its last ORDER BY sorts by ${expr === '' ? 'nothing' : expr}, not by the cursor column`;
}

/** The query with the driver's placeholder and row limit. */
export function buildQuery(sql: string, driver: DriverKind, limit: number): BuiltQuery {
  let body = sql.trim();
  while (body.endsWith(';')) body = body.slice(0, -1).trimEnd();
  const occurrences = countPlaceholders(body);
  const repl = driver === 'postgres' ? '$1' : driver === 'mysql' ? '?' : '@p1';
  const text = mapCode(body, (s) => s.replace(PLACEHOLDER, repl));
  const n = Math.max(1, Math.floor(limit));
  const tail = driver === 'mssql' ? `\nOFFSET 0 ROWS FETCH NEXT ${n} ROWS ONLY` : `\nLIMIT ${n}`;
  return { text: text + tail, occurrences };
}

/** The event columns the default query selects (with the host's: DEFAULT_QUERY_COLUMNS). */
const DEFAULT_EVENT_COLUMNS = [
  'nId', 'tmRiseTime', 'tmRegistrationTime', 'strEventType', 'wstrEventTypeDisplayName', 'wstrDescription',
  'wstrGroupName', 'wstrTaskDisplayName', 'wstrPar1', 'wstrPar2', 'wstrPar3', 'wstrPar4', 'wstrPar5', 'wstrPar6',
  'wstrPar7', 'wstrPar8', 'wstrPar9', 'nHostId',
];

/** The result columns of the default query, named as every driver returns them (for hints). */
export const DEFAULT_QUERY_COLUMNS: readonly string[] = [...DEFAULT_EVENT_COLUMNS, 'wstrHostDisplayName', 'wstrDnsName', 'nIp'];

/**
 * Names quoted in `sql` ("x" or `x`, outside comments) that equal `col` but for case:
 * PostgreSQL (and every driver, for a quoted or aliased name) returns the name as written.
 */
export function quotedNamesLike(sql: string, col: string): string[] {
  const out = new Set<string>();
  for (const m of sql.matchAll(/"([^"]+)"|`([^`]+)`/g)) {
    const n = m[1] ?? m[2]!;
    if (n !== col && n.toLowerCase() === col.toLowerCase()) out.add(n);
  }
  return [...out];
}

/**
 * The documented default: KSC's events since the cursor, each with its device from the
 * host view (LEFT JOIN: events of the server itself have no host row). Identifiers are
 * quoted per dialect so the mixed-case names work on PostgreSQL too.
 */
export function defaultQuery(driver: DriverKind): string {
  const q = driver === 'postgres' ? (s: string) => `"${s}"` : driver === 'mysql' ? (s: string) => `\`${s}\`` : (s: string) => s;
  const e = (c: string) => `e.${q(c)}`;
  const cols = DEFAULT_EVENT_COLUMNS.map(e);
  return [
    `SELECT ${cols.join(', ')},`,
    `       h.${q('wstrDisplayName')} AS ${q('wstrHostDisplayName')}, h.${q('wstrDnsName')}, h.${q('nIp')}`,
    `FROM ${q('v_akpub_ev_event')} e`,
    `LEFT JOIN ${q('v_akpub_host')} h ON h.${q('nId')} = e.${q('nHostId')}`,
    `WHERE e.${q('nId')} > @p1`,
    `ORDER BY e.${q('nId')} ASC`,
  ].join('\n');
}

/** The default query for `initial_cursor: latest` (the newest cursor value now). */
export function defaultLatestQuery(driver: DriverKind): string {
  const q = driver === 'postgres' ? (s: string) => `"${s}"` : driver === 'mysql' ? (s: string) => `\`${s}\`` : (s: string) => s;
  return `SELECT MAX(${q('nId')}) AS ${q('latest')} FROM ${q('v_akpub_ev_event')}`;
}
