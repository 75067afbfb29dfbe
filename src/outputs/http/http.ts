/**
 * The `http` output: POSTs each batch to a URL, as NDJSON or as a JSON array, through the
 * shared HTTP transport (src/outputs/shared/http-transport.ts: TLS, authentication, gzip,
 * timeouts, and which answers mean delivered, retry or rejected). A 413 (the body is over
 * the receiver's limit) splits the batch in halves, each sent on its own, down to one
 * record, which is then rejected: a batch that fits when split is not dead-lettered, and
 * one too large is not retried forever. 401/403 (the credentials are refused) and 404,
 * 405 or a redirect (wrongEndpointStatus: the `url` names no receiver) are the output's
 * configuration, not the events: the batch is sent again no sooner than CONFIG_RETRY_MS
 * apart, with what to check in the error, and stays in the buffer until the configuration
 * is fixed (as elasticsearch and splunk_hec do); never dead-lettered. Other 4xx reject
 * the batch (`http_status_<NNN>`). The output never retries or sleeps by itself; the
 * output runner does (see ../types.ts).
 */
import { encodeJsonArray, encodeNdjson, isEmptyBatch, jsonArrayOf, ndjsonOf } from '../shared/encode.js';
import { newOutcome, resultOf, retryRange, sendHalves, type Outcome } from '../shared/bulk.js';
import { HttpTransport, tooLarge, wrongEndpointStatus, type HttpTransportDeps, type TransportResult } from '../shared/http-transport.js';
import { CONFIG_RETRY_MS, DELIVERED, type Batch, type Output, type SendResult } from '../types.js';
import type { HttpConfig, HttpFormat } from './config.js';

export type { HttpConfig, HttpFormat } from './config.js';
export { httpStatusReason, isRetryStatus, parseRetryAfter } from '../shared/http-transport.js';

/** Test seams; not configuration. */
export type HttpOutputDeps = HttpTransportDeps;

export class HttpOutput implements Output {
  readonly type = 'http';
  private readonly format: HttpFormat;
  private readonly transport: HttpTransport;

  constructor(
    readonly name: string,
    config: HttpConfig,
    deps: HttpOutputDeps = {},
  ) {
    this.format = config.format;
    this.transport = new HttpTransport(`http output ${name}`, config, this.format === 'ndjson' ? 'application/x-ndjson' : 'application/json', deps);
  }

  start(): Promise<void> {
    return this.transport.start();
  }

  async send(batch: Batch, signal?: AbortSignal): Promise<SendResult> {
    if (isEmptyBatch(batch)) return DELIVERED;
    let body: Buffer;
    try {
      body = this.format === 'ndjson' ? ndjsonOf(batch) : jsonArrayOf(batch);
    } catch (err) {
      return { status: 'retry', error: `http output ${this.name}: cannot encode the batch: ${(err as Error).message}` };
    }
    const r = await this.transport.send(body, false, signal);
    if (r.status === 'delivered') return DELIVERED;
    if (!tooLarge(r) || batch.records.length < 2) return outcomeOf(r);
    const records = batch.records;
    const out = newOutcome();
    await sendHalves(0, records.length, (a, b) => this.sendRange(records, a, b, out, signal));
    return resultOf(out, records.length, (t) => this.transport.redact(t));
  }

  /** Records [start, end) in one request; a 413 splits them in halves again. */
  private async sendRange(records: readonly string[], start: number, end: number, out: Outcome, signal?: AbortSignal): Promise<void> {
    const part = records.slice(start, end);
    let body: Buffer;
    try {
      body = this.format === 'ndjson' ? encodeNdjson(part) : encodeJsonArray(part);
    } catch (err) {
      retryRange(out, start, end, `http output ${this.name}: cannot encode the batch: ${(err as Error).message}`);
      return;
    }
    const t = await this.transport.send(body, false, signal);
    if (t.status === 'delivered') return;
    if (tooLarge(t) && end - start > 1) return sendHalves(start, end, (a, b) => this.sendRange(records, a, b, out, signal));
    const r = outcomeOf(t);
    if (r.status === 'retry') retryRange(out, start, end, r.error, r.retryAfterMs);
    else if (r.status === 'rejected') {
      for (let i = start; i < end; i++) out.rejected.push({ index: i, reason: r.reason, error: r.error });
    }
  }

  /** Aborts a request in flight (its send reports `retry`) and closes idle connections. */
  close(): Promise<void> {
    return this.transport.close();
  }
}

/**
 * What a request's answer that is not 2xx means for its records. A refused credential or
 * a URL that names no receiver would refuse every event alike, and the events are fine:
 * they wait in the buffer (retried no sooner than CONFIG_RETRY_MS apart, so the receiver
 * is not flooded) instead of going to the dead-letter output, which nothing replays.
 */
function outcomeOf(r: TransportResult): SendResult {
  // A result of the output's own (the transport's adds the status).
  if (r.status === 'retry') return r.retryAfterMs === undefined ? { status: 'retry', error: r.error } : { status: 'retry', error: r.error, retryAfterMs: r.retryAfterMs };
  if (r.status !== 'rejected') return r;
  const why =
    r.httpStatus === 401 || r.httpStatus === 403
      ? 'the receiver refuses the credentials or their permissions: check bearer_token, basic_auth_user and basic_auth_password, api_key or headers'
      : wrongEndpointStatus(r.httpStatus)
        ? 'no receiver at this URL: check the output\'s url (its path, a proxy in front, http redirected to https)'
        : undefined;
  if (why === undefined) return { status: 'rejected', reason: r.reason, error: r.error };
  return { status: 'retry', error: `${r.error} (${why}; retrying every ${CONFIG_RETRY_MS / 1000} s or more)`, retryAfterMs: CONFIG_RETRY_MS };
}
