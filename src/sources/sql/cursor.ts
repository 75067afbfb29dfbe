/**
 * The cursor: what the source has handed to the outputs, kept in
 * `state_dir/sql/<source>.json` and written only after the rows' events were accepted by
 * every output's buffer. Pure planning (`planBatch`) decides which rows of a batch become
 * events and where the cursor moves; the source does the I/O.
 *
 * - The cursor's kind (`CursorKind`) is the column's type as the driver reported it
 *   (drivers.ts `Rows.kinds`), never guessed from the text: `'0042'` from a text column
 *   stays text, is bound as text and is stored as text. Only integers, decimals and times
 *   are ordered here; text is ordered by the database alone (its collation), so for text
 *   the planning only needs equality.
 * - Equal cursor values (a non-unique column such as a time): when a full batch ends
 *   inside a run of equal values, that run is held back and read again by the next query
 *   (`> cursor` would skip the rest of it); a full batch of one value, or one that leaves
 *   nothing to emit (a `>=` query's rows at the cursor, then a held-back run), asks for a
 *   larger one.
 * - Out-of-order inserts (`gap_wait` > 0, an integer id column): a gap in the ids holds
 *   the cursor below it for up to `gap_wait` while later rows are delivered and remembered
 *   in `seen` (persisted), so a row committed late is still read and none twice. Every
 *   gap's wait starts when it is first seen (gaps wait in parallel), and the source reads
 *   on from the largest id in `seen` so that rows beyond a full batch are not held back
 *   (planGaps, source.ts pollOnce; `seen` bounded by MAX_SEEN_IDS).
 * - A cursor that goes backwards (database restored) is found by the source (latest query).
 */
