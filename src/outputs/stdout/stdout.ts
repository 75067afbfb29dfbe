/**
 * The `stdout` output: NDJSON on the process's standard output (or an injected stream).
 *
 * - A batch is one `write()` of `record + "\n"` for each record, in order.
 * - Backpressure: `send` settles when the stream has taken the batch (its write callback)
 *   and, when `write()` returned false, only once the stream has drained. A reader that
 *   stops reading therefore stalls this output, and the runner's bounded queue pauses
 *   the sockets feeding it.
 * - A write error that leaves the stream destroyed (EPIPE: the reader went away; or the
 *   stream was closed) is permanent: Node cannot reopen stdout, so every later batch is
 *   `rejected` with reason `stdout_closed` and goes to the dead-letter output, instead of
 *   `retry`, which would stall the whole pipeline behind an output that can never work
 *   again. An error that leaves the stream writable is reported as `retry`.
 * - The output listens for the stream's `error` events, so EPIPE never becomes an
 *   uncaught exception; it never ends or closes the stream (it does not own it).
 *
 * Note: pino logs to stdout by default. When this output is used, logs and events share
 * the stream and a consumer must tell them apart; send the logs to stderr instead.
 */
import type { Writable } from 'node:stream';
import { errorText, isEmptyBatch, ndjsonOf } from '../shared/encode.js';
import { DELIVERED, type Batch, type Output, type SendResult } from '../types.js';

/** The stdout output has no options. */
export interface StdoutOutputOptions {}

/** Test seams; not configuration. */
export interface StdoutOutputDeps {
  /** Stream to write to. Default `process.stdout`. */
  stream?: Writable;
}

/** Reason code of batches rejected because the stream can no longer be written. */
export const STDOUT_CLOSED = 'stdout_closed';


export class StdoutOutput implements Output {
  readonly type = 'stdout';
  private readonly stream: Writable;
  /** Why the stream cannot be written any more (set on its first destroying error). */
  private failure: string | null = null;
  private closed = false;
  private inflight: Promise<SendResult> | null = null;
  private readonly onError = (err: Error) => {
    this.failure ??= errorText(err);
  };

  constructor(
    readonly name: string,
    _options: StdoutOutputOptions = {},
    deps: StdoutOutputDeps = {},
  ) {
    this.stream = deps.stream ?? process.stdout;
  }

  async start(): Promise<void> {
    this.closed = false;
    this.listen();
  }

  send(batch: Batch): Promise<SendResult> {
    const run = this.write(batch);
    this.inflight = run;
    return run;
  }

  /** Waits for the batch being written, if any. Leaves the stream open; keeps the `error` listener. */
  async close(): Promise<void> {
    this.closed = true;
    if (this.inflight !== null) await this.inflight;
    this.inflight = null;
  }

  private async write(batch: Batch): Promise<SendResult> {
    try {
      if (isEmptyBatch(batch)) return DELIVERED;
      if (this.closed) return this.retryResult('the output is closed');
      this.listen();
      const dead = this.deadReason();
      if (dead !== null) return this.rejectedResult(dead);
      const buf = ndjsonOf(batch);
      return await new Promise<SendResult>((resolve) => {
        const s = this.stream;
        let settled = false;
        let accepted = true;
        const finish = (r: SendResult) => {
          if (settled) return;
          settled = true;
          s.off('drain', onDrain);
          s.off('close', onClose);
          resolve(r);
        };
        const onDrain = () => finish(DELIVERED);
        const onClose = () => finish(this.failedResult(null));
        s.on('close', onClose);
        try {
          accepted = s.write(buf, (err?: Error | null) => {
            if (err) return finish(this.failedResult(err));
            if (accepted || !s.writableNeedDrain) return finish(DELIVERED);
            s.on('drain', onDrain); // settles on drain (or close)
          });
        } catch (err) {
          finish(this.failedResult(err));
        }
      });
    } catch (err) {
      return this.retryResult(`unexpected error: ${errorText(err)}`);
    }
  }

  private listen(): void {
    if (!this.stream.listeners('error').includes(this.onError)) this.stream.on('error', this.onError);
  }

  private deadReason(): string | null {
    const s = this.stream;
    if (s.destroyed || s.writableEnded || !s.writable) return this.failure ?? 'the stream is closed';
    return null;
  }

  private failedResult(err: unknown): SendResult {
    if (err !== null) this.failure ??= errorText(err);
    const dead = this.deadReason();
    if (dead !== null) return this.rejectedResult(dead);
    return this.retryResult(err === null ? 'the stream closed' : errorText(err));
  }

  private retryResult(error: string): SendResult {
    return { status: 'retry', error: `stdout output ${this.name}: ${error}` };
  }

  private rejectedResult(why: string): SendResult {
    return { status: 'rejected', reason: STDOUT_CLOSED, error: `stdout output ${this.name}: cannot write: ${why}` };
  }
}
