/**
 * `cefd sql test --config FILE [--source NAME] [--rows N]`: for each SQL source (or the one
 * named), connect, run the query with the stored cursor (or initial_cursor), and print the
 * first rows as normalized events, one JSON object per line. Writes nothing: no cursor, no
 * state file, nothing sent to an output. Exit 0 when every source answered, 1 when one
 * failed, 78 on a configuration error.
 */
import type { Command } from 'commander';
import { EXIT } from '../../errors.js';
import { loadNormalizer, normalizerSpec, normalizeEvent } from '../../pipeline/normalize.js';
import { readState, type Cursor, type CursorKind } from './cursor.js';
import { classify, settleWithin, SqlError } from './drivers.js';
import { missingCursorColumn, SqlQueryPlan } from './source.js';

export function registerSqlCommands(program: Command): void {
  const sql = program.command('sql').description('SQL sources (events from the KSC database)');
  sql
    .command('test')
    .description('Connect, run each SQL source\'s query with its current cursor, print the first rows normalized; changes nothing')
    .requiredOption('-c, --config <file>', 'YAML configuration file')
    .option('--source <name>', 'only this source')
    .option('--rows <n>', 'rows to print per source', '5')
    .action(async (o: { config: string; source?: string; rows: string }) => {
      process.exitCode = await sqlTest(o.config, o.source, Math.max(1, Number(o.rows) || 5), (s) => process.stdout.write(s), (s) => process.stderr.write(s));
    });
}

export async function sqlTest(file: string, only: string | undefined, rows: number, out: (s: string) => void, err: (s: string) => void): Promise<number> {
  const { loadConfig, ConfigError } = await import('../../config/load.js');
  const { checkNormalizers } = await import('../../config/normalizers.js');
  let c;
  try {
    c = loadConfig(file);
    await checkNormalizers(c, file);
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    err(`${e.message}\n`);
    return EXIT.config;
  }
  const list = c.sql_sources.filter((q) => only === undefined || q.name === only);
  if (list.length === 0) {
    err(only !== undefined ? `no sql source named ${only} in ${file}\n` : `${file} has no sql_sources\n`);
    return EXIT.config;
  }
  let failed = false;
  for (const q of list) {
    const plan = new SqlQueryPlan(q);
    const chain = [];
    for (const spec of q.normalizers) chain.push(await loadNormalizer(normalizerSpec(spec), c.base_dir));
    let conn;
    try {
      conn = await plan.connect();
      let state;
      try {
        state = readState(plan.stateFile(c.state_dir));
      } catch (e) {
        throw new Error(`the cursor file cannot be read: ${(e as Error).message}`);
      }
      let cursor: Cursor;
      let kind: CursorKind | null | undefined;
      let epoch = 0;
      let from: string;
      if (state !== null && plan.storedState(state) === 'use') {
        cursor = state.cursor;
        kind = state.kind;
        epoch = state.epoch;
        from = 'stored cursor';
      } else if (q.initial_cursor === 'latest') {
        const latest = await plan.latest(conn);
        if (latest === undefined) {
          // As the source does: no value (an empty table) is no place to start; it asks again at every poll.
          err(`sql source ${q.name}: connected to ${plan.target.redacted}; latest_query returned no value (no rows yet): the source starts once it returns one\n`);
          continue;
        }
        cursor = latest.value;
        kind = latest.kind;
        from = 'latest (initial_cursor)';
      } else {
        cursor = q.initial_cursor;
        kind = null;
        from = 'initial_cursor';
      }
      const t0 = Date.now();
      const got = await plan.fetch(conn, cursor, kind, rows);
      const missing = got.length > 0 ? missingCursorColumn(got[0]!, q.cursor_column) : null;
      if (missing !== null) throw new SqlError('query', missing);
      err(`sql source ${q.name}: connected to ${plan.target.redacted}; ${got.length} rows after ${q.cursor_column} ${String(cursor)} (${from}) in ${Date.now() - t0} ms\n`);
      const now = Date.now();
      for (const row of got) {
        const ev = plan.rowEvent(row, row[q.cursor_column] as Cursor, epoch, now);
        normalizeEvent(ev, chain);
        out(JSON.stringify(ev) + '\n');
      }
    } catch (e) {
      const x = classify(e);
      err(`sql source ${q.name}: ${x.reason} error: ${x.message}\n`);
      failed = true;
    } finally {
      // As the source does: a client that cannot close cleanly must not hold the other sources' tests.
      if (conn !== undefined) await settleWithin(conn.close(), 3000);
    }
  }
  return failed ? EXIT.failure : EXIT.ok;
}
