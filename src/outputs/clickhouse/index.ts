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
  if (c.user.includes(':')) out.push({ key: 'user', message: 'cannot contain ":" (HTTP basic authentication)' });
  if (c.encoding.codec === 'cef') out.push({ key: 'encoding.codec', message: 'the clickhouse output inserts JSON rows: use encoding native, kuma or ecs' });
  const columns = Object.keys(c.columns).length > 0 ? c.columns : DEFAULT_COLUMNS[c.encoding.codec];
  if ((columns === undefined || Object.keys(columns).length === 0) && c.event_column === '') {
    out.push({ key: 'columns', message: `encoding ${c.encoding.codec} has no default layout and event_column is empty: name the columns (column: field.path)` });
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
