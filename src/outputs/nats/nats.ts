/**
 * The `nats` output: publishes each event as one JetStream message on `subject` and counts
 * it delivered only when the server's PubAck arrived (the stream has stored it, on every
 * replica the stream's quorum needs). Each message carries `Nats-Msg-Id` = the event id
 * (src/outputs/shared/event-id.ts), so an event sent again (a batch resent after a
 * reconnect, a retry after a PubAck that was lost, a restart from the disk buffer) is
 * dropped by the server when it is still in the stream's duplicate window: a PubAck with
 * `duplicate: true`, which counts as delivered.
 *
 * A batch's records are published at once (pipelined on the one connection, PubAcks
 * matched back by reply subject: ./publisher.ts) and answered per record: those that got a PubAck are settled, the others retried alone by the runner,
 * a record larger than the server's max_payload, or one JetStream refuses for itself (a 4xx
 * PubAck error), rejected (dead letter). The output never
 * sleeps or counts; the runner does (../types.ts).
 */
import type { JetStreamManager, NatsConnection, StreamConfig } from 'nats';
import { DiscardPolicy, StorageType, nanos } from 'nats';
import { BatchPublisher, type OutgoingMessage } from './publisher.js';
import { rawFramePayload } from '../../nats/raw-frame.js';
import { NatsLink, jsErrCode, natsErrorText } from '../../nats/connection.js';
import { recordKeyFor } from '../shared/event-id.js';
import { CONFIG_RETRY_MS, DELIVERED, type Batch, type Output, type SendResult } from '../types.js';
import type { NatsOutputConfig } from './config.js';

export type { NatsOutputConfig } from './config.js';

/** Reason code of a record larger than the server's max_payload. */
export const NATS_MAX_PAYLOAD = 'nats_max_payload';
/** Reason code of a record that is not a raw frame, sent to a `payload: frame` output. */
export const NATS_NOT_A_FRAME = 'nats_not_a_frame';
/**
 * Code of a publish the server refused for want of permission on the subject: the subject
 * is the output's, the same for every event, so the account's permissions are wrong, not
 * the event. Retried no sooner than PERMISSION_RETRY_MS apart (as refused credentials of
 * the bulk outputs are), never dead-lettered: nothing replays dead letters, so a missing
 * permission would otherwise move the whole stream out of the pipeline.
 */
export const NATS_PERMISSION_DENIED = 'nats_permission_denied';
/** Least wait between attempts while the server refuses the subject (../types.ts). */
export const PERMISSION_RETRY_MS = CONFIG_RETRY_MS;
/** Reason code of a message JetStream refused for itself (a 4xx PubAck error, e.g. 10054 over max_msg_size). */
export const NATS_REFUSED = 'nats_refused';

export class NatsOutput implements Output {
  readonly type = 'nats';
  private readonly link: NatsLink;
  private readonly keyOf: (record: string) => string;
  private readonly timeoutMs: number;
  /** The connection the JetStream handle and stream check belong to. */
  private js: { nc: NatsConnection; publisher: BatchPublisher; ready: Promise<string> } | null = null;
  private readonly encoder = new TextEncoder();

  constructor(
    readonly name: string,
    private readonly config: NatsOutputConfig & { encoding?: { codec: string } },
  ) {
    this.link = new NatsLink(config, `cefd output ${name}`);
    this.keyOf = recordKeyFor(config.encoding?.codec ?? 'native');
    this.timeoutMs = Math.max(1, Math.round(config.ack_timeout * 1000));
  }

  /** Starts connecting; never fails for a server that is down (the events wait in the buffer). */
  async start(): Promise<void> {
    await this.link.start();
  }

  /** The JetStream handle of the live connection, its stream checked ('' when ready, else why not). */
  private jetstream(): { publisher: BatchPublisher; ready: Promise<string> } | string {
    const nc = this.link.current;
    if (nc === null) return `nats output ${this.name}: not connected: ${this.link.lastError}`;
    if (this.js === null || this.js.nc !== nc) {
      this.js?.publisher.close();
      this.js = { nc, publisher: new BatchPublisher(nc, this.config.subject), ready: this.ensureStream(nc) };
    }
    return this.js;
  }

