/**
 * The `http` output: POSTs each batch to a URL, as NDJSON or as a JSON array, through the
 * shared HTTP transport (src/outputs/shared/http-transport.ts: TLS, authentication, gzip,
 * timeouts, and which answers mean delivered, retry or rejected). The output never
 * retries or sleeps by itself; the output runner does (see ../types.ts).
 */
import { isEmptyBatch, jsonArrayOf, ndjsonOf } from '../shared/encode.js';
import { HttpTransport, type HttpTransportDeps } from '../shared/http-transport.js';
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
    return r.status === 'delivered' ? DELIVERED : r;
  }

  /** Aborts a request in flight (its send reports `retry`) and closes idle connections. */
  close(): Promise<void> {
    return this.transport.close();
  }
}
