/** The `clickhouse` output plugin (registered in src/outputs/registry.ts). */
import type { FieldProblem } from '../../config/spec.js';
import { defineOutput } from '../plugin.js';
import { checkHttpTransport } from '../shared/http-transport.js';
import { ClickHouseOutput, DEFAULT_COLUMNS, transportConfig } from './clickhouse.js';
import { CLICKHOUSE_FIELDS, type ClickHouseConfig } from './config.js';

function check(c: ClickHouseConfig & { encoding: { codec: string } }): FieldProblem[] {
  const out: FieldProblem[] = [];
  let url: URL | undefined;
  try {
    url = new URL(c.url);
  } catch {
    // reported below
  }
  if (url === undefined || (url.protocol !== 'http:' && url.protocol !== 'https:')) {
    out.push({ key: 'url', message: `expected an http:// or https:// URL, got ${JSON.stringify(c.url)}` });
  } else {
    if (url.username !== '' || url.password !== '') out.push({ key: 'url', message: 'put the user in `user` and the password in `password_file`, not in the URL' });
    if (url.searchParams.has('query')) out.push({ key: 'url', message: 'the query is cefd\'s (INSERT INTO <database>.<table> FORMAT JSONEachRow): remove `query=` from the URL' });
    for (const p of transportCheck(c)) out.push(p);
  }
  for (const key of ['database', 'table'] as const) {
    if (c[key].trim() === '' || /[\u0000-\u001f`]/.test(c[key])) out.push({ key, message: `must be a plain ClickHouse name (no backquote or control character), got ${JSON.stringify(c[key])}` });
  }
  for (const p of lossySettings(c, url)) out.push(p);
  if (c.user.includes(':')) out.push({ key: 'user', message: 'cannot contain ":" (HTTP basic authentication)' });
  if (c.encoding.codec === 'cef') out.push({ key: 'encoding.codec', message: 'the clickhouse output inserts JSON rows: use encoding native, kuma or ecs' });
  const columns = Object.keys(c.columns).length > 0 ? c.columns : DEFAULT_COLUMNS[c.encoding.codec];
  if ((columns === undefined || Object.keys(columns).length === 0) && c.event_column === '') {
    out.push({ key: 'columns', message: `encoding ${c.encoding.codec} has no default layout and event_column is empty: name the columns (column: field.path)` });
  }
  return out;
}

const truthy = (v: string | undefined) => v !== undefined && !/^(0|false|)$/i.test(v.trim());

/**
 * Settings under which ClickHouse answers 200 for rows it did not insert, so cefd would
 * count lost events as delivered: `async_insert` without waiting (the answer comes before
 * the data is parsed; bad rows are dropped by the server later) and allowing errors (bad
 * rows skipped). A setting may come from `settings` or the URL's query.
 */
function lossySettings(c: ClickHouseConfig, url: URL | undefined): FieldProblem[] {
  const get = (k: string): [string, string | undefined] => (c.settings?.[k] !== undefined ? [`settings.${k}`, c.settings[k]] : ['url', url?.searchParams.get(k) ?? undefined]);
  const out: FieldProblem[] = [];
  const [, async] = get('async_insert');
  const [waitKey, wait] = get('wait_for_async_insert');
  if (truthy(async) && wait !== undefined && !truthy(wait)) {
    out.push({ key: waitKey, message: 'async_insert with wait_for_async_insert 0 answers before the rows are parsed: rows the server then refuses are lost without a dead letter; leave wait_for_async_insert at 1' });
  }
  for (const k of ['input_format_allow_errors_num', 'input_format_allow_errors_ratio']) {
    const [key, v] = get(k);
    if (v !== undefined && Number(v) !== 0) out.push({ key, message: `${k} makes the server skip bad rows and answer 200: they would be lost without a dead letter; cefd dead-letters each bad row itself` });
  }
  return out;
}

/** The transport's own checks (timeout, cert/key pairs) on the options it gets. */
function transportCheck(c: ClickHouseConfig): FieldProblem[] {
  return checkHttpTransport(transportConfig(c)).filter((p) => p.key !== 'url' && !p.key.startsWith('basic_auth') && p.key !== 'bearer_token');
}

export const clickhouseOutput = defineOutput({
  type: 'clickhouse',
  doc: 'ClickHouse over HTTP: batches as `INSERT ... FORMAT JSONEachRow` (docs/outputs-clickhouse.md).',
  fields: CLICKHOUSE_FIELDS,
  diskBuffer: true,
  check,
  create: (c) => new ClickHouseOutput(c.name, c),
});
