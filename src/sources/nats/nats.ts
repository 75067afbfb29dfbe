/**
 * The `nats` source: reads frames from a JetStream stream through a durable pull consumer
 * and acknowledges each message only after every output's buffer took its event. A cefd
 * that stops or crashes before the acknowledgement gets the messages again (after
 * `ack_wait`, or at once on restart for those never delivered): at least once end to end,
 * and the event id is the same on redelivery, so receivers that deduplicate by id (the
 * nats output's Nats-Msg-Id, Elasticsearch `_id`) drop the second copy.
 *
 * Each message body is one frame (syslog or bare CEF). A frame published by a cefd
 * receiver carries its id, listener, peer, received time and framing in headers
 * (src/nats/headers.ts); a message without them gets `<stream>-<stream sequence>` as id,
 * this source's name as listener, `nats` as peer and the message's stream time as received.
 *
 * The messages of a fetch are handed to the pipeline as they arrive (all those that came
 * in one read of the connection, up to `batch_size`, as one batch), which decodes them on
 * the decode workers (Pipeline.submitFramesAsync) while this loop fetches the next ones;
 * a batch is acknowledged when the pipeline says the outputs' queues took its events (the
 * queues' appends are synchronous: a disk buffer has written the block), in order. A batch
 * the outputs refused (a full `drop_newest` queue) is negatively acknowledged, to come
 * again later.
 *
 * Backpressure: no fetch while any output queue is full (`roomForRecords`) or reading is
 * paused, so the stream, not this process, holds the backlog; the messages handed over and
 * not yet acknowledged are bounded by `max_ack_pending` and by IN_FLIGHT_BATCHES batches.
 *
 * In progress: a batch handed over and not settled within `ack_wait` (KSC work held by
 * acksHeld, a long pause under load) would be delivered again while this process still
 * works on it. One timer per source (every third of `ack_wait`) sends an in-progress
 * acknowledgement (`+WPI`) for every message handed over and not settled, for at most
 * `max_in_progress` after the hand-over; then the server delivers it again `ack_wait` after
 * the last one.
 */
import { AckPolicy, DeliverPolicy, nanos, type Consumer, type ConsumerMessages, type JsMsg, type NatsConnection } from 'nats';
import type { SourceContext, SubmittedFrame } from '../../pipeline/pipeline.js';
import type { ListenerStats } from '../../telemetry/telemetry.js';
import { NatsLink, natsErrorText } from '../../nats/connection.js';
import { H_ID, H_LISTENER, H_PEER, H_RECEIVED, H_TLS_FINGERPRINT, H_TRUNCATED } from '../../nats/headers.js';
import type { Source, SourceDeps } from '../source.js';
import type { SourceConfigOf } from '../plugin.js';
import type { NatsSourceConfig } from './config.js';

type Config = SourceConfigOf<'nats', typeof import('./config.js').NATS_SOURCE_FIELDS> & NatsSourceConfig;

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms).unref());

/** Batches on the decode workers at once: enough to keep every worker busy while the next fetch is read. */
const IN_FLIGHT_BATCHES = 4;

/** How long a refused batch waits before the server delivers it again. */
const REFUSED_REDELIVERY_MS = 1000;

/** Messages handed to the pipeline together and settled together. */
interface Batch {
  msgs: JsMsg[];
  /** The connection they came on: an acknowledgement on another one does not reach their delivery. */
  nc: NatsConnection;
  /** When they were handed over (ms). */
  since: number;
  /** In-progress acknowledgements are still sent for them. */
  extending: boolean;
}

export class NatsSource implements Source {
  readonly name: string;
  ready = false;
  private readonly link: NatsLink;
  private readonly stats: ListenerStats;
  private readonly ctx: SourceContext;
  private stopped = false;
  private loop: Promise<void> | null = null;
  private consumer: { nc: NatsConnection; c: Consumer } | null = null;
  /** The batches handed to the pipeline and not settled. */
  private readonly batches = new Set<Batch>();
  /** Sends the in-progress acknowledgements. */
  private ticker: NodeJS.Timeout | null = null;
  /** No fetch before this time (ms): a batch was refused and is redelivered then. */
  private refusedUntil = 0;
  private lastProblem = '';
  /** The fetch being read (stopped at once by stop()). */
  private fetching: ConsumerMessages | null = null;
  /** Messages of the fetch not handed to the pipeline yet. */
  private gathered: JsMsg[] = [];
  /** The connection they came on. */
  private gatheredFrom: NatsConnection | null = null;
  private handOverScheduled = false;
  /** Messages handed to the pipeline and not yet acknowledged (or refused). */
  private inFlight = 0;
  /** Wakes the loop when a batch is settled. */
  private wake: (() => void) | null = null;

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

