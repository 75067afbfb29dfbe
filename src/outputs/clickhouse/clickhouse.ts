/**
 * The `clickhouse` output: each batch becomes one `INSERT INTO <db>.<table> FORMAT
 * JSONEachRow` over ClickHouse's HTTP interface, through the shared HTTP transport
 * (src/outputs/shared/http-transport.ts: keep-alive, TLS, gzip, timeouts). Reference:
 * docs/outputs-clickhouse.md (table DDL, semantics, figures).
 *
 * Rows: each encoded event is read back (JSON) and laid out as the configured `columns`
 * (column -> dotted field path; objects and arrays become JSON text, because ClickHouse
 * 18.16 cannot read a JSON object into a column), plus the whole encoded event in
 * `event_column`. Names of the rows are exact column names, so no setting that newer
 * servers add (input_format_import_nested_json, Map, JSON types) is needed.
 *
 * What ClickHouse answers, by its exception code (the `Code: N` that starts the error
 * body; 18.16 sends most errors, parse errors included, as HTTP 500, so the status alone
 * cannot tell a bad row from a busy server):
 * - a data error (the row cannot be parsed or converted: DATA_ERROR_CODES): a block of
 *   fewer than max_insert_block_size rows (1,048,576) is parsed whole before anything is
 *   written, so the insert wrote nothing. The batch is split, at the row the server names
 *   (`at row N`) or else in halves, and the pieces are sent again at once, until every bad
 *   row stands alone: those are rejected (dead-lettered) with the server's text, the rest
 *   are inserted.
 * - authentication, a missing table/database, a layout column the table lacks
 *   (CONFIG_CODES, "Unknown field found"): `retry` with a clear error:
 *   the events wait in the buffer, with the runner's capped backoff, until the operator
 *   fixes the password or creates the table; nothing is dead-lettered for a config error.
 * - 413 (a proxy in front with a body limit): the batch is split in halves; a row too
 *   large alone is rejected (`http_status_413`), never retried forever.
 * - anything else (network, timeout, 5xx, TOO_MANY_PARTS, memory): `retry` of the same batch.
 */
import { errorText, isEmptyBatch } from '../shared/encode.js';
import { HttpTransport, bodySnippet, tooLarge, type HttpTransportConfig, type HttpTransportDeps } from '../shared/http-transport.js';
import { DELIVERED, type Batch, type Output, type PartialResult, type SendResult } from '../types.js';
import type { ClickHouseConfig } from './config.js';

export type { ClickHouseConfig } from './config.js';

/** Columns of the documented table for each JSON encoding (docs/outputs-clickhouse.md). */
export const DEFAULT_COLUMNS: Readonly<Record<string, Readonly<Record<string, string>>>> = {
  native: {
    id: 'id',
    timestamp: 'timestamp',
    received: 'received',
    host: 'syslog.hostname',
    device_vendor: 'cef.deviceVendor',
    device_product: 'cef.deviceProduct',
    event_class_id: 'cef.deviceEventClassId',
    name: 'cef.name',
    severity: 'cef.severity',
    ksc_category: 'ksc.category',
    ksc_severity: 'ksc.severity',
  },
  kuma: {
    ID: 'ID',
    Timestamp: 'Timestamp',
    DeviceVendor: 'DeviceVendor',
    DeviceProduct: 'DeviceProduct',
    DeviceVersion: 'DeviceVersion',
    DeviceEventClassID: 'DeviceEventClassID',
    Name: 'Name',
    Severity: 'Severity',
    Message: 'Message',
    DeviceHostName: 'DeviceHostName',
    DestinationHostName: 'DestinationHostName',
    DestinationAddress: 'DestinationAddress',
    DestinationUserName: 'DestinationUserName',
    SourceAddress: 'SourceAddress',
    Extra: 'Extra',
  },
};

/**
 * ClickHouse exception codes that mean "this data cannot go into this table": parse and
 * conversion errors of a row (ClickHouse's src/Common/ErrorCodes.cpp). A batch failing
 * with one of these is split to find the row.
 */
