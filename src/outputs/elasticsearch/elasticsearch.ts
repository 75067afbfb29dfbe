/**
 * The `elasticsearch` output (Elasticsearch and OpenSearch): each batch is one or more
 * `_bulk` requests of `create` actions whose `_id` is the event id, through the shared
 * HTTP transport (src/outputs/shared/http-transport.ts). What the cluster answers is read
 * item by item (the bulk API answers 200 even when items failed, `errors: true`):
 * - 2xx: written. 409 `version_conflict_engine_exception` on `create`: a document with
 *   this id exists, so an earlier attempt wrote it (a retry after a lost answer):
 *   accepted, never a duplicate.
 * - 429, 5xx, and the rejected-for-load exceptions: that item alone is sent again.
 * - 401/403 (`security_exception`: the role lacks the index privilege;
 *   `cluster_block_exception`: a write block), a missing ingest pipeline, and an index
 *   that cannot take writes as the cluster is set up (404 `index_not_found_exception`:
 *   the index or data stream does not exist and `action.auto_create_index` forbids
 *   creating it; 400 `index_closed_exception`; 400 `illegal_argument_exception` "no write index is
 *   defined for alias"): a mistake in the cluster's or cefd's configuration, not in the
 *   event, that every event sent there meets alike, fixed without losing events: sent
 *   again no sooner than AUTH_RETRY_MS apart, as a whole-request 401/403 is
 *   (configItemProblem).
 * - Any other item error (a mapping error, a bad index name): that item is dead-lettered
 *   with reason `elasticsearch_<error type>` and the cluster's reason.
 * A whole-request 413 splits the batch in halves (down to one event, then dead-lettered);
 * 401/403 are retried no sooner than AUTH_RETRY_MS apart (the events are fine; the
 * credentials are not), and so are 404, 405 and redirects (the `url` names no bulk API:
 * wrongEndpointStatus); other whole-request answers as the transport classifies them.
 * The output never retries or sleeps by itself: it answers, the runner acts (../types.ts).
 */
import { isEmptyBatch } from '../shared/encode.js';
import { newOutcome, resultOf, retryRange, sendHalves, sendInRequests, type Outcome } from '../shared/bulk.js';
import { HttpTransport, tooLarge, wrongEndpointStatus, type HttpTransportDeps, type TransportResult } from '../shared/http-transport.js';
import { recordMeta } from '../shared/record-meta.js';
import { CONFIG_RETRY_MS, DELIVERED, type Batch, type Output, type SendResult } from '../types.js';
import type { ElasticsearchConfig } from './config.js';

export type { ElasticsearchConfig } from './config.js';

/** Least wait between attempts while the cluster refuses the credentials or the URL (../types.ts). */
export const AUTH_RETRY_MS = CONFIG_RETRY_MS;

/** Item error types that mean "busy, try again" whatever their status (ES and OpenSearch names). */
const RETRY_TYPES = new Set(['es_rejected_execution_exception', 'rejected_execution_exception', 'circuit_breaking_exception', 'unavailable_shards_exception']);

const ERROR_TEXT_CHARS = 300;

/** `cefd-%Y.%m.%d` for one time (UTC). */
export function indexName(pattern: string, timeMs: number): string {
  if (!pattern.includes('%')) return pattern;
  const d = new Date(timeMs);
  const two = (n: number) => String(n).padStart(2, '0');
  return pattern.replace(/%([YmdH%])/g, (_m, c: string) => {
    switch (c) {
      case 'Y':
        return String(d.getUTCFullYear());
      case 'm':
        return two(d.getUTCMonth() + 1);
      case 'd':
        return two(d.getUTCDate());
      case 'H':
        return two(d.getUTCHours());
      default:
        return '%';
    }
  });
}

