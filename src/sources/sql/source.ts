/**
 * The `sql` source: polls a database with a cursor query and hands each new row to the
 * pipeline as an event (`event.sql`), which the `ksc_sql` normalizer reads.
 *
 * Exactly once into the pipeline: a batch is read only when every output's queue has room
 * (Pipeline.roomForRecords), encoded, and queued only if every output takes all of its
 * bytes now (submitRecordsIfTaken; else it is read again later, fewer rows at a time); the
 * cursor is written (cursor.ts) only after that, once every disk buffer has them in its
 * files (Pipeline.onDisk). Event ids are `<database hash>-<row id>`,
 * so rows read again after a crash between those two steps carry the same ids (outputs
 * that deduplicate, Elasticsearch `_id` or JetStream `Nats-Msg-Id`, drop them).
 *
 * Errors (connect, auth, tls, timeout, query, state) are counted by reason, logged
 * (rate-limited, never with the password), and retried after a backoff that doubles from
 * 1 s to `max_backoff`; nothing is read past the stored cursor until a batch is accepted.
 */
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import type { CefdEvent } from '../../event.js';
import type { Normalizer } from '../../pipeline/normalize.js';
import type { FlowControl } from '../../pipeline/flow-control.js';
import type { Pipeline, SourceContext } from '../../pipeline/pipeline.js';
import type { Telemetry } from '../../telemetry/telemetry.js';
import { isoFromMs } from '../../time.js';
import type { SqlSourceConfig } from './config.js';
import { bindCursor, cursorOf, gapMode, guessBatchKind, guessKind, idsGivenUp, initialState, MAX_SEEN_IDS, orderCursor, planBatch, readState, writeState, type Cursor, type CursorKind, type CursorState } from './cursor.js';
import { classify, DRIVERS, settleWithin, SqlError, type ConnectOptions, type Row, type Rows, type SqlConnection } from './drivers.js';
import { sqlMetrics, type SqlStats } from './metrics.js';
import { buildQuery, defaultLatestQuery, defaultQuery } from './query.js';
import { parseDbUrl, sameDatabase, type DbTarget } from './url.js';

export interface SqlSourceDeps {
  pipeline: Pipeline;
  flow: FlowControl;
  telemetry: Telemetry;
  normalizers: Normalizer[];
  stateDir: string;
}

/** Wait before a batch an output refused (its buffer was full) is read again. */
const REFUSED_RETRY_MS = 200;

/**
 * Where `on_cursor_backwards: replay` with `initial_cursor: latest` restarts a time cursor:
 * a time every database takes (SQL Server's datetime begins in 1753).
 */
const REPLAY_TIME = '1970-01-01T00:00:00.000Z';

/** Largest query a run of equal cursor values may grow a batch to (rows). */
const MAX_GROWN_ROWS = 100_000;

/** Everything a source needs to query, shared with `cefd sql test`. */
export class SqlQueryPlan {
  readonly target: DbTarget;
  readonly query: string;
  readonly latestQuery: string;
  readonly idPrefix: string;
  constructor(readonly config: SqlSourceConfig) {
    this.target = parseDbUrl(config.url);
    this.query = config.query ?? defaultQuery(this.target.driver);
    this.latestQuery = config.latest_query ?? defaultLatestQuery(this.target.driver);
    this.idPrefix = createHash('sha256').update(this.target.identity).digest('hex').slice(0, 12);
  }

  connectOptions(): ConnectOptions {
    const c = this.config;
    return {
      target: this.target,
      user: c.user ?? this.target.user,
      password: c.password ?? this.target.password,
      tls: c.tls,
      connectTimeoutMs: c.connect_timeout * 1000,
      queryTimeoutMs: c.query_timeout * 1000,
      applicationName: `cefd ${c.name}`,
    };
  }

  connect(): Promise<SqlConnection> {
    return DRIVERS[this.target.driver].connect(this.connectOptions());
  }

