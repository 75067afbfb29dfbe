/**
 * The `splunk_hec` output: each batch is one or more POSTs to Splunk's HTTP Event
 * Collector (`/services/collector/event`), one JSON object per event (`time`, `host`,
 * `source`, `sourcetype`, `index`, `event`: the record itself, or its text when it is not
 * JSON), through the shared HTTP transport (src/outputs/shared/http-transport.ts). What HEC
 * answers (its status codes and `code` values, per Splunk's "Troubleshoot HTTP Event
 * Collector" table):
 * - 200 code 0: every event of the request was received.
 * - 503 (9 server busy, 18-20 unhealthy), 500 (8), network errors, timeouts: sent again.
 * - 400 with an event-level code (5 no data, 6 invalid data format, 12 event field
 *   required, 13 event field blank, 15 indexed fields): with `invalid-event-number` that
 *   event alone is dead-lettered and the others are sent again (Splunk does not say
 *   whether the events before it were indexed, so they may arrive twice: at least once);
 *   without it, the request's events are dead-lettered.
 * - 401/403 (codes 1-4), and the configuration codes 7 (index not allowed for the
 *   token), 10/11/14 (channel and acknowledgement), 16: the events are fine, the
 *   configuration is not: sent again no sooner than CONFIG_RETRY_MS apart, with the
 *   reason; never dead-lettered.
 * - 413: the request is split in halves (one event alone: dead-lettered).
 * - 404, 405 and redirects for the whole request: the `url` names no HEC endpoint
 *   (wrongEndpointStatus): sent again no sooner than CONFIG_RETRY_MS apart, as above.
 * The output never retries or sleeps by itself: it answers, the runner acts (../types.ts).
 */
import { isEmptyBatch } from '../shared/encode.js';
import { newOutcome, resultOf, retryRange, sendHalves, sendInRequests, type Outcome } from '../shared/bulk.js';
import { HttpTransport, tooLarge, wrongEndpointStatus, type HttpTransportDeps, type TransportResult } from '../shared/http-transport.js';
import { fieldOf, recordMeta } from '../shared/record-meta.js';
import { CONFIG_RETRY_MS, DELIVERED, type Batch, type Output, type SendResult } from '../types.js';
import type { SplunkHecConfig } from './config.js';

export type { SplunkHecConfig } from './config.js';

/** Least wait between attempts while HEC refuses the token or the configuration (../types.ts). */
export { CONFIG_RETRY_MS };

/** HEC codes (Splunk docs) and the reason they give a dead-lettered event. */
const EVENT_CODES: Record<number, string> = {
  5: 'splunk_hec_no_data',
  6: 'splunk_hec_invalid_data_format',
  12: 'splunk_hec_event_field_required',
  13: 'splunk_hec_event_field_blank',
  15: 'splunk_hec_indexed_fields',
};
const CONFIG_CODES: Record<number, string> = {
  1: 'the token is disabled',
  2: 'no token was sent',
  3: 'the Authorization header is not "Splunk <token>"',
  4: 'HEC does not know the token',
  7: 'the index is not allowed for this token',
  10: 'the token has indexer acknowledgement on: set channel',
  11: 'the channel is not valid',
  14: 'acknowledgement is disabled',
  16: 'query string authorization is not enabled',
};
const HOST_FIELDS = ['syslog.hostname', 'observer.hostname', 'DeviceHostName'];

export class SplunkHecOutput implements Output {
  readonly type = 'splunk_hec';
  private readonly transport: HttpTransport;
  private readonly label: string;
  /** `"source":..,"sourcetype":..,"index":..` as JSON text, the same for every event. */
  private readonly fixed: string;
  private readonly maxBytes: number;

  constructor(
    readonly name: string,
    private readonly config: SplunkHecConfig,
    deps: HttpTransportDeps = {},
  ) {
    this.label = `splunk_hec output ${name}`;
    this.maxBytes = config.max_request_bytes;
    const base = new URL(config.url);
    if (!base.pathname.endsWith('/')) base.pathname += '/';
    const headers: Record<string, string> = { ...(config.headers ?? {}) };
    if (config.token !== undefined) headers['authorization'] = `Splunk ${config.token.trim()}`;
    if (config.channel !== undefined) headers['x-splunk-request-channel'] = config.channel;
    let fixed = '';
    if (config.source !== undefined) fixed += `,"source":${JSON.stringify(config.source)}`;
    fixed += `,"sourcetype":${JSON.stringify(config.sourcetype)}`;
    if (config.index !== undefined) fixed += `,"index":${JSON.stringify(config.index)}`;
    this.fixed = fixed;
    this.transport = new HttpTransport(this.label, { ...config, url: new URL('services/collector/event', base).toString(), headers, api_key_header: 'X-API-Key' }, 'application/json', deps);
  }

