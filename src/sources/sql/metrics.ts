/**
 * The sql source's metrics, one set per source name, read from plain stats at each scrape
 * (the telemetry module's collected counters and gauges).
 */
import { Histogram, type Registry } from 'prom-client';
import { collectedCounter, collectedGauge, CodeCounts } from '../../telemetry/telemetry.js';

export class SqlStats {
  rows = 0;
  events = 0;
  deadLetters = 0;
  queries = 0;
  /** Gap mode: ids given up after gap_wait (no row had them). */
  gapIdsSkipped = 0;
  /** The stored cursor when it is a number (a time or text cursor: NaN, left out). */
  lastCursor = Number.NaN;
  lastSuccessMs = 0;
  readonly errors = new CodeCounts();
  up = 0;
  /** Sources holding these stats (a reload may start the new one before the old has gone). */
  holders = 0;
  constructor(readonly name: string) {}
}

interface SqlMetrics {
  stats: Map<string, SqlStats>;
  duration: Histogram;
}

const byRegistry = new WeakMap<Registry, SqlMetrics>();

function define(reg: Registry): SqlMetrics {
  const stats = new Map<string, SqlStats>();
  const each = (f: (s: SqlStats) => number) => function* () {
    for (const s of stats.values()) yield [{ source: s.name }, f(s)] as [Record<string, string>, number];
  };
  collectedCounter(reg, 'cefd_sql_rows_total', 'Rows read by SQL sources.', ['source'], each((s) => s.rows));
  collectedCounter(reg, 'cefd_sql_events_total', 'Rows of SQL sources accepted by every output\'s buffer as events.', ['source'], each((s) => s.events));
  collectedCounter(reg, 'cefd_sql_dead_letters_total', 'Rows of SQL sources that could not become events (dead-lettered).', ['source'], each((s) => s.deadLetters));
  collectedCounter(reg, 'cefd_sql_queries_total', 'Queries of SQL sources that succeeded.', ['source'], each((s) => s.queries));
  collectedCounter(reg, 'cefd_sql_gap_ids_skipped_total', 'Ids a SQL source with gap_wait gave up: still without a row after gap_wait, the cursor moved past them (a row committed there later is not read).', ['source'], each((s) => s.gapIdsSkipped));
  collectedCounter(reg, 'cefd_sql_errors_total', 'Failed SQL source attempts, by reason (connect, auth, tls, timeout, query, state, other).', ['source', 'reason'], function* () {
    for (const s of stats.values()) for (const [reason, n] of s.errors.map) yield [{ source: s.name, reason }, n] as [Record<string, string>, number];
  });
  collectedGauge(reg, 'cefd_sql_last_cursor', 'The stored cursor of a SQL source (numeric cursors only).', ['source'], function* () {
    for (const s of stats.values()) if (Number.isFinite(s.lastCursor)) yield [{ source: s.name }, s.lastCursor] as [Record<string, string>, number];
  });
  collectedGauge(reg, 'cefd_sql_last_success_timestamp_seconds', 'Unix time of the last successful query of a SQL source (0: none yet).', ['source'], each((s) => s.lastSuccessMs / 1000));
  collectedGauge(reg, 'cefd_sql_up', '1 while a SQL source\'s last attempt succeeded, else 0.', ['source'], each((s) => s.up));
  const duration = new Histogram({
    name: 'cefd_sql_query_duration_seconds',
    help: 'Time of SQL source queries (successful or not).',
    labelNames: ['source'],
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers: [reg],
  });
  return { stats, duration };
}

/**
 * The stats of source `name` (shared by every holder of that name); `release()` when the
 * source stops: once no source holds them, the source's series leave the metrics (a source
 * removed by a reload would otherwise report cefd_sql_up forever).
 */
export function sqlMetrics(reg: Registry, name: string): { stats: SqlStats; duration: Histogram; release: () => void } {
  let m = byRegistry.get(reg);
  if (m === undefined) {
    m = define(reg);
    byRegistry.set(reg, m);
  }
  let s = m.stats.get(name);
  if (s === undefined) {
    s = new SqlStats(name);
    m.stats.set(name, s);
  }
  s.holders++;
  const stats = s;
  const all = m;
  let released = false;
  const release = () => {
    if (released) return;
    released = true;
    if (--stats.holders > 0 || all.stats.get(name) !== stats) return;
    all.stats.delete(name);
    all.duration.remove({ source: name });
  };
  return { stats: s, duration: m.duration, release };
}
