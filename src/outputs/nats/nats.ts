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
 * PubAck error, or a 503 "maximum bytes exceeded" for a record larger than the stream's
 * whole max_bytes), rejected (dead letter). The output never
 * sleeps or counts; the runner does (../types.ts).
 */
import type { JetStreamManager, NatsConnection, StreamConfig, StreamInfo } from 'nats';
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
/**
 * Reason code of a message JetStream refused for itself: a 4xx PubAck error (e.g. 10054 over
 * max_msg_size), or 10077 for a message larger than the stream's whole max_bytes.
 */
export const NATS_REFUSED = 'nats_refused';
/**
 * JetStream's err_code when the stream's store refused a message (503): over max_msgs,
 * max_bytes or max_msgs_per_subject of a `discard: new` stream. Mostly a full stream, which
 * takes the message once it has room (retried); but a message larger than max_bytes would
 * not fit in the stream even empty (rejected: tooLargeForStream).
 */
const JS_STREAM_STORE_FAILED = 10077;
/** How old the stream's max_bytes may be before a 10077 reads it again (tooLargeForStream). */
const STREAM_INFO_REFRESH_MS = 60_000;

export class NatsOutput implements Output {
  readonly type = 'nats';
  private readonly link: NatsLink;
  private readonly keyOf: (record: string) => string;
  private readonly timeoutMs: number;
  /** The connection the JetStream handle and stream check belong to. */
  private js: { nc: NatsConnection; publisher: BatchPublisher; ready: Promise<string> } | null = null;
  private readonly encoder = new TextEncoder();
  /** max_bytes (0: no limit) of each stream the output has read the info of, by name, and when it was read (ms). */
  private readonly streamMaxBytes = new Map<string, { max: number; atMs: number }>();

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
  private jetstream(): { nc: NatsConnection; publisher: BatchPublisher; ready: Promise<string> } | string {
    const nc = this.link.current;
    // While the client reconnects, a publish only adds the batch to the client's outbound
    // buffer, another copy at each retry until its next attempt to reconnect (nats.js
    // empties the buffer then: src/nats/connection.ts), which is `reconnect_wait` or more
    // apart; the events are in the output's buffer already. Retry without publishing.
    if (nc === null || this.link.reconnecting) return `nats output ${this.name}: not connected: ${this.link.lastError}`;
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
      this.noteStream(await jsm.streams.info(s.name));
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
      this.noteStream(await jsm.streams.add(cfg));
      return '';
    } catch (err) {
      return `nats output ${this.name}: cannot create stream ${s.name}: ${natsErrorText(err)}`;
    }
  }

  private noteStream(info: StreamInfo): void {
    this.streamMaxBytes.set(info.config.name, { max: info.config.max_bytes > 0 ? info.config.max_bytes : 0, atMs: Date.now() });
  }

  /**
   * Of the messages the stream's store refused (10077), the ones larger than the stream's
   * max_bytes: those would be refused even by an empty stream, so retrying them would stop
   * the output for good (the runner retries a record until it is settled). The size counted
   * is a lower bound of the server's (its store adds some bytes per message), so a message
   * taken for too large certainly is. The stream's max_bytes is read
   * again before one is rejected (a limit raised since the stream check makes it fit); when
   * it cannot be read, everything is retried.
   */
  private async tooLargeForStream(nc: NatsConnection, refused: { k: number; stream: string; size: number }[]): Promise<Map<number, string>> {
    const out = new Map<number, string>();
    const fresh = new Set<string>();
    for (const r of refused) {
      // A message within the limit as last read is taken for a full stream (retried); the
      // limit is read again at most once a minute, so one lowered since is noticed and a
      // full stream does not cost a stream-info request per retry.
      const known = this.streamMaxBytes.get(r.stream);
      if (known !== undefined && (known.max === 0 || r.size <= known.max) && Date.now() - known.atMs < STREAM_INFO_REFRESH_MS) continue;
      if (!fresh.has(r.stream)) {
        fresh.add(r.stream);
        try {
          const jsm = await nc.jetstreamManager({ timeout: this.timeoutMs, checkAPI: false });
          this.noteStream(await jsm.streams.info(r.stream));
        } catch {
          this.streamMaxBytes.delete(r.stream);
        }
      }
      const max = this.streamMaxBytes.get(r.stream)?.max;
      if (max !== undefined && max > 0 && r.size > max) out.set(r.k, `the event is ${r.size} bytes with its subject and headers, more than the stream ${r.stream}'s max_bytes (${max}): it could never be stored`);
    }
    return out;
  }

  /**
   * The bytes of `m` the server certainly counts against max_bytes: its subject, payload and
   * header block as the client sends them (`NATS/1.0`, a `name: value` line each (values
   * trimmed), CRLFs: nats.js MsgHdrsImpl.toString), without the store's own overhead per
   * message (server internals).
   */
  private storedSize(m: OutgoingMessage): number {
    // Set as ./publisher.ts sets them: a later value of a name replaces an earlier one.
    const h = new Map<string, string>();
    for (const [k, v] of m.headers ?? []) h.set(k, v);
    h.set('Nats-Msg-Id', m.msgId);
    let n = Buffer.byteLength(this.config.subject) + m.data.length + 'NATS/1.0\r\n\r\n'.length;
    for (const [k, v] of h) n += Buffer.byteLength(k) + Buffer.byteLength(v.trim()) + ': \r\n'.length;
    return n;
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
    const storeRefused: { k: number; stream: string; size: number }[] = [];
    for (let k = 0; k < outcomes.length; k++) {
      const o = outcomes[k]!;
      const stream = o.ok ? undefined : (o.stream ?? this.config.stream.name);
      if (!o.ok && o.kind === 'refused' && o.errCode === JS_STREAM_STORE_FAILED && stream !== undefined) storeRefused.push({ k, stream, size: this.storedSize(msgs[k]!) });
    }
    const tooLarge = storeRefused.length === 0 ? new Map<number, string>() : await this.tooLargeForStream(js.nc, storeRefused);
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
      else if (tooLarge.has(k)) rejected.push({ index: i, reason: NATS_REFUSED, error: `nats output ${this.name}: ${o.error}: ${tooLarge.get(k)!}` });
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
    return this.link.current === null || this.link.reconnecting ? `not connected to NATS: ${this.link.lastError}` : undefined;
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