  /**
   * The rows after `cursor`, bound by its kind (cursor.ts bindCursor: text as text, integers
   * as numbers). A query error with a cursor of no kind (a configured initial_cursor no row
   * has confirmed) says so: the database may not compare the value with the column (the
   * default 0 against a PostgreSQL timestamp).
   */
  async fetch(conn: SqlConnection, cursor: Cursor, kind: CursorKind | null | undefined, limit: number): Promise<Rows> {
    const q = buildQuery(this.query, this.target.driver, limit);
    try {
      return await conn.query(q.text, new Array(q.occurrences).fill(bindCursor(cursor, kind)));
    } catch (e) {
      const err = classify(e);
      if (kind !== null || err.reason !== 'query') throw err;
      throw new SqlError(
        'query',
        `${err.message} (the cursor ${JSON.stringify(String(cursor))} is initial_cursor, which no row has confirmed yet: if ${this.config.cursor_column} cannot be compared with it, set initial_cursor to a value of the column's type, for a time column e.g. initial_cursor: "1970-01-01T00:00:00Z"; a changed initial_cursor is taken while no row has been read)`,
      );
    }
  }

  /**
   * Whether stored state `s` is the one to go on from: `other-database` when it belongs to
   * another database identity (url.ts sameDatabase); `initial-changed` when its cursor is a
   * configured initial_cursor no row has confirmed (kind null) and the configuration now
   * says another (the new one is taken: nothing was read from the old).
   */
  storedState(s: CursorState): 'use' | 'other-database' | 'initial-changed' {
    if (!sameDatabase(this.target, s.database)) return 'other-database';
    const initial = this.config.initial_cursor;
    if (s.kind === null && s.seen.length === 0 && (initial === 'latest' || String(s.cursor) !== initial)) return 'initial-changed';
    return 'use';
  }

  /** The latest_query's value and its column's kind; undefined when it returned no row or NULL (an empty table). */
  async latest(conn: SqlConnection): Promise<{ value: Cursor; kind: CursorKind } | undefined> {
    const rows = await conn.query(this.latestQuery, []);
    const first = rows[0];
    if (first === undefined) return undefined;
    const name = Object.keys(first)[0];
    if (name === undefined) return undefined;
    const colKind = rows.kinds?.[name];
    const value = cursorOf(first[name], colKind);
    if (value === undefined) return undefined;
    return { value, kind: colKind ?? guessKind(value) };
  }

  eventId(epoch: number, id: unknown): string {
    return `${this.idPrefix}${epoch > 0 ? `.${epoch}` : ''}-${String(id)}`;
  }

  /** The event of a row (normalizers not run yet). */
  rowEvent(row: Row, cursor: Cursor, epoch: number, nowMs: number): CefdEvent {
    const c = this.config;
    const received = isoFromMs(nowMs);
    const t = row['tmRiseTime'];
    const ts = typeof t === 'string' && !Number.isNaN(Date.parse(t)) ? new Date(t).toISOString() : received;
    return {
      id: this.eventId(epoch, row[c.id_column ?? c.cursor_column] ?? cursor),
      timestamp: ts,
      received,
      listener: c.name,
      peer: `${this.target.host}:${this.target.port}`,
      sql: { source: c.name, database: this.target.identity, cursor, row },
    };
  }

  stateFile(stateDir: string): string {
    return join(stateDir, 'sql', `${this.config.name}.json`);
  }
}

/** Why `row` (a result's first row) cannot be read with cursor column `col`; null when it can. */
export function missingCursorColumn(row: Row, col: string): string | null {
  if (Object.prototype.hasOwnProperty.call(row, col)) return null;
  const names = Object.keys(row);
  const other = names.find((k) => k.toLowerCase() === col.toLowerCase());
  const hint = other !== undefined ? ` (the result has ${JSON.stringify(other)}: column names are case-sensitive here)` : ` (columns: ${names.slice(0, 20).join(', ')})`;
  return `cursor column ${col} not in the result${hint}`;
}

