/**
 * The `nats` source: reads frames from a JetStream stream through a durable pull consumer
 * and acknowledges each message only after every output's buffer took its event
 * (Pipeline.submitFrames returns after the queues' synchronous appends). A cefd that stops
 * or crashes before the acknowledgement gets the messages again (after `ack_wait`, or at
 * once on restart for those never delivered): at least once end to end, and the event id
 * is the same on redelivery, so receivers that deduplicate by id (the nats output's
 * Nats-Msg-Id, Elasticsearch `_id`) drop the second copy.
 *
 * Each message body is one frame (syslog or bare CEF). A frame published by a cefd
 * receiver carries its id, listener, peer, received time and framing in headers
 * (src/nats/headers.ts); a message without them gets `<stream>-<stream sequence>` as id,
 * this source's name as listener, `nats` as peer and the message's stream time as received.
 *
 * Backpressure: no fetch while any output queue is full (`roomForRecords`), so the stream,
 * not this process, holds the backlog; `max_ack_pending` bounds what is in flight.
 */
import { AckPolicy, DeliverPolicy, nanos, type Consumer, type JsMsg, type NatsConnection } from 'nats';
import type { SourceContext, SubmittedFrame } from '../../pipeline/pipeline.js';
import type { ListenerStats } from '../../telemetry/telemetry.js';
import { NatsLink, natsErrorText } from '../../nats/connection.js';
import { H_ID, H_LISTENER, H_PEER, H_RECEIVED, H_TRUNCATED } from '../../nats/headers.js';
import type { Source, SourceDeps } from '../source.js';
import type { SourceConfigOf } from '../plugin.js';
import type { NatsSourceConfig } from './config.js';

type Config = SourceConfigOf<'nats', typeof import('./config.js').NATS_SOURCE_FIELDS> & NatsSourceConfig;

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms).unref());

export class NatsSource implements Source {
  readonly name: string;
  ready = false;
  private readonly link: NatsLink;
  private readonly stats: ListenerStats;
  private readonly ctx: SourceContext;
  private stopped = false;
  private loop: Promise<void> | null = null;
  private consumer: { nc: NatsConnection; c: Consumer } | null = null;
  private lastProblem = '';

  constructor(
    readonly config: Config,
    private readonly deps: SourceDeps,
  ) {
    this.name = config.name;
    this.link = new NatsLink(config, `cefd source ${config.name}`);
    this.stats = deps.telemetry.listener(config.name);
    this.stats.natsPending = 0;
    this.ctx = { listener: config.name, stats: this.stats, normalizers: deps.normalizers, peer: 'nats' };
  }

  async start(): Promise<void> {
    this.stopped = false;
    await this.link.start();
    this.loop = this.run();
    this.ready = true;
  }

  private problem(text: string): void {
    // Logged once per distinct problem, not once per attempt.
    if (text === this.lastProblem) return;
    this.lastProblem = text;
    this.deps.telemetry.log.warn({ listener: this.name, err: text }, `nats source ${this.name}: ${text}`);
  }

  /** The durable consumer on the live connection, created or updated to this config. */
  private async ensureConsumer(nc: NatsConnection): Promise<Consumer> {
    if (this.consumer !== null && this.consumer.nc === nc) return this.consumer.c;
    const c = this.config;
    const jsm = await nc.jetstreamManager();
    const want = {
      durable_name: c.consumer,
      ack_policy: AckPolicy.Explicit,
      deliver_policy: DeliverPolicy.All,
      max_ack_pending: c.max_ack_pending,
      ack_wait: nanos(Math.round(c.ack_wait * 1000)),
      ...(c.filter_subject !== undefined ? { filter_subject: c.filter_subject } : {}),
    };
    try {
      await jsm.consumers.add(c.stream, want);
    } catch (err) {
      // An existing durable consumer with other settings: update what may change.
      const info = await jsm.consumers.info(c.stream, c.consumer).catch(() => null);
      if (info === null) throw err;
      await jsm.consumers.update(c.stream, c.consumer, { max_ack_pending: want.max_ack_pending, ack_wait: want.ack_wait });
    }
    const consumer = await nc.jetstream().consumers.get(c.stream, c.consumer);
    this.consumer = { nc, c: consumer };
    return consumer;
  }

  private async run(): Promise<void> {
    const waitMs = Math.max(10, Math.round(this.config.fetch_wait * 1000));
    while (!this.stopped) {
      if (!this.deps.pipeline.roomForRecords() || this.deps.flow.paused) {
        await sleep(20);
        continue;
      }
      const nc = this.link.current;
      if (nc === null) {
        this.problem(`not connected: ${this.link.lastError}`);
        await sleep(200);
        continue;
      }
      let msgs: JsMsg[];
      try {
        const consumer = await this.ensureConsumer(nc);
        msgs = [];
        const it = await consumer.fetch({ max_messages: this.config.batch_size, expires: Math.max(1000, waitMs) });
        for await (const m of it) {
          msgs.push(m);
          if (this.stopped) break;
        }
      } catch (err) {
        this.consumer = null;
        this.problem(`cannot read stream ${this.config.stream} through consumer ${this.config.consumer}: ${natsErrorText(err)}`);
        await sleep(500);
        continue;
      }
      this.lastProblem = '';
      if (msgs.length === 0) {
        this.stats.natsPending = 0;
        continue;
      }
      await this.deliver(msgs);
    }
  }

  /** Frames into the pipeline, then the acknowledgements: the order is the guarantee. */
  private async deliver(msgs: JsMsg[]): Promise<void> {
    const frames: SubmittedFrame[] = [];
    for (const m of msgs) {
      const h = m.headers;
      const data = Buffer.from(m.data.buffer, m.data.byteOffset, m.data.byteLength);
      this.stats.bytes += data.length;
      const received = Number(h?.get(H_RECEIVED));
      frames.push({
        data,
        truncated: h?.get(H_TRUNCATED) === '1',
        receivedMs: Number.isFinite(received) && received > 0 ? received : Math.floor(m.info.timestampNanos / 1e6),
        id: h?.get(H_ID) || `${m.info.stream}-${m.seq}`,
        listener: h?.get(H_LISTENER) || this.name,
        peer: h?.get(H_PEER) || 'nats',
      });
    }
    this.deps.pipeline.submitFrames(frames, this.ctx);
    // Work an extension started for these events (the KSC work another processor may own,
    // ksc/cluster.ts) is in NATS before the frames are acknowledged; if it failed, the
    // frames come again (their events get the same ids).
    const held = this.deps.pipeline.acksHeld();
    if (held !== undefined && !(await held.then(() => true, () => false))) {
      // After a pause: what failed (NATS, the work stream) is not retried in a tight loop.
      for (const m of msgs) m.nak(1_000);
      return;
    }
    for (const m of msgs) m.ack();
    this.stats.natsAcked += msgs.length;
    const last = msgs[msgs.length - 1]!;
    this.stats.natsPending = last.info.pending;
  }

  /** Stops fetching (the batch in hand is submitted and acknowledged), flushes the acknowledgements, closes. */
  async stop(_graceMs: number): Promise<void> {
    this.stopped = true;
    await this.loop;
    this.ready = false;
    await this.link.close();
  }

  reload(): boolean {
    return true;
  }

  port(): number | undefined {
    return undefined;
  }
}