export const DATA_ERROR_CODES: ReadonlySet<number> = new Set([
  6, // CANNOT_PARSE_TEXT
  25, // CANNOT_PARSE_ESCAPE_SEQUENCE
  26, // CANNOT_PARSE_QUOTED_STRING
  27, // CANNOT_PARSE_INPUT_ASSERTION_FAILED
  32, // ATTEMPT_TO_READ_AFTER_EOF
  38, // CANNOT_PARSE_DATE
  41, // CANNOT_PARSE_DATETIME
  53, // TYPE_MISMATCH
  69, // ARGUMENT_OUT_OF_BOUND
  70, // CANNOT_CONVERT_TYPE
  72, // CANNOT_PARSE_NUMBER
  117, // INCORRECT_DATA (but "Unknown field found": the layout names a column the table lacks, a config error)
  131, // TOO_LARGE_STRING_SIZE
  349, // CANNOT_INSERT_NULL_IN_ORDINARY_COLUMN
  376, // CANNOT_PARSE_UUID (newer servers)
  377, // CANNOT_PARSE_DOMAIN_VALUE_FROM_STRING (newer servers)
  691, // UNKNOWN_ELEMENT_OF_ENUM (newer servers; 18.16 says the same as code 49, see ENUM_ELEMENT)
]);

/** Codes that no retry of the data fixes, only the operator: wait in the buffer (with backoff). */
export const CONFIG_CODES: ReadonlyMap<number, string> = new Map([
  [60, 'the table does not exist: create it (docs/outputs-clickhouse.md has the DDL)'],
  [81, 'the database does not exist'],
  [16, 'a column of the row layout is not in the table: add it or change `columns`'],
  [164, 'the user is read-only'],
  [192, 'authentication failed (unknown user): check user and password_file'],
  [193, 'authentication failed (wrong password): check user and password_file'],
  [194, 'authentication failed (a password is required): set password_file'],
  [195, 'the server does not accept this user from this address'],
  [497, 'access denied: grant INSERT on the table'],
  [516, 'authentication failed: check user and password_file'],
]);

/** Dead-letter reason of a row ClickHouse refused. */
export const REJECT_REASON = 'clickhouse_row_rejected';
/** Dead-letter reason of a record that is not a JSON object (cannot become a row). */
export const NOT_JSON_REASON = 'clickhouse_record_not_json';

/**
 * Characters of a ClickHouse error quoted in the error (the dead-letter reason, the log).
 * Its message puts the input it choked on (up to about 160 characters) before the column
 * and the row (`...: (while read the value of key n): (at row 2)`), so the transport's
 * default 256 cut those off; the row then was unknown (the batch split in halves instead)
 * and the dead letter did not say which column. Long field names make it longer still.
 */
const ERROR_BODY_CHARS = 1024;

/** `Code: N` at the start of a ClickHouse error body (18.16: `Code: 27, e.displayText() = ...`; newer: `Code: 27. DB::Exception: ...`). */
const CODE_IN_ERROR = /HTTP \d{3}: Code: (\d+)[.,]/;
const ROW_IN_ERROR = /\(at row (\d+)\)/;
const UNKNOWN_FIELD = /Unknown field found while parsing JSONEachRow format: ([^:,\s]+)/;
/**
 * A value that is not an element of an Enum column: 18.16 raises it as code 49
 * (LOGICAL_ERROR), which names no data problem, so it is known by its text. Without this
 * the row was retried as it was forever, and the output stood still behind it.
 */
const ENUM_ELEMENT = /Unknown element '.*' for (?:type )?Enum/;

/** Test seams; not configuration. */
export type ClickHouseOutputDeps = HttpTransportDeps;

type Row = { index: number; line: string };
/**
 * `data`: the rows are at fault (a bad value, the server may name the row; or the body is
 * over a limit, a 413 from a proxy's client_max_body_size, `reason` http_status_413): the
 * piece is split, and a row alone that still fails is dead-lettered (`reason`, else
 * clickhouse_row_rejected), rather than retried forever.
 */
type InsertResult = Exclude<SendResult, PartialResult> | { status: 'data'; error: string; row?: number; reason?: string };

export class ClickHouseOutput implements Output {
  readonly type = 'clickhouse';
  private readonly transport: HttpTransport;
  private readonly columns: [string, string[]][];
  private readonly eventColumn: string;

  constructor(
    readonly name: string,
    config: ClickHouseConfig & { encoding?: { codec: string } },
    deps: ClickHouseOutputDeps = {},
  ) {
    const codec = config.encoding?.codec ?? 'native';
    const cols = Object.keys(config.columns ?? {}).length > 0 ? config.columns : (DEFAULT_COLUMNS[codec] ?? {});
    this.columns = Object.entries(cols).map(([col, path]) => [col, path.split('.')]);
    this.eventColumn = config.event_column;
    this.transport = new HttpTransport(`clickhouse output ${name}`, transportConfig(config), 'application/x-ndjson', deps, { errorBodyChars: ERROR_BODY_CHARS });
  }