export class SqlSource {
  readonly name: string;
  private readonly plan: SqlQueryPlan;
  private readonly stats: SqlStats;
  private readonly duration: ReturnType<typeof sqlMetrics>['duration'];
  private readonly releaseMetrics: () => void;
  private readonly ctx: SourceContext;
  private readonly file: string;
  private conn: SqlConnection | null = null;
  private state: CursorState | null = null;
  /** `initial_cursor: latest` met a latest_query without a value (logged once). */
  private latestPending = false;
  private readonly gaps = new Map<string, number>();
  /**
   * The lowest value latest_query returned below the stored cursor since it went below it
   * (rows deleted, or the database restored: checkBackwards); null while it is not. In
   * memory only.
   */
  private below: { value: Cursor; kind: CursorKind } | null = null;
  /**
   * Gap mode: the next query reads from the largest id in `seen` (the rows beyond those
   * already delivered) rather than from the cursor (which a gap holds back).
   */
  private ahead = false;
  private grow = 1;
  /** The batch is divided by this after an output refused one (its bytes did not fit). */
  private shrink = 1;
  /** The last batch was refused by an output: retry soon, not after poll_interval. */
  private refused = false;
  private stopping = false;
  /** Set when stop() gave up waiting: nothing is submitted after that. */
  private abandoned = false;
  private loop: Promise<void> | null = null;
  private wake: (() => void) | null = null;
  private started = false;

  constructor(
    readonly config: SqlSourceConfig,
    private readonly deps: SqlSourceDeps,
  ) {
    this.name = config.name;
    this.plan = new SqlQueryPlan(config);
    const m = sqlMetrics(deps.telemetry.registry, config.name);
    this.stats = m.stats;
    this.duration = m.duration;
    this.releaseMetrics = m.release;
    this.ctx = { listener: config.name, stats: deps.telemetry.listener(config.name), normalizers: deps.normalizers, peer: `${this.plan.target.host}:${this.plan.target.port}` };
    this.file = this.plan.stateFile(deps.stateDir);
  }

  /** Polling (a query may be failing: see the metrics). */
  get ready(): boolean {
    return this.started && !this.stopping;
  }

  port(): number | undefined {
    return undefined;
  }

  reload(): void {}

  async start(): Promise<void> {
    this.started = true;
    this.deps.telemetry.log.info({ source: this.name, url: this.plan.target.redacted }, `sql source ${this.name}: polling ${this.plan.target.redacted}`);
    this.loop = this.run();
  }

  async stop(graceMs: number): Promise<void> {
    this.stopping = true;
    this.wakeUp();
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([this.loop ?? Promise.resolve(), new Promise((r) => (timer = setTimeout(r, Math.max(1, graceMs))))]);
    clearTimeout(timer);
    this.abandoned = true;
    this.releaseMetrics();
    const c = this.conn;
    this.conn = null;
    await c?.close().catch(() => undefined);
  }

  private wakeUp(): void {
    const w = this.wake;
    this.wake = null;
    w?.();
  }

  private sleep(ms: number): Promise<void> {
    if (this.stopping) return Promise.resolve();
    return new Promise((resolve) => {
      const t = setTimeout(() => {
        this.wake = null;
        resolve();
      }, ms);
      this.wake = () => {
        clearTimeout(t);
        resolve();
      };
    });
  }

  private async run(): Promise<void> {
    try {
      await this.poll();
    } finally {
      await this.disconnect();
    }
  }

  private async poll(): Promise<void> {
    let backoff = 0;
    const log = this.deps.telemetry.log;
    while (!this.stopping) {
      if (this.deps.flow.paused || !this.deps.pipeline.roomForRecords()) {
        // Outputs are full: read nothing more until they drain (the cursor waits too).
        await this.sleep(100);
        continue;
      }
      let more = false;
      try {
        more = await this.pollOnce();
        if (backoff !== 0) log.info({ source: this.name }, `sql source ${this.name}: recovered`);
        backoff = 0;
        this.stats.up = 1;
      } catch (e) {
        if (this.stopping) break;
        const err = classify(e);
        this.stats.errors.add(err.reason);
        this.stats.up = 0;
        backoff = backoff === 0 ? 1000 : Math.min(this.config.max_backoff * 1000, backoff * 2);
        const wait = Math.round(backoff / 2 + (Math.random() * backoff) / 2);
        log.error({ source: this.name, reason: err.reason, err: err.message, retryInMs: wait }, `sql source ${this.name}: ${err.reason} error: ${err.message}; retrying in ${wait} ms`);
        if (err.reason !== 'query' && err.reason !== 'state') await this.disconnect();
        await this.sleep(wait);
        continue;
      }
      if (this.refused) await this.sleep(REFUSED_RETRY_MS);
      else if (!more) await this.sleep(this.config.poll_interval * 1000);
    }
  }

