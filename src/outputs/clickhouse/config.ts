/** The `clickhouse` output's options: the one place they are written (type inferred below). */
import { fields, pathSpec, str, type ConfigOf } from '../../config/spec.js';
import { HTTP_TRANSPORT_FIELDS } from '../shared/http-transport.js';

// The shared transport's connection options, as they are; its authentication options are
// not offered: ClickHouse takes a user and a password (sent as HTTP basic authentication).
const { headers, timeout, max_retry_after, ca_file, cert_file, key_file, server_name, insecure_skip_verify, compress } = HTTP_TRANSPORT_FIELDS;

export const CLICKHOUSE_FIELDS = fields({
  url: str('ClickHouse HTTP interface: `http://host:8123` or `https://host:8443` (the query string is cefd\'s).', { required: true }),
  database: str('Database of `table`.', { default: 'default' }),
  table: str('Table the rows are inserted into (`INSERT INTO <database>.<table> FORMAT JSONEachRow`); see docs/outputs-clickhouse.md for its DDL.', { required: true }),
  user: str('ClickHouse user (sent with the password as HTTP basic authentication).', { default: 'default' }),
  password: str('Password of `user`; or password_file (empty: no password).', { secret: true }),
  password_file: pathSpec('File holding the password of `user` (one line).'),
  columns: {
    kind: 'map',
    doc: 'Row layout: `column: dotted.field.path` of the encoded event (objects and arrays are written as JSON text). Empty: the documented layout of the encoding (`native` or `kuma`).',
    value: { kind: 'string', doc: 'dotted field path of the encoded event' },
  },
  event_column: str('String column that gets the whole encoded event (its JSON text); empty: none.', { default: 'event' }),
  settings: {
    kind: 'map',
    doc: 'ClickHouse settings sent with every insert (`insert_quorum: "2"`, ...); cefd sets `date_time_input_format: best_effort` unless given here.',
    value: { kind: 'string', doc: 'setting value' },
  },
  headers,
  timeout,
  max_retry_after,
  ca_file,
  cert_file,
  key_file,
  server_name,
  insecure_skip_verify,
  compress,
});

export type ClickHouseConfig = ConfigOf<typeof CLICKHOUSE_FIELDS>;
