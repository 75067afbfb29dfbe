/**
 * The output interface. An output only delivers: it reports an outcome for each batch and
 * never counts, logs through the metrics, or retries by itself; the output runner
 * (src/pipeline/output-runner.ts) does the counting, the capped exponential backoff on
 * `retry`, and sends `rejected` records to the dead-letter output. (STYLE lesson 6.)
 */

/**
 * One batch of serialized events: each record is one encoded event, without a separator.
 * The queues hand out the same shape with its size in the queue (`QueueBatch`, buffer/queue.ts).
 */
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
  /**
   * How many records, when the queue knows without decoding them (the disk buffer's
   * batches decode `records` from the bytes only when read): see recordCount().
   */
  readonly count?: number;
}

export type SendResult = (
  | { status: 'delivered' }
  /** Transient failure: the runner sends the same batch again after a backoff. */
  | { status: 'retry'; error: string; retryAfterMs?: number }
  /** Permanent failure for this batch: the runner dead-letters it with `reason`. */
  | { status: 'rejected'; error: string; reason: string }
  | PartialResult
) & {
  /**
   * Records of EARLIER batches, already reported delivered, that may not have arrived after
   * all (a file output's interval fsync failed): the runner counts and logs them. Nothing
   * about this batch.
   */
  problem?: OutputProblem;
};

/** Records an output reported delivered but cannot vouch for any more: how many, a stable reason code (src/errors.ts), why. */
export interface OutputProblem {
  events: number;
  reason: string;
  error: string;
}

/**
 * A per-record outcome (a bulk API that took some records and not others). Records are
 * named by their index in `batch.records`; a record listed in neither `retry` nor
 * `rejected` was accepted. The runner dead-letters the rejected ones (each with its reason
 * and this output's name), sends the `retry` ones again, alone, after a backoff, and moves
 * the queue past the batch once every record is settled.
 */
export interface PartialResult {
  status: 'partial';
  /** Indexes to send again (transient failures). */
  retry?: readonly number[];
  /** Indexes to dead-letter, each with a stable reason code and an error text. */
  rejected?: readonly { index: number; reason: string; error: string }[];
  /** What went wrong for the retried records (logged with the retry). */
  error: string;
  retryAfterMs?: number;
}

export const DELIVERED: SendResult = { status: 'delivered' };

/**
 * Least wait between attempts while a receiver refuses the output's configuration (its
 * credentials, its URL, its permissions): the events are fine, so they wait in the buffer
 * instead of being dead-lettered, and the receiver is not flooded meanwhile.
 */
export const CONFIG_RETRY_MS = 10_000;

export interface Output {
  readonly name: string;
  readonly type: string;
  /**
   * Open files, sockets, agents. Rejects with a clear message when the output cannot work,
   * leaving nothing open: the runner calls it again before its next send when a failed
   * reload gave the output back and it did not start (src/pipeline/output-runner.ts), and
   * may close() the output while a start is pending (it closes it again after that start).
   */
  start(): Promise<void>;
  /**
   * Deliver one batch. Called again only after the previous call settled (one batch in
   * flight per output). Must not throw: failures are results. `signal` aborts the send at
   * the shutdown deadline: the output stops waiting and reports `retry` (the batch stays
   * in the queue; a disk buffer keeps it for the next start). The network outputs that can
   * wait long honour it (http, elasticsearch, splunk_hec, clickhouse through the shared
   * transport; syslog); file, stdout and nats do not (a local write; nats waits at most
   * `ack_timeout`), and the runner waits for those only a moment after aborting.
   */
  send(batch: Batch, signal?: AbortSignal): Promise<SendResult>;
  /**
   * Why the output cannot deliver now (not connected), or undefined. A receiver
   * (`mode: receiver`) reports it on /readyz so a load balancer sends elsewhere. Optional.
   */
  unready?(): string | undefined;
  /** Reopen files (SIGHUP, for logrotate). Optional. */
  reopen?(): Promise<void>;
  /**
   * Flush and release everything. An output that had to let go of records it had reported
   * delivered but could not confirm (a syslog resend window the receiver did not confirm)
   * says how many, so the runner counts and logs them (nothing lost without a count).
   */
  close(): Promise<void | CloseReport>;
}

/** What close() had to abandon: `events` records, with a stable reason code (src/errors.ts) and why. */
export interface CloseReport {
  abandoned: OutputProblem | null;
}