/** A reason code from an error type: `elasticsearch_` and the type's safe characters. */
export function itemReason(type: unknown): string {
  // At most 64 characters: the reason is a metric label, whatever the cluster (or a proxy) says.
  const t = typeof type === 'string' ? type.replace(/[^a-z0-9_]/gi, '').toLowerCase().slice(0, 64) : '';
  return `elasticsearch_${t === '' ? 'item_error' : t}`;
}

/**
 * What to fix when a `_bulk` item error is the cluster's or cefd's configuration rather
 * than the event (the same event goes in once it is fixed), or undefined when the event
 * itself is refused. Error types and reasons as Elasticsearch and OpenSearch give them
 * (test/helpers/es-emulator.ts has the sources).
 */
export function configItemProblem(status: number, type: unknown, reason: string): string | undefined {
  if (status === 401 || status === 403) return 'give the role the index privilege, or lift the write block';
  if (/^pipeline with id \[.*\] does not exist/.test(reason)) return 'create the ingest pipeline, or change the output\'s pipeline';
  if (type === 'index_not_found_exception') return 'create the index or data stream, or let the cluster create it (action.auto_create_index, or allow_auto_create in its index template)';
  if (type === 'index_closed_exception') return 'open the index';
  if (type === 'illegal_argument_exception' && /^no write index is defined for alias /.test(reason)) return 'give the alias a write index (is_write_index), or change the output\'s index';
  return undefined;
}

export class ElasticsearchOutput implements Output {
  readonly type = 'elasticsearch';
  private readonly transport: HttpTransport;
  private readonly pattern: string;
  private readonly maxBytes: number;
  private readonly label: string;

  constructor(
    readonly name: string,
    config: ElasticsearchConfig,
    deps: HttpTransportDeps = {},
  ) {
    this.label = `elasticsearch output ${name}`;
    this.pattern = config.data_stream ?? config.index ?? 'cefd-%Y.%m.%d';
    this.maxBytes = config.max_request_bytes;
    const base = new URL(config.url);
    if (!base.pathname.endsWith('/')) base.pathname += '/';
    const bulk = new URL('_bulk', base);
    if (config.pipeline !== undefined) bulk.searchParams.set('pipeline', config.pipeline);
    const headers: Record<string, string> = { ...(config.headers ?? {}) };
    if (config.api_key !== undefined) headers['authorization'] = `ApiKey ${config.api_key.trim()}`;
    this.transport = new HttpTransport(this.label, { ...config, url: bulk.toString(), headers, api_key: undefined, api_key_header: 'X-API-Key' }, 'application/x-ndjson', deps);
  }

  start(): Promise<void> {
    return this.transport.start();
  }

  async send(batch: Batch, signal?: AbortSignal): Promise<SendResult> {
    if (isEmptyBatch(batch)) return DELIVERED;
    const records = batch.records;
    const now = Date.now();
    const lines: Buffer[] = new Array(records.length);
    for (let i = 0; i < records.length; i++) {
      const r = records[i]!;
      const m = recordMeta(r);
      const action: { _index: string; _id?: string } = { _index: indexName(this.pattern, m.timeMs ?? now) };
      if (m.id !== undefined) action._id = m.id;
      lines[i] = Buffer.from(`{"create":${JSON.stringify(action)}}\n${r}\n`, 'utf8');
    }
    const out = newOutcome();
    // Requests of at most max_request_bytes (an event larger than that goes alone).
    await sendInRequests(lines, this.maxBytes, (start, end) => this.sendRange(lines, start, end, out, signal));
    return resultOf(out, records.length, (t) => this.transport.redact(t));
  }

