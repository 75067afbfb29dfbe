/**
 * The output interface. An output only delivers: it reports an outcome for each batch and
 * never counts, logs through the metrics, or retries by itself; the pipeline's output
 * runner (src/pipeline/) does the counting, the capped exponential backoff on `retry`,
 * and sends `rejected` batches to the dead-letter output. (STYLE lesson 6.)
 */

/** One batch of serialized events: each record is one JSON text, without a newline. */
export interface Batch {
  readonly records: readonly string[];
  /**
   * The same records already encoded as NDJSON (each record's UTF-8 text and a newline),
   * when the queue holds them that way (the disk buffer): an NDJSON output writes these
   * bytes as they are instead of encoding `records` again.
   */
  readonly ndjson?: Buffer;
  /** The same bytes in pieces, when the queue has them so (a file output writes them with one writev). */
  readonly ndjsonParts?: readonly Buffer[];
}

export type SendResult =
  | { status: 'delivered' }
  /** Transient failure: the runner sends the same batch again after a backoff. */
  | { status: 'retry'; error: string; retryAfterMs?: number }
  /** Permanent failure for this batch: the runner dead-letters it with `reason`. */
  | { status: 'rejected'; error: string; reason: string };

export const DELIVERED: SendResult = { status: 'delivered' };

export interface Output {
  readonly name: string;
  readonly type: string;
  /** Open files, sockets, agents. Rejects with a clear message when the output cannot work. */
  start(): Promise<void>;
  /**
   * Deliver one batch. Called again only after the previous call settled (one batch in
   * flight per output). Must not throw: failures are results.
   */
  send(batch: Batch): Promise<SendResult>;
  /** Reopen files (SIGHUP, for logrotate). Optional. */
  reopen?(): Promise<void>;
  /** Flush and release everything. */
  close(): Promise<void>;
}
