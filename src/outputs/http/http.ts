/**
 * The `http` output: POSTs each batch to a URL, as NDJSON or as a JSON array, through the
 * shared HTTP transport (src/outputs/shared/http-transport.ts: TLS, authentication, gzip,
 * timeouts, and which answers mean delivered, retry or rejected). A 413 (the body is over
 * the receiver's limit) splits the batch in halves, each sent on its own, down to one
 * record, which is then rejected: a batch that fits when split is not dead-lettered, and
 * one too large is not retried forever. The output never retries or sleeps by itself; the
 * output runner does (see ../types.ts).
 */
import { encodeJsonArray, encodeNdjson, isEmptyBatch, jsonArrayOf, ndjsonOf } from '../shared/encode.js';
import { newOutcome, resultOf, retryRange, sendHalves, type Outcome } from '../shared/bulk.js';
import { HttpTransport, tooLarge, type HttpTransportDeps } from '../shared/http-transport.js';
import { DELIVERED, type Batch, type Output, type SendResult } from '../types.js';
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
    if (!tooLarge(r) || batch.records.length < 2) return r;
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
    const r = await this.transport.send(body, false, signal);
    if (r.status === 'delivered') return;
    if (tooLarge(r) && end - start > 1) return sendHalves(start, end, (a, b) => this.sendRange(records, a, b, out, signal));
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


