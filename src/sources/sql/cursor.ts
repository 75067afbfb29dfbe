/**
 * The cursor: what the source has handed to the outputs, kept in
 * `state_dir/sql/<source>.json` and written only after the rows' events were accepted by
 * every output's buffer. Pure planning (`planBatch`) decides which rows of a batch become
 * events and where the cursor moves; the source does the I/O.
 *
 * - Equal cursor values (a non-unique column such as a time): when a full batch ends
 *   inside a run of equal values, that run is held back and read again by the next query
 *   (`> cursor` would skip the rest of it); a full batch of one value, or one that leaves
 *   nothing to emit (a `>=` query's rows at the cursor, then a held-back run), asks for a
 *   larger one.
 * - Out-of-order inserts (`gap_wait` > 0, an integer id column): a gap in the ids holds
 *   the cursor below it for up to `gap_wait` while later rows are delivered and remembered
 *   in `seen` (persisted), so a row committed late is still read and none twice.
 * - A cursor that goes backwards (database restored) is found by the source (latest query).
 */
import { closeSync, mkdirSync, openSync, readFileSync, renameSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';

export type Cursor = string | number;

export interface CursorState {
  version: 1;
  /** The database identity the cursor belongs to (url.ts `identity`). */
  database: string;
  /** Incremented when the cursor is reset after it went backwards: part of event ids. */
  epoch: number;
  cursor: Cursor;
  /** Integer ids above `cursor` already delivered (gap mode), ascending decimal text. */
  seen: string[];
}

const INT = /^-?\d+$/;

export function isIntegerCursor(v: Cursor): boolean {
  return typeof v === 'number' ? Number.isInteger(v) : INT.test(v);
}

/**
 * Whether two cursor values can be ordered against each other: both integers, or both
 * not (an integer and a time are different columns: comparing them as text is
 * meaningless, e.g. a latest_query of MAX(nId) against a tmRiseTime cursor).
 */
export function sameCursorKind(a: Cursor, b: Cursor): boolean {
  return isIntegerCursor(a) === isIntegerCursor(b);
}

/** Orders two cursor values: integers numerically (any size), others as text (ISO times sort as text). Check sameCursorKind first. */
export function compareCursor(a: Cursor, b: Cursor): number {
  if (isIntegerCursor(a) && isIntegerCursor(b)) {
    const x = BigInt(a);
    const y = BigInt(b);
    return x < y ? -1 : x > y ? 1 : 0;
  }
  const x = timeKey(String(a));
  const y = timeKey(String(b));
  return x < y ? -1 : x > y ? 1 : 0;
}

const ISO_UTC = /^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?Z$/;

/**
 * An ISO UTC time with its fraction written to nine digits, so that times of different
 * precision sort as text (`.123Z` before `.1231Z`, which the drivers write for a time
 * finer than the millisecond: drivers.ts preciseTime); any other text as it is.
 */
function timeKey(s: string): string {
  const m = ISO_UTC.exec(s);
  return m === null ? s : `${m[1]}.${(m[2] ?? '').padEnd(9, '0')}Z`;
}

/** The cursor as bound to the query: a number when it is one that fits, else text. */
export function cursorParam(v: Cursor): string | number {
  if (typeof v === 'string' && INT.test(v)) {
    const n = Number(v);
    if (Number.isSafeInteger(n)) return n;
  }
  return v;
}

/** A column value as a cursor, or undefined when it cannot be one (null, boolean). */
export function cursorOf(v: unknown): Cursor | undefined {
  if (typeof v === 'number' && Number.isFinite(v)) return v;
  // A 64-bit integer column comes as text from some drivers (pg): a number when it fits.
  if (typeof v === 'string' && v !== '') return cursorParam(v);
  return undefined;
}

export interface PlanInput {
  state: CursorState;
  /** The cursor value of each row, in query order. */
  cursors: readonly Cursor[];
  /** The query returned as many rows as it was allowed. */
  full: boolean;
  gapWaitMs: number;
  nowMs: number;
  /** Gaps first seen, by the cursor below them (kept by the source across polls). */
  gaps: Map<string, number>;
}

export type Plan =
  | { kind: 'unordered'; at: number }
  /** A full batch of one cursor value: query again with a larger limit. */
  | { kind: 'grow' }
  | { kind: 'ok'; emit: number[]; cursor: Cursor; seen: string[] };

export function planBatch(p: PlanInput): Plan {
  const { cursors, state } = p;
  const n = cursors.length;
  for (let i = 1; i < n; i++) if (compareCursor(cursors[i - 1]!, cursors[i]!) > 0) return { kind: 'unordered', at: i };
  let end = n;
  if (p.full && n > 0) {
    const last = cursors[n - 1]!;
    while (end > 0 && compareCursor(cursors[end - 1]!, last) === 0) end--;
    if (end === 0) return { kind: 'grow' };
  }
  const gapMode = p.gapWaitMs > 0 && isIntegerCursor(state.cursor);
  if (!gapMode) {
    const emit: number[] = [];
    let cursor = state.cursor;
    for (let i = 0; i < end; i++) {
      // Rows at or below the cursor were delivered already (a query with >= , or a replay).
      if (compareCursor(cursors[i]!, state.cursor) <= 0) continue;
      emit.push(i);
      cursor = cursors[i]!;
    }
    // A full batch of rows at the cursor (a `>=` query) plus a held-back run: the same
    // query would return the same rows forever; a larger one gets past them.
    if (p.full && emit.length === 0) return { kind: 'grow' };
    return { kind: 'ok', emit, cursor, seen: [] };
  }
  const seen = new Set(state.seen);
  const emit: number[] = [];
  for (let i = 0; i < end; i++) {
    const c = cursors[i]!;
    if (!isIntegerCursor(c)) return { kind: 'unordered', at: i };
    const key = BigInt(c).toString();
    if (compareCursor(key, state.cursor) <= 0 || seen.has(key)) continue;
    seen.add(key);
    emit.push(i);
  }
  const ids = [...seen].map((s) => BigInt(s)).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  let cur = BigInt(state.cursor);
  let k = 0;
  for (; k < ids.length; k++) {
    const id = ids[k]!;
    if (id === cur + 1n) {
      cur = id;
      continue;
    }
    const key = cur.toString();
    const first = p.gaps.get(key);
    if (first === undefined) {
      p.gaps.set(key, p.nowMs);
      break;
    }
    if (p.nowMs - first < p.gapWaitMs) break;
    p.gaps.delete(key);
    cur = id;
  }
  const cursor = Number.isSafeInteger(Number(cur)) ? Number(cur) : cur.toString();
  return { kind: 'ok', emit, cursor, seen: ids.slice(k).map(String) };
}

export function initialState(database: string, cursor: Cursor): CursorState {
  return { version: 1, database, epoch: 0, cursor, seen: [] };
}

/** The stored state, null when there is none; throws when the file cannot be read as one. */
export function readState(file: string): CursorState | null {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw e;
  }
  const s = JSON.parse(text) as CursorState;
  if (s === null || typeof s !== 'object' || s.version !== 1 || cursorOf(s.cursor) === undefined || !Array.isArray(s.seen) || typeof s.epoch !== 'number') {
    throw new Error(`${file} is not a cursor state`);
  }
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