  /** The in-progress acknowledgements' period: a third of ack_wait. */
  private get tickMs(): number {
    return Math.max(100, Math.round((this.config.ack_wait * 1000) / 3));
  }

  async start(): Promise<void> {
    this.stopped = false;
    await this.link.start();
    this.loop = this.run();
    this.ticker = setInterval(() => this.tick(), this.tickMs);
    this.ticker.unref();
    this.ready = true;
  }

  /**
   * Every third of `ack_wait`: an in-progress acknowledgement for each message handed over
   * at least that long ago and not settled (on the connection it came on, while it is the live one, for at most
   * `max_in_progress`).
   */
  private tick(): void {
    const nc = this.link.current;
    const now = Date.now();
    const limitMs = this.config.max_in_progress * 1000;
    for (const b of this.batches) {
      if (!b.extending || b.nc !== nc) continue;
      if (now - b.since >= limitMs) {
        // Bounded: a batch that never settles (an output stuck on it) is not held from the
        // other processors for ever; it is delivered again `ack_wait` after the last one.
        b.extending = false;
        this.deps.telemetry.log.warn(
          { listener: this.name, messages: b.msgs.length, first_sequence: b.msgs[0]!.seq },
          `nats source ${this.name}: ${b.msgs.length} messages handed to the outputs ${Math.round((now - b.since) / 1000)} s ago are not settled yet: no more in-progress acknowledgements (max_in_progress), the server delivers them again after ack_wait`,
        );
        continue;
      }
      // Only a batch older than a period: the first one goes out before two thirds of ack_wait.
      if (now - b.since < this.tickMs) continue;
      try {
        for (const m of b.msgs) m.working();
        this.stats.natsInProgress += b.msgs.length;
      } catch {
        // The connection closed under us: the server delivers them again after ack_wait.
        b.extending = false;
      }
    }
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

  /** Most messages handed over and not yet settled. */
  private get maxInFlight(): number {
    return Math.min(this.config.max_ack_pending, IN_FLIGHT_BATCHES * this.config.batch_size);
  }

  /** Resolves when a batch is settled, or after `ms`. */
  private settled(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const t = setTimeout(() => {
        this.wake = null;
        resolve();
      }, ms);
      t.unref();
      this.wake = () => {
        clearTimeout(t);
        this.wake = null;
        resolve();
      };
    });
  }

  private async run(): Promise<void> {
    const waitMs = Math.max(10, Math.round(this.config.fetch_wait * 1000));
    while (!this.stopped) {
      // An output refused a batch (a drop_newest buffer without room for it, though not
      // full): no new fetch until its redelivery is due, so the backlog is not fetched,
      // decoded and refused over and over, nor taken ahead of the refused batch.
      if (!this.deps.pipeline.roomForRecords() || this.deps.flow.paused || Date.now() < this.refusedUntil) {
        await sleep(20);
        continue;
      }
      const room = this.maxInFlight - this.inFlight;
      if (room <= 0) {
        await this.settled(100);
        continue;
      }
      const nc = this.link.current;
      if (nc === null) {
        this.problem(`not connected: ${this.link.lastError}`);
        await sleep(200);
        continue;
      }
      let got = 0;
      try {
        const consumer = await this.ensureConsumer(nc);
        const it = await consumer.fetch({ max_messages: Math.min(this.config.batch_size, room), expires: Math.max(1000, waitMs) });
        this.fetching = it;
        if (this.stopped) it.stop();
        for await (const m of it) {
          got++;
          this.gathered.push(m);
          this.gatheredFrom = nc;
          if (this.gathered.length >= this.config.batch_size) this.handOver();
          else if (!this.handOverScheduled) {
            // What arrived in this read of the connection goes as one batch.
            this.handOverScheduled = true;
            setImmediate(() => {
              this.handOverScheduled = false;
              this.handOver();
            });
          }
          if (this.stopped) break;
        }
      } catch (err) {
        this.consumer = null;
        this.problem(`cannot read stream ${this.config.stream} through consumer ${this.config.consumer}: ${natsErrorText(err)}`);
        this.handOver();
        await sleep(500);
        continue;
      } finally {
        this.fetching = null;
      }
      this.handOver();
      this.lastProblem = '';
      if (got === 0) this.stats.natsPending = 0;
    }
  }

  /**
   * The gathered messages to the pipeline as one batch; acknowledged when every output's
   * buffer took their events (the order is the guarantee), negatively acknowledged when
   * the outputs refused them.
   */
  private handOver(): void {
    const msgs = this.gathered;
    if (msgs.length === 0) return;
    this.gathered = [];
    const frames: SubmittedFrame[] = [];
    for (const m of msgs) {
      const h = m.headers;
      const data = Buffer.from(m.data.buffer, m.data.byteOffset, m.data.byteLength);
      if (m.info.redelivered) this.stats.natsRedelivered++;
      this.stats.bytes += data.length;
      const received = Number(h?.get(H_RECEIVED));
      const fp = h?.get(H_TLS_FINGERPRINT);
      frames.push({
        data,
        truncated: h?.get(H_TRUNCATED) === '1',
        receivedMs: Number.isFinite(received) && received > 0 ? received : Math.floor(m.info.timestampNanos / 1e6),
        id: h?.get(H_ID) || `${m.info.stream}-${m.seq}`,
        listener: h?.get(H_LISTENER) || this.name,
        peer: h?.get(H_PEER) || 'nats',
        // The receiver's TLS listener verified it: the KSC trust check (ksc/trust.ts) matches on it.
        ...(fp ? { tlsFingerprint: fp } : {}),
      });
    }
    this.inFlight += msgs.length;
    const batch: Batch = { msgs, nc: this.gatheredFrom!, since: Date.now(), extending: true };
    this.batches.add(batch);
    this.deps.pipeline.submitFramesAsync(frames, this.ctx, (taken) => {
      // Work an extension started for these events (the KSC work another processor may
      // own, ksc/cluster.ts) must be in NATS before the frames are acknowledged; asked now,
      // right after the pipeline handed the events (and their findings) on.
      const held = taken ? this.deps.pipeline.acksHeld() : undefined;
      const settle = (ok: boolean, delayMs: number | undefined) => {
        this.inFlight -= msgs.length;
        this.batches.delete(batch);
        try {
          if (ok) {
            for (const m of msgs) m.ack();
            this.stats.natsAcked += msgs.length;
          } else {
            for (const m of msgs) m.nak(delayMs);
            this.stats.natsNaked += msgs.length;
          }
        } catch {
          // The connection is gone: the server delivers them again after ack_wait.
        }
        this.stats.natsPending = msgs[msgs.length - 1]!.info.pending;
        this.wake?.();
      };
      // Refused: when stopping, to another processor at once; a full output: again a little later.
      if (!taken) {
        if (!this.stopped) this.refusedUntil = Date.now() + REFUSED_REDELIVERY_MS;
        settle(false, this.stopped ? undefined : REFUSED_REDELIVERY_MS);
      }
      else if (held === undefined) settle(true, undefined);
      // The work failed: the frames come again (their events get the same ids), after a
      // pause so that what failed (NATS, the work stream) is not retried in a tight loop.
      else held.then(() => settle(true, undefined), () => settle(false, REFUSED_REDELIVERY_MS));
    });
  }

  /** Stops fetching; what arrived is handed over to the pipeline. */
  async stopReading(): Promise<void> {
    this.stopped = true;
    this.fetching?.stop();
    await this.loop;
  }

  /**
   * Stops fetching (see stopReading), waits up to `graceMs` for the batches handed over to
   * be taken and acknowledged (after the work they hold, ksc/cluster.ts, was published),
   * flushes the acknowledgements, closes. Batches not settled by then are not
   * acknowledged: they are delivered again.
   */
  async stop(graceMs: number): Promise<void> {
    await this.stopReading();
    const until = Date.now() + Math.max(0, graceMs);
    while (this.inFlight > 0 && Date.now() < until) await this.settled(Math.max(1, until - Date.now()));
    if (this.ticker !== null) clearInterval(this.ticker);
    this.ticker = null;
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