  private async disconnect(): Promise<void> {
    const c = this.conn;
    this.conn = null;
    // A client that cannot close cleanly must not hold the loop.
    if (c !== null) await settleWithin(c.close(), 3000);
  }

  private async connection(): Promise<SqlConnection> {
    if (this.conn !== null) return this.conn;
    const c = await this.plan.connect();
    if (this.stopping) {
      // Connected after stop(): close it, or its socket would keep the process alive.
      await settleWithin(c.close(), 3000);
      throw new SqlError('other', 'stopping');
    }
    this.conn = c;
    return c;
  }

  /** The stored state, else a fresh one; null while `initial_cursor: latest` has no value to start at. */
  private async loadState(conn: SqlConnection): Promise<CursorState | null> {
    let s: CursorState | null;
    try {
      s = readState(this.file);
    } catch (e) {
      throw new SqlError('state', `the cursor file ${this.file} cannot be read (${(e as Error).message}); fix or remove it (removing it starts from initial_cursor)`);
    }
    const db = this.plan.target.identity;
    const log = this.deps.telemetry.log;
    const use = s === null ? null : this.plan.storedState(s);
    if (s !== null && use !== 'other-database' && s.database !== db) {
      // The same database in the form an earlier version wrote (url.ts formerIdentity).
      log.info({ source: this.name, was: s.database, now: db }, `sql source ${this.name}: the cursor file names this database ${s.database}, as earlier versions did; it is now ${db}`);
      s = { ...s, database: db };
      if (use === 'use') this.save(s);
    }
    if (s !== null && use === 'use') return s;
    if (s !== null && use === 'other-database') log.warn({ source: this.name, was: s.database, now: db }, `sql source ${this.name}: the stored cursor belongs to another database; starting from initial_cursor`);
    if (s !== null && use === 'initial-changed') log.info({ source: this.name, was: s.cursor, now: this.config.initial_cursor }, `sql source ${this.name}: the stored cursor ${String(s.cursor)} is an initial_cursor no row has confirmed; initial_cursor is now ${this.config.initial_cursor}: starting there`);
    let fresh: CursorState;
    if (this.config.initial_cursor === 'latest') {
      const latest = await this.plan.latest(conn);
      if (latest === undefined) {
        // An empty table: there is no value to start after (0 is not one for a time
        // column). Nothing is saved; latest_query runs again at every poll until it has one.
        if (!this.latestPending) this.deps.telemetry.log.info({ source: this.name }, `sql source ${this.name}: latest_query returned no value (no rows yet): asking again at every poll`);
        this.latestPending = true;
        return null;
      }
      fresh = initialState(db, latest.value, latest.kind);
    } else {
      // The configured text: its kind is the column's, known from the first row read.
      fresh = initialState(db, this.config.initial_cursor, null);
    }
    this.latestPending = false;
    // An unconfirmed cursor replaced: its epoch stays (event ids of earlier epochs are not reused).
    if (s !== null && use === 'initial-changed') fresh.epoch = s.epoch;
    this.save(fresh);
    this.deps.telemetry.log.info({ source: this.name, cursor: fresh.cursor }, `sql source ${this.name}: starting at cursor ${String(fresh.cursor)}`);
    return fresh;
  }

  private save(s: CursorState): void {
    try {
      writeState(this.file, s);
    } catch (e) {
      throw new SqlError('state', `cannot write the cursor file ${this.file}: ${(e as Error).message}`);
    }
  }

