/**
 * The sql source (src/sources/sql/source.ts) run in this process against a real database
 * server (test/helpers/db-servers.ts), with a stand-in for the pipeline that takes every
 * batch: the tests see the events the source submits, its log lines and its cursor file,
 * without a built `dist/` (the child-process tests run `cefd run` from there).
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadConfigText } from '../../../src/config/load.js';
import type { CefdEvent } from '../../../src/event.js';
import type { FlowControl } from '../../../src/pipeline/flow-control.js';
import type { Pipeline } from '../../../src/pipeline/pipeline.js';
import { SqlSource } from '../../../src/sources/sql/source.js';
import { Telemetry } from '../../../src/telemetry/telemetry.js';
import { LogCapture, waitFor } from '../../helpers/daemon.js';
import { tempDir } from '../../helpers/temp.js';
import { afterAll, beforeAll } from 'vitest';
import { startPostgres, type DbServer } from '../../helpers/db-servers.js';

export interface RunningSource {
  readonly source: SqlSource;
  readonly events: CefdEvent[];
  readonly dead: string[];
  readonly logs: LogCapture;
  readonly stateDir: string;
  /** A sample of the source's metrics (`cefd_sql_errors_total{source="src",reason="query"}`), 0 when absent. */
  metric(series: string): Promise<number>;
  /** The cursor file, null while there is none. */
  state(): { cursor: unknown; kind?: unknown; epoch: number; seen: string[] } | null;
  /** Log lines of failed attempts (`reason` set), with their messages. */
  errors(): { reason: string; err: string }[];
  /** The `sql.cursor` of each event, in submission order. */
  cursors(): unknown[];
  /** Waits until `n` events were submitted (the log's tail in the error otherwise). */
  waitEvents(n: number, ms?: number): Promise<void>;
  stop(): Promise<void>;
}

/**
 * Starts a source from its YAML lines (indented under `sql_sources: - `, e.g.
 * `    cursor_column: k`), polling every 50 ms unless the lines say otherwise.
 */
export async function startSource(url: string, lines: string[], stateDir = tempDir('cefd-sqlproc-')): Promise<RunningSource> {
  const extra = lines.join('\n');
  const defaults = ['poll_interval: 50ms', 'max_backoff: 200ms', 'query_timeout: 5s', 'connect_timeout: 5s'].filter((d) => !extra.includes(`${d.split(':')[0]!}:`));
  const yaml = ['sql_sources:', '  - name: src', `    url: "${url}"`, ...defaults.map((d) => `    ${d}`), extra].join('\n');
  const config = loadConfigText(yaml, join(stateDir, 'cefd.yaml'), {}).sql_sources[0]!;
  const events: CefdEvent[] = [];
  const dead: string[] = [];
  const pipeline = {
    roomForRecords: () => true,
    submitRecordsIfTaken: (ev: readonly CefdEvent[], dl: readonly string[]) => {
      events.push(...ev);
      dead.push(...dl);
      return true;
    },
    onDisk: async () => undefined,
  } as unknown as Pipeline;
  const logs = new LogCapture();
  const telemetry = new Telemetry({ level: 'debug', destination: logs, processMetrics: false, repeatIntervalMs: 0 });
  const source = new SqlSource(config, { pipeline, flow: { paused: false } as unknown as FlowControl, telemetry, normalizers: [], stateDir });
  await source.start();
  const file = join(stateDir, 'sql', 'src.json');
  const errors = () =>
    logs
      .parsed()
      .filter((l) => typeof l['reason'] === 'string')
      .map((l) => ({ reason: l['reason'] as string, err: String(l['err']) }));
  return {
    source,
    events,
    dead,
    logs,
    stateDir,
    metric: async (series) => {
      const line = (await telemetry.registry.metrics()).split('\n').find((l) => l.startsWith(`${series} `));
      return line === undefined ? 0 : Number(line.slice(series.length + 1));
    },
    state: () => (existsSync(file) ? (JSON.parse(readFileSync(file, 'utf8')) as { cursor: unknown; kind?: unknown; epoch: number; seen: string[] }) : null),
    errors,
    cursors: () => events.map((e) => (e.sql as { cursor: unknown }).cursor),
    waitEvents: (n, ms = 20_000) =>
      waitFor(() => events.length >= n, ms, `${n} events`).catch((e) => {
        throw new Error(`${(e as Error).message}: got ${events.length} (${JSON.stringify(events.map((x) => (x.sql as { cursor: unknown }).cursor))})\n${logs.lines.slice(-8).join('\n')}`);
      }),
    stop: () => source.stop(2000),
  };
}

/** Lets the source poll for `ms` (several polls at 50 ms). */
export function idle(ms = 600): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/**
 * A PostgreSQL server for the tests of a describe block (started before them, stopped after,
 * with every source `run` started and what `cleanup` closes): `db` once started.
 */
export function postgresSuite(cleanup?: () => Promise<void>): { readonly db: DbServer; run(lines: string[], stateDir?: string): Promise<RunningSource> } {
  const running: RunningSource[] = [];
  let server: DbServer | undefined;
  beforeAll(async () => {
    server = await startPostgres();
  }, 120_000);
  afterAll(async () => {
    for (const s of running.splice(0)) await s.stop();
    await cleanup?.();
    await server?.stop();
  }, 120_000);
  return {
    get db(): DbServer {
      return server!;
    },
    async run(lines: string[], stateDir?: string): Promise<RunningSource> {
      const s = await startSource(server!.url(), lines, stateDir);
      running.push(s);
      return s;
    },
  };
}