  start(): Promise<void> {
    return this.transport.start();
  }

  async send(batch: Batch, signal?: AbortSignal): Promise<SendResult> {
    if (isEmptyBatch(batch)) return DELIVERED;
    const rows: Row[] = [];
    const rejected: { index: number; reason: string; error: string }[] = [];
    for (let i = 0; i < batch.records.length; i++) {
      const r = this.row(batch.records[i]!);
      if (typeof r === 'string') rows.push({ index: i, line: r });
      else rejected.push({ index: i, reason: NOT_JSON_REASON, error: `clickhouse output ${this.name}: ${r.error}` });
    }
    const retry: number[] = [];
    let retryError = '';
    let retryAfterMs: number | undefined;
    // Pieces still to insert; a data error splits a piece into smaller ones.
    const todo: Row[][] = rows.length > 0 ? [rows] : [];
    while (todo.length > 0) {
      const piece = todo.shift()!;
      const r = await this.insert(piece, signal);
      if (r.status === 'delivered') continue;
      if (r.status === 'retry' || r.status === 'rejected') {
        // Not a row's fault: this piece and every one not yet sent wait for the next attempt.
        if (rejected.length === 0 && retry.length === 0 && piece === rows) {
          return r.status === 'retry' ? r : { status: 'retry', error: r.error };
        }
        for (const p of [piece, ...todo]) for (const row of p) retry.push(row.index);
        todo.length = 0;
        retryError = r.error;
        if (r.status === 'retry') retryAfterMs = r.retryAfterMs;
        break;
      }
      // A data error (or a piece too large).
      if (piece.length === 1) {
        rejected.push({ index: piece[0]!.index, reason: r.reason ?? REJECT_REASON, error: r.error });
        continue;
      }
      const at = r.row !== undefined && r.row >= 1 && r.row <= piece.length ? r.row - 1 : -1;
      if (at >= 0) {
        // The server named the row: try it alone, and the others together.
        todo.unshift([piece[at]!], [...piece.slice(0, at), ...piece.slice(at + 1)]);
      } else {
        const half = Math.ceil(piece.length / 2);
        todo.unshift(piece.slice(0, half), piece.slice(half));
      }
    }
    if (rejected.length === 0 && retry.length === 0) return DELIVERED;
    return {
      status: 'partial',
      error: retryError || `clickhouse output ${this.name}: ${rejected.length} row(s) refused`,
      ...(retry.length > 0 ? { retry } : {}),
      ...(rejected.length > 0 ? { rejected } : {}),
      ...(retryAfterMs !== undefined ? { retryAfterMs } : {}),
    };
  }

  /** Aborts an insert in flight (its send reports `retry`) and closes idle connections. */
  close(): Promise<void> {
    return this.transport.close();
  }

  /** One JSONEachRow line for an encoded event, or why it cannot be one. */
  private row(record: string): string | { error: string } {
    let ev: unknown;
    try {
      ev = JSON.parse(record);
    } catch (err) {
      return { error: `the encoded event is not JSON (${errorText(err)}); use encoding native, kuma or ecs` };
    }
    if (ev === null || typeof ev !== 'object' || Array.isArray(ev)) return { error: 'the encoded event is not a JSON object' };
    const out: Record<string, unknown> = {};
    for (const [col, path] of this.columns) {
      let v: unknown = ev;
      for (const k of path) {
        if (v === null || typeof v !== 'object') {
          v = undefined;
          break;
        }
        v = (v as Record<string, unknown>)[k];
      }
      if (v === undefined || v === null) continue; // the column's DEFAULT applies
      if (typeof v === 'object') out[col] = JSON.stringify(v);
      else if (typeof v === 'boolean') out[col] = v ? 1 : 0;
      else out[col] = v;
    }
    if (this.eventColumn !== '') out[this.eventColumn] = record;
    return JSON.stringify(out);
  }