import { closeSync, mkdirSync, openSync, readFileSync, renameSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';

export type Cursor = string | number;

/**
 * What a cursor value is, from the column's type (drivers.ts pgColumnKind, mysqlColumnKind, mssqlColumnKind):
 * - `int`: an integer column (a number, or decimal text beyond 2^53), ordered exactly;
 * - `num`: another number (decimal/numeric as text, floats as numbers), ordered as decimals;
 * - `time`: a time or date, ISO 8601 UTC text (drivers.ts preciseTime), ordered as times;
 * - `text`: anything else, ordered only by the database (its collation).
 */
export type CursorKind = 'int' | 'num' | 'time' | 'text';

export interface CursorState {
  version: 1;
  /** The database identity the cursor belongs to (url.ts `identity`). */
  database: string;
  /** Incremented when the cursor is reset after it went backwards: part of event ids. */
  epoch: number;
  cursor: Cursor;
  /**
   * The cursor's kind: from the column of the row it came from; `null` for a configured
   * `initial_cursor` no row has confirmed yet (bound as text: the database converts it).
   * Absent in files written before kinds were kept: guessed from the value as those
   * versions did (readState), so an old cursor is bound as it was.
   */
  kind?: CursorKind | null;
  /**
   * Integer ids above `cursor` already delivered (gap mode), ascending decimal text: at
   * most MAX_SEEN_IDS plus two batches.
   */
  seen: string[];
}

const INT = /^-?\d+$/;
const DECIMAL = /^[+-]?(?:\d+\.?\d*|\.\d+)$/;
const ISO_UTC = /^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?Z$/;

export function isIntegerCursor(v: Cursor): boolean {
  return typeof v === 'number' ? Number.isInteger(v) : INT.test(v);
}

function isNumeric(v: Cursor): boolean {
  return typeof v === 'number' ? Number.isFinite(v) : DECIMAL.test(v);
}

/**
 * The kind earlier versions gave a value from its look alone: integers (numbers or digit
 * text), other numbers, ISO UTC times, text. Only for state files without a kind and for
 * callers that know no column type; never for a value a driver returned with its type.
 */
export function guessKind(v: Cursor): CursorKind {
  if (typeof v === 'number') return Number.isInteger(v) ? 'int' : 'num';
  if (INT.test(v)) return 'int';
  if (ISO_UTC.test(v)) return 'time';
  return 'text';
}

/**
 * Whether two cursor values can be ordered against each other: both integers, or both
 * not (an integer and a time are different columns: comparing them as text is
 * meaningless, e.g. a latest_query of MAX(nId) against a tmRiseTime cursor). Kinds
 * guessed from the values; the source uses orderCursor with the columns' kinds.
 */
export function sameCursorKind(a: Cursor, b: Cursor): boolean {
  return isIntegerCursor(a) === isIntegerCursor(b);
}

/** The sign of a − b for two decimal numbers written as text (any length, exactly). */
function compareDecimalText(a: string, b: string): number {
  const parse = (s: string) => {
    const neg = s.startsWith('-');
    const body = s.replace(/^[+-]/, '');
    const [i = '', f = ''] = body.split('.');
    const int = i.replace(/^0+/, '');
    const frac = f.replace(/0+$/, '');
    return { neg: neg && (int !== '' || frac !== ''), int, frac };
  };
  const x = parse(a);
  const y = parse(b);
  if (x.neg !== y.neg) return x.neg ? -1 : 1;
  let c = x.int.length !== y.int.length ? (x.int.length < y.int.length ? -1 : 1) : x.int < y.int ? -1 : x.int > y.int ? 1 : 0;
  if (c === 0) {
    const n = Math.max(x.frac.length, y.frac.length);
    const fx = x.frac.padEnd(n, '0');
    const fy = y.frac.padEnd(n, '0');
    c = fx < fy ? -1 : fx > fy ? 1 : 0;
  }
  return x.neg ? -c : c;
}

function compareNumeric(a: Cursor, b: Cursor): number {
  if (typeof a === 'number' && typeof b === 'number') return a < b ? -1 : a > b ? 1 : 0;
  if (isIntegerCursor(a) && isIntegerCursor(b)) {
    const x = BigInt(a);
    const y = BigInt(b);
    return x < y ? -1 : x > y ? 1 : 0;
  }
  const sa = String(a);
  const sb = String(b);
  // A float written with an exponent (1e+21): compared as floats.
  if (!DECIMAL.test(sa) || !DECIMAL.test(sb)) {
    const x = Number(a);
    const y = Number(b);
    return x < y ? -1 : x > y ? 1 : 0;
  }
  return compareDecimalText(sa, sb);
}

/**
 * Orders two values of a column of `kind`: integers and decimals as numbers (any size,
 * exactly), times as times, whatever their number of fraction digits. `undefined` when
 * cefd cannot know the database's order: text (collations differ from JS: 'B' < 'a' in
 * code units, not in an ICU or `_ci` collation), or a value that is not of the kind (a
 * configured `initial_cursor`, a time the driver kept as its raw text: `infinity`).
 * Equal values compare 0 in every kind (text by its exact characters).
 */
export function orderCursor(a: Cursor, b: Cursor, kind: CursorKind): number | undefined {
  if (kind === 'int' || kind === 'num') {
    if (isNumeric(a) && isNumeric(b)) return compareNumeric(a, b);
  } else if (kind === 'time') {
    const x = timeKey(String(a));
    const y = timeKey(String(b));
    if (x !== null && y !== null) return x < y ? -1 : x > y ? 1 : 0;
  }
  return a === b ? 0 : undefined;
}

/**
 * Orders two cursor values whose kind is guessed from their look (guessKind): integers
 * numerically (any size), ISO times as times, anything else as text. For old state files
 * and callers without column types; the source orders with orderCursor.
 */
export function compareCursor(a: Cursor, b: Cursor): number {
  const k = guessKind(a);
  const o = k === guessKind(b) ? orderCursor(a, b, k) : undefined;
  if (o !== undefined) return o;
  const x = String(a);
  const y = String(b);
  return x < y ? -1 : x > y ? 1 : 0;
}

/**
 * An ISO UTC time with its fraction written to nine digits, so that times of different
 * precision sort as text (`.123Z` before `.1231Z`, which the drivers write for a time
 * finer than the millisecond: drivers.ts preciseTime); null for any other text.
 */
function timeKey(s: string): string | null {
  const m = ISO_UTC.exec(s);
  return m === null ? null : `${m[1]}.${(m[2] ?? '').padEnd(9, '0')}Z`;
}

/** A query parameter: text, a number, or an integer beyond 2^53 (drivers bind it exactly). */
export type SqlParam = string | number | bigint;

/**
 * The cursor as a query parameter, by its kind: integers as numbers (beyond 2^53 as their
 * text), other numbers as they came (a decimal's text), times and text as text, and a
 * cursor of unknown kind (`null`: a configured initial_cursor) as text, which each
 * database converts to the column's type. Without a kind (undefined) the kind is guessed
 * from the value, as earlier versions bound every cursor.
 */
export function cursorParam(v: Cursor, kind?: CursorKind | null): string | number {
  const k = kind === undefined ? guessKind(v) : kind;
  if (k === 'int' && isIntegerCursor(v)) {
    const n = Number(v);
    return Number.isSafeInteger(n) ? n : String(v);
  }
  if (k === 'num') return v;
  return String(v);
}

/** What the source binds: cursorParam, with an integer beyond 2^53 as a bigint (drivers bind it as a number, exactly). */
export function bindCursor(v: Cursor, kind: CursorKind | null | undefined): SqlParam {
  const p = cursorParam(v, kind);
  return typeof p === 'string' && (kind === undefined ? guessKind(v) : kind) === 'int' && isIntegerCursor(p) ? BigInt(p) : p;
}

/**
 * A column value as a cursor, or undefined when it cannot be one (null, boolean, ''):
 * an integer column's text (a 64-bit integer some drivers return as text) becomes a
 * number when it is a safe integer; anything else stays as it came.
 */
export function cursorOf(v: unknown, kind?: CursorKind): Cursor | undefined {
  if (typeof v === 'number') return Number.isFinite(v) ? v : undefined;
  if (typeof v !== 'string' || v === '') return undefined;
  if (kind === 'int' && INT.test(v)) {
    const n = Number(v);
    if (Number.isSafeInteger(n)) return n;
  }
  return v;
}

/** The kind of a batch's cursor values when the driver reported no column type: guessed, alike or text. */
export function guessBatchKind(cursors: readonly Cursor[]): CursorKind {
  let k: CursorKind | undefined;
  for (const c of cursors) {
    const g = guessKind(c);
    if (k === undefined) k = g;
    else if (k !== g) {
      if ((k === 'int' || k === 'num') && (g === 'int' || g === 'num')) k = 'num';
      else return 'text';
    }
  }
  return k ?? 'text';
}

export interface PlanInput {
  state: CursorState;
  /** The cursor value of each row, in query order. */
  cursors: readonly Cursor[];
  /** Their kind (the cursor column's type); guessed from the values when absent. */
  kind?: CursorKind;
  /** The query returned as many rows as it was allowed. */
  full: boolean;
  gapWaitMs: number;
  nowMs: number;
  /**
   * When each gap was first seen, by the id just above it (decimal text; kept by the source
   * across polls, in memory only). Every gap gets its entry the first time a batch shows it,
   * wherever it is, so gaps wait in parallel.
   */
  gaps: Map<string, number>;
  /**
   * The value the query was run from (its `@p1`): the state's cursor (default), or, in gap
   * mode, the largest id in `seen` when the source reads ahead of the rows it has already
   * delivered (source.ts). A gap is given up only by a query that covered it.
   */
  from?: Cursor;
}

/**
 * Gap mode: source.ts reads ahead of the delivered rows only while `seen` holds fewer ids
 * than this (then waits until gaps fill or expire), so `seen` holds at most this many plus
 * two batches (the last read ahead, late rows among the first batch above the cursor). It is written to the cursor file with every batch: this bounds the file
 * (about 1 MB of ids) and the work per batch.
 */
export const MAX_SEEN_IDS = 100_000;

export type Plan =
  | { kind: 'unordered'; at: number }
  /** A full batch of one cursor value: query again with a larger limit. */
  | { kind: 'grow' }
  /** `cursor` is the state's own value when it did not move, else a row's (of the batch's kind). */
  | { kind: 'ok'; emit: number[]; cursor: Cursor; seen: string[] };

export function planBatch(p: PlanInput): Plan {
  const { cursors, state } = p;
  const kind = p.kind ?? guessBatchKind(cursors);
  const n = cursors.length;
  // The database's order is checked where cefd knows it (numbers, times); text is in the
  // database's collation, which cefd does not know: trusted.
  for (let i = 1; i < n; i++) if ((orderCursor(cursors[i - 1]!, cursors[i]!, kind) ?? 0) > 0) return { kind: 'unordered', at: i };
  let end = n;
  if (p.full && n > 0) {
    const last = cursors[n - 1]!;
    while (end > 0 && orderCursor(cursors[end - 1]!, last, kind) === 0) end--;
    if (end === 0) return { kind: 'grow' };
  }
  if (!gapMode(state, cursors, kind, p.gapWaitMs)) {
    const emit: number[] = [];
    let cursor = state.cursor;
    for (let i = 0; i < end; i++) {
      // Rows at or below the cursor were delivered already (a query with >= , or a replay).
      // A row the order of which against the cursor is unknown (text) was chosen by the
      // database as after it (`> @p1`): only one equal to the cursor is skipped.
      if ((orderCursor(cursors[i]!, state.cursor, kind) ?? 1) <= 0) continue;
      emit.push(i);
      cursor = cursors[i]!;
    }
    // A full batch of rows at the cursor (a `>=` query) plus a held-back run: the same
    // query would return the same rows forever; a larger one gets past them.
    if (p.full && emit.length === 0) return { kind: 'grow' };
    return { kind: 'ok', emit, cursor, seen: [] };
  }
  return planGaps(p, cursors, end);
}

const cmpBig = (a: bigint, b: bigint) => (a < b ? -1 : a > b ? 1 : 0);

/** Whether planBatch holds gaps for this batch: gap_wait set and integer ids (also in a decimal column with no fraction: pg numeric, SQL Server numeric(18,0) IDENTITY). */
export function gapMode(state: CursorState, cursors: readonly Cursor[], kind: CursorKind, gapWaitMs: number): boolean {
  const integers = kind === 'int' || (kind === 'num' && cursors.every(isIntegerCursor));
  return gapWaitMs > 0 && integers && isIntegerCursor(state.cursor);
}

/**
 * Gap mode: the ids a cursor that moved from `from` to `to` went over without a row (gaps
 * given up after gap_wait), as ranges; `known` holds the ids delivered (the state's `seen`
 * and the batch's rows), in any order.
 */
export function idsGivenUp(from: Cursor, to: Cursor, known: readonly Cursor[]): { first: bigint; last: bigint }[] {
  if (!isIntegerCursor(from) || !isIntegerCursor(to)) return [];
  const base = BigInt(from);
  const end = BigInt(to);
  const ids = known.filter(isIntegerCursor).map((c) => BigInt(c)).filter((id) => id > base && id <= end).sort(cmpBig);
  const out: { first: bigint; last: bigint }[] = [];
  let below = base;
  for (const id of [...ids, end + 1n]) {
    if (id > below + 1n) out.push({ first: below + 1n, last: id - 1n });
    if (id > below) below = id;
  }
  return out;
}

/**
 * Gap mode (an integer cursor, gap_wait > 0). `seen` holds the ids above the cursor
 * already delivered; the ids between them (and between the cursor and the lowest) are gaps.
 * - Rows at or below the cursor, or in `seen`, are not emitted again; the others are and
 *   join `seen`.
 * - Every gap between the cursor and the largest id seen has a timer from the moment it
 *   was first seen (`gaps`, keyed by the id above it). A gap split by a late row keeps the
 *   time its ids were first known missing: the earliest timer of any key at or above its
 *   upper end (an id below a seen id was missing since that id was seen), so a late row
 *   never restarts the wait for the rest of its gap.
 * - The cursor moves over consecutive ids and over gaps that waited `gap_wait` and that
 *   this query covered (it ran from at or below the gap and returned every row up to its
 *   upper end: not full, or its last row at or above that end), so a row that committed in
 *   a gap before the gap was given up is read; it stops at the first other gap.
 */
function planGaps(p: PlanInput, cursors: readonly Cursor[], end: number): Plan {
  const { state } = p;
  const base = BigInt(state.cursor);
  const prev = state.seen.map((s) => BigInt(s));
  for (let i = 1; i < prev.length; i++) {
    if (prev[i - 1]! >= prev[i]!) {
      // Written ascending by every version; a hand-edited file is tolerated.
      prev.sort(cmpBig);
      break;
    }
  }
  const emit: number[] = [];
  const added: bigint[] = [];
  let j = 0;
  for (let i = 0; i < end; i++) {
    const c = cursors[i]!;
    if (!isIntegerCursor(c)) return { kind: 'unordered', at: i };
    const id = BigInt(c);
    if (id <= base) continue;
    while (j < prev.length && prev[j]! < id) j++;
    if (j < prev.length && prev[j] === id) continue;
    if (added.length > 0 && added[added.length - 1] === id) continue;
    added.push(id);
    emit.push(i);
  }
  // Both ascending: merge.
  const ids: bigint[] = [];
  for (let a = 0, b = 0; a < prev.length || b < added.length; ) {
    if (b >= added.length || (a < prev.length && prev[a]! < added[b]!)) {
      if (prev[a]! > base && (ids.length === 0 || ids[ids.length - 1] !== prev[a])) ids.push(prev[a]!);
      a++;
    } else {
      ids.push(added[b]!);
      b++;
    }
  }
  // The gaps: (known id, next known id) with ids missing between them; their timers.
  const his: bigint[] = [];
  for (let k = 0, below = base; k < ids.length; below = ids[k]!, k++) {
    if (ids[k]! !== below + 1n) {
      his.push(ids[k]!);
      if (!p.gaps.has(ids[k]!.toString())) p.gaps.set(ids[k]!.toString(), p.nowMs);
    }
  }
  // Earliest timer at or above each gap's upper end (keys above the cursor are seen ids).
  const timers = [...p.gaps].map(([k, t]) => [BigInt(k), t] as const).sort((x, y) => cmpBig(y[0], x[0]));
  const since = new Map<bigint, number>();
  let min = Infinity;
  for (let h = his.length - 1, t = 0; h >= 0; h--) {
    const hi = his[h]!;
    while (t < timers.length && timers[t]![0] >= hi) min = Math.min(min, timers[t++]![1]);
    since.set(hi, min);
  }
  const from = p.from === undefined ? base : isIntegerCursor(p.from) ? BigInt(p.from) : null;
  const last = cursors.length > 0 && isIntegerCursor(cursors[cursors.length - 1]!) ? BigInt(cursors[cursors.length - 1]!) : null;
  let cur = base;
  let k = 0;
  for (; k < ids.length; k++) {
    const id = ids[k]!;
    if (id === cur + 1n) {
      cur = id;
      continue;
    }
    const covered = from !== null && from <= cur && (!p.full || (last !== null && id <= last));
    if (!covered || p.nowMs - (since.get(id) ?? p.nowMs) < p.gapWaitMs) break;
    cur = id;
  }
  for (const key of [...p.gaps.keys()]) if (BigInt(key) <= cur) p.gaps.delete(key);
  const cursor = Number.isSafeInteger(Number(cur)) ? Number(cur) : cur.toString();
  return { kind: 'ok', emit, cursor, seen: ids.slice(k).map(String) };
}

/** A fresh state; `kind` null: a configured value no row has confirmed the kind of yet. */
export function initialState(database: string, cursor: Cursor, kind?: CursorKind | null): CursorState {
  const s: CursorState = { version: 1, database, epoch: 0, cursor, seen: [] };
  if (kind !== undefined) s.kind = kind;
  return s;
}

const KINDS: readonly unknown[] = ['int', 'num', 'time', 'text', null];

/**
 * The stored state, null when there is none; throws when the file cannot be read as one.
 * A file without `kind` (written before kinds were kept) gets the kind its cursor was
 * used with then (guessKind: a number or digit text is an integer).
 */
export function readState(file: string): CursorState | null {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw e;
  }
  const s = JSON.parse(text) as CursorState;
  if (
    s === null ||
    typeof s !== 'object' ||
    s.version !== 1 ||
    !(typeof s.cursor === 'string' || (typeof s.cursor === 'number' && Number.isFinite(s.cursor))) ||
    !Array.isArray(s.seen) ||
    typeof s.epoch !== 'number' ||
    (s.kind !== undefined && !KINDS.includes(s.kind))
  ) {
    throw new Error(`${file} is not a cursor state`);
  }
  if (s.kind === undefined) s.kind = guessKind(s.cursor);
  return s;
}

/**
 * Replaces the state file (write a temporary file, rename). A crash of cefd leaves the old
 * state or the new one. The source calls this only after every disk buffer holds the
 * batch in its files, fsynced unless the buffer's fsync is `never` (Pipeline.onDisk), so
 * the state is never ahead of the buffered rows on disk. The state file itself is not
 * fsynced: after a power loss an older state only means rows read again under the same
 * event ids, never rows skipped.
 */
export function writeState(file: string, s: CursorState): void {
  mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
  const tmp = `${file}.tmp`;
  const fd = openSync(tmp, 'w', 0o600);
  try {
    writeSync(fd, JSON.stringify({ ...s, updated: new Date().toISOString() }) + '\n');
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, file);
}