  /** One query; true when there may be more rows right away. */
  private async pollOnce(): Promise<boolean> {
    const conn = await this.connection();
    this.state ??= await this.loadState(conn);
    const state = this.state;
    if (state === null) return false;
    this.refused = false;
    // The newest value went below the cursor: rows deleted, or a restore (probeBelow).
    if (this.below !== null && (await this.probeBelow(conn, state))) return true;
    const limit = Math.max(1, Math.floor(this.config.batch_rows / this.shrink)) * this.grow;
    // Gap mode, a gap holding the cursor back with a full batch of delivered rows above it:
    // read on from the largest id delivered (seen, ascending) while seen is below
    // MAX_SEEN_IDS (so it holds at most that many plus two batches).
    const ahead = this.ahead && this.config.gap_wait > 0 && state.seen.length > 0 && state.seen.length < MAX_SEEN_IDS;
    this.ahead = false;
    const from: Cursor = ahead ? state.seen[state.seen.length - 1]! : state.cursor;
    const t0 = process.hrtime.bigint();
    let rows: Rows;
    try {
      rows = await this.plan.fetch(conn, from, ahead ? 'int' : state.kind, limit);
    } finally {
      this.duration.observe({ source: this.name }, Number(process.hrtime.bigint() - t0) / 1e9);
    }
    this.stats.queries++;
    this.stats.lastSuccessMs = Date.now();
    if (rows.length === 0) {
      await this.checkBackwards(conn, state);
      return false;
    }
    if (this.abandoned) return false;
    this.stats.rows += rows.length;
    const col = this.config.cursor_column;
    // A cursor column the result lacks (a misspelt or differently cased name) would
    // dead-letter the same rows on every poll, the cursor never moving: an error instead.
    const missing = missingCursorColumn(rows[0]!, col);
    if (missing !== null) throw new SqlError('query', missing);
    const cursors: Cursor[] = [];
    const kept: Row[] = [];
    const dead: string[] = [];
    const now = Date.now();
    // The cursor column's kind as the driver reported its type (drivers.ts Rows.kinds).
    const colKind = rows.kinds?.[col];
    for (const row of rows) {
      const c = cursorOf(row[col], colKind);
      if (c === undefined) {
        dead.push(JSON.stringify({ time: isoFromMs(now), reason: 'sql_row_unusable', message: `the row has no value in cursor column ${col}`, listener: this.name, peer: this.ctx.peer, sql: { source: this.name, database: this.plan.target.identity, row } }));
        continue;
      }
      cursors.push(c);
      kept.push(row);
    }
    if (kept.length === 0) {
      // Nothing to move the cursor past: the next query would return these rows again.
      throw new SqlError('query', `none of the ${rows.length} rows has a value in cursor column ${col}: the cursor cannot move past them (the query must return rows with ${col} > @p1)`);
    }
    const full = rows.length >= limit;
    const kind = colKind ?? guessBatchKind(cursors);
    const plan = planBatch({ state, cursors, kind, full, gapWaitMs: this.config.gap_wait * 1000, nowMs: now, gaps: this.gaps, from });
    if (plan.kind === 'unordered') {
      throw new SqlError('query', `rows are not in ascending order of ${col} (row ${plan.at}): the query must end with ORDER BY ${col} ASC`);
    }
    if (plan.kind === 'grow') {
      if (limit * 2 > MAX_GROWN_ROWS) throw new SqlError('query', `more than ${limit} rows share one ${col} value: raise batch_rows or use a unique cursor column`);
      this.grow *= 2;
      this.ahead = ahead;
      return true;
    }
    this.grow = 1;
    const events = plan.emit.map((i) => this.plan.rowEvent(kept[i]!, cursors[i]!, state.epoch, now));
    // Every output (and the dead-letter output) must take the whole batch now, or none of
    // it is queued and the cursor stays: a `drop_newest` output whose disk buffer has no
    // room for these bytes would drop them while the cursor moved past.
    if ((events.length > 0 || dead.length > 0) && !this.deps.pipeline.submitRecordsIfTaken(events, dead, this.ctx)) {
      this.refused = true;
      this.ahead = ahead;
      // A batch larger than the buffer's free room may never fit: read fewer rows next time.
      if (this.shrink < this.config.batch_rows) this.shrink *= 2;
      return false;
    }
    if (this.shrink > 1) this.shrink /= 2;
    if (dead.length > 0) this.deps.telemetry.deadLettered('sql_row_unusable', dead.length);
    this.stats.events += events.length;
    this.stats.deadLetters += dead.length;
    // A cursor that moved is a row's value, of the batch's kind.
    const cursorMoved = !Object.is(plan.cursor, state.cursor);
    const nextKind = cursorMoved ? kind : state.kind;
    const moved = cursorMoved || nextKind !== state.kind || plan.seen.length !== state.seen.length || events.length > 0;
    const next: CursorState = { ...state, cursor: plan.cursor, kind: nextKind, seen: plan.seen };
    this.state = next;
    if (moved) {
      // A disk buffer whose writes fail, or that is taking back a spill file, keeps an append
      // in memory for a while: the cursor is written once every disk buffer holds the batch in its files
      // (fsynced unless its fsync is `never`), so kill -9 or a power loss before that reads
      // the rows again rather than losing them.
      await this.deps.pipeline.onDisk();
      if (this.abandoned) return false;
      this.save(next);
    }
    if (cursorMoved && gapMode(state, cursors, kind, this.config.gap_wait * 1000)) this.gapsGivenUp(state, next, cursors);
    this.deps.telemetry.log.debug({ source: this.name, rows: rows.length, events: events.length, cursor: next.cursor, ...(ahead ? { from } : {}) }, `sql source ${this.name}: ${rows.length} rows${ahead ? ` after ${String(from)}` : ''}, ${events.length} events, cursor ${String(next.cursor)}`);
    if ((nextKind === 'int' || nextKind === 'num') && Number.isFinite(Number(next.cursor))) this.stats.lastCursor = Number(next.cursor);
    if (plan.seen.length > 0 && full && plan.seen.length < MAX_SEEN_IDS && (ahead || !cursorMoved)) {
      // Gap mode: a gap holds the cursor and a full batch came back (from the cursor: rows
      // already delivered, or from the largest of them: more may follow). Read on from the
      // largest id delivered right away; a query from the cursor, which also finds the rows
      // that fill the lowest gap, comes back after the rows above are read.
      this.ahead = true;
      return true;
    }
    // After reading ahead to the end, the next poll queries from the cursor again (at
    // MAX_SEEN_IDS, right away: gaps may have expired). A full batch from the cursor that
    // moved nothing (rows held for a gap, nothing more to read) waits for the next poll.
    if (ahead) return full;
    return full && (events.length > 0 || moved);
  }