  /** One INSERT of `rows`; a data error comes back as `data` with the server's text and row. */
  private async insert(rows: readonly Row[], signal?: AbortSignal): Promise<InsertResult> {
    let size = rows.length;
    for (const r of rows) size += Buffer.byteLength(r.line, 'utf8');
    const body = Buffer.allocUnsafe(size);
    let at = 0;
    for (const r of rows) {
      at += body.write(r.line, at, 'utf8');
      body[at++] = 0x0a;
    }
    const r = await this.transport.send(body, true, signal);
    if (r.status === 'delivered') {
      // An INSERT answers 200 with an empty body; an exception after the status line (a
      // server that streamed progress) shows up in the body instead.
      const text = r.body?.toString('utf8', 0, 512) ?? '';
      const inBody = /^Code: (\d+)[.,]/m.exec(text);
      if (inBody === null) return { status: 'delivered' };
      // Classified as an error status would be: a data error is split to its row, not retried as it is forever.
      const error = `clickhouse output ${this.name}: HTTP 200 with an error in the body${bodySnippet(r.body!, ERROR_BODY_CHARS)}`;
      return this.classify({ status: 'retry', error }, Number(inBody[1]), r.body!);
    }
    if (r.status !== 'retry' && r.status !== 'rejected') return { status: 'retry', error: `clickhouse output ${this.name}: unexpected transport result ${r.status}` };
    if (tooLarge(r)) return { status: 'data', error: r.error, reason: r.reason };
    const m = CODE_IN_ERROR.exec(r.error);
    return this.classify(r, m === null ? undefined : Number(m[1]), r.body);
  }

  /** What a ClickHouse exception with `code` means for the rows; `body`: the whole answer (the error text is cut). */
  private classify(r: Extract<SendResult, { status: 'retry' | 'rejected' }>, code: number | undefined, body: Buffer | undefined): InsertResult {
    // A row field the table has no column for: the layout (`columns`, `event_column`) and
    // the table disagree, which no row can fix; every row would be dead-lettered one by one.
    const unknown = code === 117 ? UNKNOWN_FIELD.exec(r.error) : null;
    if (unknown !== null) {
      return { status: 'retry', error: `${r.error} (the table has no column ${unknown[1]}: add it, or change columns/event_column; the events wait in the buffer)` };
    }
    if (code !== undefined && (DATA_ERROR_CODES.has(code) || ENUM_ELEMENT.test(r.error))) {
      // The row number from the whole answer: the error text is cut at ERROR_BODY_CHARS.
      const row = ROW_IN_ERROR.exec(body !== undefined ? body.toString('utf8', 0, 64 * 1024) : r.error);
      return { status: 'data', error: r.error, ...(row !== null ? { row: Number(row[1]) } : {}) };
    }
    if (code !== undefined && CONFIG_CODES.has(code)) {
      return { status: 'retry', error: `${r.error} (${CONFIG_CODES.get(code)}; the events wait in the buffer)` };
    }
    // Any other refusal (an unknown code, a proxy's 4xx) is not known to be permanent for
    // these rows: keep them and retry rather than dead-letter a whole batch.
    return r.status === 'retry' ? r : { status: 'retry', error: r.error };
  }
}

/** The transport's view of the options: the URL carries the query and settings, the user goes in basic auth. */
export function transportConfig(c: ClickHouseConfig): HttpTransportConfig {
  const url = new URL(c.url);
  const params = new URLSearchParams(url.search);
  params.set('query', `INSERT INTO ${quoteIdent(c.database)}.${quoteIdent(c.table)} FORMAT JSONEachRow`);
  if (c.settings?.['date_time_input_format'] === undefined) params.set('date_time_input_format', 'best_effort');
  for (const [k, v] of Object.entries(c.settings ?? {})) params.set(k, v);
  // With async_insert the answer must wait for the rows to be parsed and written (the
  // server's own default, which a user profile may change): else a 200 means "queued".
  const asyncInsert = params.get('async_insert');
  if (asyncInsert !== null && !/^(0|false|)$/i.test(asyncInsert.trim()) && !params.has('wait_for_async_insert')) params.set('wait_for_async_insert', '1');
  url.search = params.toString();
  return {
    url: url.toString(),
    headers: c.headers ?? {},
    timeout: c.timeout,
    max_retry_after: c.max_retry_after,
    ...(c.ca_file !== undefined ? { ca_file: c.ca_file } : {}),
    ...(c.cert_file !== undefined ? { cert_file: c.cert_file } : {}),
    ...(c.key_file !== undefined ? { key_file: c.key_file } : {}),
    ...(c.server_name !== undefined ? { server_name: c.server_name } : {}),
    insecure_skip_verify: c.insecure_skip_verify,
    compress: c.compress,
    api_key_header: 'X-API-Key',
    basic_auth_user: c.user,
    basic_auth_password: c.password ?? '',
  };
}

/** A database or table name in backquotes (ClickHouse identifier quoting). */
export function quoteIdent(name: string): string {
  return '`' + name.replace(/\\/g, '\\\\').replace(/`/g, '\\`') + '`';
}