  /** One `_bulk` request for records [start, end); a 413 splits it in halves. */
  private async sendRange(lines: readonly Buffer[], start: number, end: number, out: Outcome, signal?: AbortSignal): Promise<void> {
    const r: TransportResult = await this.transport.send(Buffer.concat(lines.slice(start, end)), true, signal);
    const all = () => {
      for (let i = start; i < end; i++) out.retry.push(i);
    };
    if (r.status === 'retry') return retryRange(out, start, end, r.error, r.retryAfterMs);
    if (r.status === 'rejected') {
      if (tooLarge(r) && end - start > 1) return sendHalves(start, end, (a, b) => this.sendRange(lines, a, b, out, signal));
      const why =
        r.reason === 'http_status_401' || r.reason === 'http_status_403'
          ? 'the cluster refuses the credentials: check the user, password, API key or token'
          : wrongEndpointStatus(r.httpStatus)
            ? 'no bulk API at this URL: check the output\'s url (its path, a proxy in front, http redirected to https)'
            : undefined;
      if (why !== undefined) {
        all();
        out.errors.push(`${r.error} (${why}; retrying every ${AUTH_RETRY_MS / 1000} s or more)`);
        out.retryAfterMs = Math.max(out.retryAfterMs ?? 0, AUTH_RETRY_MS);
        return;
      }
      for (let i = start; i < end; i++) out.rejected.push({ index: i, reason: r.reason, error: r.error });
      return;
    }
    if (r.status !== 'delivered') return;
    this.readItems(r.body ?? Buffer.alloc(0), start, end, out);
  }

  /** Reads a 2xx `_bulk` answer item by item; an answer that cannot be read is no success. */
  private readItems(body: Buffer, start: number, end: number, out: Outcome): void {
    let items: unknown;
    try {
      items = (JSON.parse(body.toString('utf8')) as { items?: unknown }).items;
    } catch {
      items = undefined;
    }
    if (!Array.isArray(items) || items.length !== end - start) {
      for (let i = start; i < end; i++) out.retry.push(i);
      out.errors.push(`${this.label}: the _bulk answer does not list one result per event (${Array.isArray(items) ? `${items.length} for ${end - start}` : 'unreadable'}): sending them again`);
      return;
    }
    let busy = 0;
    let busyText = '';
    let config = 0;
    let configText = '';
    let configFix = '';
    for (let k = 0; k < items.length; k++) {
      const i = start + k;
      const item = items[k] as Record<string, { status?: unknown; error?: { type?: unknown; reason?: unknown } }> | null;
      const res = item !== null && typeof item === 'object' ? Object.values(item)[0] : undefined;
      const status = typeof res?.status === 'number' ? res.status : 0;
      if (status >= 200 && status <= 299) continue;
      const type = res?.error?.type;
      if (status === 409 && type === 'version_conflict_engine_exception') continue; // written by an earlier attempt
      const text = `${status} ${typeof type === 'string' ? type : 'error'}: ${typeof res?.error?.reason === 'string' ? res.error.reason : JSON.stringify(res?.error ?? null)}`.slice(0, ERROR_TEXT_CHARS);
      if (status === 0 || status === 429 || status >= 500 || (typeof type === 'string' && RETRY_TYPES.has(type))) {
        out.retry.push(i);
        busy++;
        busyText = text;
        continue;
      }
      const fix = configItemProblem(status, type, typeof res?.error?.reason === 'string' ? res.error.reason : '');
      if (fix !== undefined) {
        out.retry.push(i);
        config++;
        configText = text;
        configFix = fix;
        continue;
      }
      out.rejected.push({ index: i, reason: itemReason(type), error: `${this.label}: ${text}` });
    }
    if (busy > 0) out.errors.push(`${this.label}: ${busy} event(s) refused for now (${busyText})`);
    if (config > 0) {
      out.errors.push(`${this.label}: ${config} event(s) refused by the cluster's or cefd's configuration (${configText}); ${configFix}: retrying every ${AUTH_RETRY_MS / 1000} s or more`);
      out.retryAfterMs = Math.max(out.retryAfterMs ?? 0, AUTH_RETRY_MS);
    }
  }

  /** Aborts a request in flight (its send reports `retry`) and closes idle connections. */
  close(): Promise<void> {
    return this.transport.close();
  }
}