  /** Gap mode, the cursor moved: counts and reports the ids it went over without a row (gaps that expired). */
  private gapsGivenUp(before: CursorState, after: CursorState, cursors: readonly Cursor[]): void {
    const given = idsGivenUp(before.cursor, after.cursor, [...before.seen, ...cursors]);
    if (given.length === 0) return;
    let n = 0;
    for (const r of given) n += Number(r.last - r.first + 1n);
    this.stats.gapIdsSkipped += n;
    const ranges = given.map((r) => (r.first === r.last ? `${r.first}` : `${r.first}-${r.last}`));
    const shown = ranges.length > 10 ? `${ranges.slice(0, 10).join(', ')} and ${ranges.length - 10} more ranges` : ranges.join(', ');
    this.deps.telemetry.repeated(
      'warn',
      `sql_gap_given_up:${this.name}`,
      { code: 'sql_gap_given_up', source: this.name, ids: shown, count: n },
      `sql source ${this.name}: ${this.config.cursor_column} ${shown} (${n} ids) had no row after gap_wait: the cursor moved past them, and a row committed there later is not read`,
    );
  }

  /**
   * With nothing new: is the newest value in the database below the cursor? Deleting the
   * newest rows makes it so, and so does a restored database; only the second then writes
   * rows at or below the cursor (its sequence, identity or clock went back with the data).
   * So the drop is only remembered (`below`, a warning) and acted on when probeBelow finds
   * such a row. A configured initial_cursor no row has confirmed (kind null) is not
   * checked: it may be above every row on purpose (history skipped).
   */
  private async checkBackwards(conn: SqlConnection, state: CursorState): Promise<void> {
    if (this.plan.latestQuery === '' || state.kind === null || state.kind === undefined) return;
    const got = await this.plan.latest(conn);
    if (got === undefined) return;
    const latest = got.value;
    const numeric = (k: CursorKind | null | undefined) => k === 'int' || k === 'num';
    const comparable = state.kind === got.kind || (numeric(state.kind) && numeric(got.kind));
    const order = comparable ? orderCursor(latest, state.cursor, got.kind) : undefined;
    if (order === undefined) {
      // Text: only the database knows its order (its collation), so no check.
      if (comparable && got.kind === 'text') return;
      // A latest_query of another column (MAX(nId) against a time cursor): comparing the two
      // would see the database go back on every idle poll and replay it. Nothing is done.
      this.deps.telemetry.repeated(
        'error',
        `sql_cursor_kind_mismatch:${this.name}`,
        { code: 'sql_cursor_kind_mismatch', source: this.name, cursor: state.cursor, latest },
        `sql source ${this.name}: latest_query returned ${JSON.stringify(latest)}, which is not a value of cursor column ${this.config.cursor_column} (cursor ${JSON.stringify(state.cursor)}): the check for a database that went back is skipped; make latest_query return MAX(${this.config.cursor_column}) or ""`,
      );
      return;
    }
    if (order >= 0) {
      this.below = null;
      return;
    }
    if (this.below === null || (orderCursor(latest, this.below.value, got.kind) ?? 0) < 0) this.below = { value: latest, kind: got.kind };
    this.deps.telemetry.repeated(
      'warn',
      `sql_newest_below_cursor:${this.name}`,
      { code: 'sql_newest_below_cursor', source: this.name, cursor: state.cursor, latest },
      `sql source ${this.name}: the newest ${this.config.cursor_column} in the database (${String(latest)}) is below the stored cursor (${String(state.cursor)}): rows were deleted, or the database was restored; the cursor is kept, and the database is taken as gone back (on_cursor_backwards) once rows at or below the cursor are written after ${String(this.below.value)}`,
    );
  }