  /** Creates the stream when asked to; '' when there is nothing to do or it exists. */
  private async ensureStream(nc: NatsConnection): Promise<string> {
    const s = this.config.stream;
    if (!s.create || s.name === undefined) return '';
    let jsm: JetStreamManager;
    try {
      jsm = await nc.jetstreamManager({ timeout: this.timeoutMs });
    } catch (err) {
      return `nats output ${this.name}: JetStream is not available: ${natsErrorText(err)}`;
    }
    try {
      await jsm.streams.info(s.name);
      return '';
    } catch (err) {
      const code = jsErrCode(err);
      // 10059: stream not found. Anything else (no JetStream, a timeout) is tried again on the next batch.
      if (code !== 10059) return `nats output ${this.name}: cannot look up stream ${s.name}: ${natsErrorText(err)}`;
    }
    const cfg: Partial<StreamConfig> = {
      name: s.name,
      subjects: s.subjects.length > 0 ? s.subjects : [this.config.subject],
      storage: s.storage === 'memory' ? StorageType.Memory : StorageType.File,
      num_replicas: s.replicas,
      discard: s.discard === 'new' ? DiscardPolicy.New : DiscardPolicy.Old,
      duplicate_window: nanos(Math.round(s.duplicate_window * 1000)),
      max_age: nanos(Math.round(s.max_age * 1000)),
      max_bytes: s.max_bytes > 0 ? s.max_bytes : -1,
      max_msgs: s.max_msgs > 0 ? s.max_msgs : -1,
    };
    try {
      await jsm.streams.add(cfg);
      return '';
    } catch (err) {
      return `nats output ${this.name}: cannot create stream ${s.name}: ${natsErrorText(err)}`;
    }
  }

  async send(batch: Batch): Promise<SendResult> {
    const records = batch.records;
    if (records.length === 0) return DELIVERED;
    const js = this.jetstream();
    if (typeof js === 'string') return { status: 'retry', error: js };
    const problem = await js.ready;
    if (problem !== '') {
      // The next batch checks again with a new publisher: close this one (its inbox subscription).
      if (this.js !== null && this.js.ready === js.ready) {
        this.js.publisher.close();
        this.js = null;
      }
      return { status: 'retry', error: problem };
    }
    const rejected: { index: number; reason: string; error: string }[] = [];
    const msgs: OutgoingMessage[] = [];
    const sentIndex: number[] = [];
    for (let i = 0; i < records.length; i++) {
      const m = this.message(records[i]!);
      if (m === null) {
        rejected.push({ index: i, reason: NATS_NOT_A_FRAME, error: `nats output ${this.name}: payload: frame, but the record is not a raw frame (is cefd in mode: receiver?)` });
        continue;
      }
      msgs.push(m);
      sentIndex.push(i);
    }
    const outcomes = await js.publisher.publish(msgs, this.timeoutMs);
    const retry: number[] = [];
    let firstError = '';
    let denied = false;
    for (let k = 0; k < outcomes.length; k++) {
      const o = outcomes[k]!;
      if (o.ok) continue;
      const i = sentIndex[k]!;
      if (o.kind === 'max_payload') rejected.push({ index: i, reason: NATS_MAX_PAYLOAD, error: o.error });
      else if (o.kind === 'permission') {
        if (!denied) firstError = `${NATS_PERMISSION_DENIED}: ${o.error} (the account may not publish to ${this.config.subject}: fix its publish permissions; retrying every ${PERMISSION_RETRY_MS / 1000} s or more)`;
        denied = true;
        retry.push(i);
      } else if (o.kind === 'rejected') rejected.push({ index: i, reason: NATS_REFUSED, error: `nats output ${this.name}: ${o.error}` });
      else {
        if (firstError === '') firstError = o.kind === 'no_responders' ? `no JetStream stream answered on ${this.config.subject} (no stream captures the subject, or the stream has no leader now)` : o.error;
        retry.push(i);
      }
    }
    if (retry.length === 0 && rejected.length === 0) return DELIVERED;
    const wait = denied ? { retryAfterMs: PERMISSION_RETRY_MS } : {};
    if (retry.length === records.length) return { status: 'retry', error: `nats output ${this.name}: ${firstError}`, ...wait };
    if (rejected.length === records.length && rejected.every((r) => r.reason === rejected[0]!.reason)) return { status: 'rejected', reason: rejected[0]!.reason, error: rejected[0]!.error };
    retry.sort((a, b) => a - b);
    rejected.sort((a, b) => a.index - b.index);
    return { status: 'partial', retry, rejected, error: `nats output ${this.name}: ${firstError || 'some events were refused'}`, ...wait };
  }

  unready(): string | undefined {
    return this.link.current === null ? `not connected to NATS: ${this.link.lastError}` : undefined;
  }

  /** The message of one record (an event, or a receiver's raw frame); null when a `payload: frame` record is not a frame. */
  private message(record: string): OutgoingMessage | null {
    if (this.config.payload === 'event') return { data: this.encoder.encode(record), msgId: this.keyOf(record) };
    const f = rawFramePayload(record);
    if (f === null) return null;
    return { data: f.data, msgId: f.id, headers: f.headers };
  }

  /** Closes the connection (the runner lets the batch in flight settle first). */
  async close(): Promise<void> {
    this.js?.publisher.close();
    this.js = null;
    await this.link.close();
  }
}