  start(): Promise<void> {
    if (this.config.token === undefined || this.config.token.trim() === '') return Promise.reject(new Error(`${this.label}: token (or token_file) is required`));
    return this.transport.start();
  }

  /** One event in HEC's JSON envelope. */
  envelope(record: string): string {
    const m = recordMeta(record);
    let host = this.config.host;
    if (host === undefined && m.doc !== undefined) {
      for (const f of HOST_FIELDS) {
        const v = fieldOf(m.doc, f);
        if (typeof v === 'string' && v !== '') {
          host = v;
          break;
        }
      }
    }
    // HEC's time: epoch seconds, milliseconds as the fraction.
    const time = m.timeMs !== undefined ? `"time":${(m.timeMs / 1000).toFixed(3)},` : '';
    const h = host !== undefined ? `,"host":${JSON.stringify(host)}` : '';
    return `{${time}${h.slice(1)}${h === '' ? this.fixed.slice(1) : this.fixed},"event":${m.doc !== undefined ? record : JSON.stringify(record)}}`;
  }

  async send(batch: Batch, signal?: AbortSignal): Promise<SendResult> {
    if (isEmptyBatch(batch)) return DELIVERED;
    const records = batch.records;
    const bodies = records.map((r) => Buffer.from(this.envelope(r) + '\n', 'utf8'));
    const out = newOutcome();
    await sendInRequests(bodies, this.maxBytes, (start, end) => this.sendRange(bodies, start, end, out, signal));
    return resultOf(out, records.length, (t) => this.transport.redact(t));
  }

  private async sendRange(bodies: readonly Buffer[], start: number, end: number, out: Outcome, signal?: AbortSignal): Promise<void> {
    const r: TransportResult = await this.transport.send(Buffer.concat(bodies.slice(start, end)), true, signal);
    const all = (into: number[]) => {
      for (let i = start; i < end; i++) into.push(i);
    };
    if (r.status === 'delivered') return;
    if (r.status === 'retry') return retryRange(out, start, end, r.error, r.retryAfterMs);
    if (r.status !== 'rejected') return;
    if (tooLarge(r) && end - start > 1) return sendHalves(start, end, (a, b) => this.sendRange(bodies, a, b, out, signal));
    let answer: { code?: unknown; text?: unknown; 'invalid-event-number'?: unknown } = {};
    try {
      const v: unknown = JSON.parse((r.body ?? Buffer.alloc(0)).toString('utf8'));
      if (v !== null && typeof v === 'object') answer = v as typeof answer;
    } catch {
      // not HEC's JSON (a proxy's page): decided by the status alone
    }
    // HEC's codes are small whole numbers: anything else is no code (and no reason label of its own).
    const code = typeof answer.code === 'number' && Number.isInteger(answer.code) && answer.code >= 0 && answer.code < 1000 ? answer.code : undefined;
    const text = typeof answer.text === 'string' ? answer.text : '';
    const wrongUrl = wrongEndpointStatus(r.httpStatus);
    if (r.httpStatus === 401 || r.httpStatus === 403 || wrongUrl || (code !== undefined && CONFIG_CODES[code] !== undefined)) {
      all(out.retry);
      const why = wrongUrl
        ? 'no HEC endpoint at this URL: check the output\'s url (its path, a proxy in front, http redirected to https)'
        : code !== undefined && CONFIG_CODES[code] !== undefined ? CONFIG_CODES[code] : 'the token is refused';
      out.errors.push(`${r.error} (${why}: check the output's configuration; retrying every ${CONFIG_RETRY_MS / 1000} s or more)`);
      out.retryAfterMs = Math.max(out.retryAfterMs ?? 0, CONFIG_RETRY_MS);
      return;
    }
    const reason = code !== undefined ? (EVENT_CODES[code] ?? `splunk_hec_code_${code}`) : r.reason;
    const bad = answer['invalid-event-number'];
    if (typeof bad === 'number' && Number.isInteger(bad) && bad >= 0 && bad < end - start) {
      for (let i = start; i < end; i++) {
        if (i === start + bad) out.rejected.push({ index: i, reason, error: `${this.label}: HEC refused this event: ${text || r.error} (code ${code ?? '?'})` });
        else out.retry.push(i);
      }
      out.errors.push(`${this.label}: HEC refused event ${bad} of a request (${text}); the others are sent again`);
      return;
    }
    for (let i = start; i < end; i++) out.rejected.push({ index: i, reason, error: text !== '' ? `${this.label}: HEC: ${text} (code ${code ?? '?'})` : r.error });
  }

  /** Aborts a request in flight (its send reports `retry`) and closes idle connections. */
  close(): Promise<void> {
    return this.transport.close();
  }
}