  /**
   * The newest value went below the cursor (checkBackwards, `below`): the first row after
   * it tells a delete from a restore. None: nothing written since, wait. One past the
   * cursor: the newest rows had been deleted and new ones come after the cursor (nothing to
   * do). One at or below the cursor: written after the drop was seen, with a value already
   * read: the database went back. True when the cursor was reset.
   */
  private async probeBelow(conn: SqlConnection, state: CursorState): Promise<boolean> {
    const low = this.below!;
    const col = this.config.cursor_column;
    const rows = await this.plan.fetch(conn, low.value, low.kind, 1);
    const first = rows[0];
    if (first === undefined) return false;
    const v = cursorOf(first[col], rows.kinds?.[col]);
    const order = v === undefined ? undefined : orderCursor(v, state.cursor, low.kind);
    if (order === undefined || order > 0) {
      this.below = null;
      this.deps.telemetry.log.info({ source: this.name, cursor: state.cursor, latest: low.value }, `sql source ${this.name}: the rows after ${String(low.value)} start past the stored cursor (${String(state.cursor)}): rows had been deleted, the database did not go back`);
      return false;
    }
    this.stats.errors.add('cursor_backwards');
    let to: Cursor = low.value;
    let toKind: CursorKind | null = low.kind;
    if (this.config.on_cursor_backwards === 'replay') {
      if (this.config.initial_cursor !== 'latest') [to, toKind] = [this.config.initial_cursor, null];
      // Every row again: from below any value of the column's kind (a time cursor cannot start at 0).
      else to = low.kind === 'time' ? REPLAY_TIME : 0;
    }
    this.deps.telemetry.log.error(
      { source: this.name, cursor: state.cursor, latest: low.value, row: v, to, epoch: state.epoch + 1 },
      `sql source ${this.name}: the newest ${col} in the database went from the stored cursor (${String(state.cursor)}) back to ${String(low.value)}, and a row with ${col} ${String(v)} was written since: the database went back (restored?); continuing from ${String(to)} with new event ids (epoch ${state.epoch + 1})`,
    );
    const next: CursorState = { ...state, epoch: state.epoch + 1, cursor: to, kind: toKind, seen: [] };
    this.gaps.clear();
    this.ahead = false;
    this.below = null;
    this.save(next);
    this.state = next;
    return true;
  }
}
