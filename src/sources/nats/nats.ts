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
 * works on it. The `ack_wait` that counts is the consumer's, which is shared: it may have
 * been made by a processor with another `ack_wait` than this one's (an existing consumer is
 * not changed, see ensureConsumer), so it is read from the consumer's info, at attach and at
 * every reading of its state. One timer per source (every third of that `ack_wait`) sends an in-progress
 * acknowledgement (`+WPI`) for every message handed over and not settled, for at most
 * `max_in_progress` after the hand-over; then the server delivers it again `ack_wait` after
 * the last one. The same timer reads the consumer's state (see restartSequence).
 *
 * A durable consumer deleted while this process runs (`nats consumer rm`) is made again
 * from where this process knows nothing may be unprocessed (restartSequence), not from the
 * stream's start: a consumer created with DeliverPolicy.All would process the whole
 * retained stream again.
 */
import { AckPolicy, DeliverPolicy, millis, nanos, type Consumer, type ConsumerInfo, type ConsumerMessages, type JsMsg, type NatsConnection } from 'nats';
import type { SourceContext, SubmittedFrame } from '../../pipeline/pipeline.js';
import type { ListenerStats } from '../../telemetry/telemetry.js';
import { NatsLink, jsErrCode, natsErrorText } from '../../nats/connection.js';
import { H_ID, H_LISTENER, H_PEER, H_RECEIVED, H_TLS_FINGERPRINT, H_TRUNCATED } from '../../nats/headers.js';
import type { Source, SourceDeps } from '../source.js';
import type { SourceConfigOf } from '../plugin.js';
import type { NatsSourceConfig } from './config.js';

/** How often a listener whose consumer does not match its config looks at it again. */
const MISMATCH_RETRY_MS = 5000;

/**
 * The durable consumer exists with another `filter_subject` than the listener's: reading
 * from it would take other subjects' messages (another partition's), or miss some.
 */
export class ConsumerMismatchError extends Error {
  readonly code = 'nats_consumer_mismatch';
}

/** A consumer's subject filter as one string ('' when it has none). */
function filterOf(cfg: { filter_subject?: string; filter_subjects?: string[] }): string {
  if (cfg.filter_subject !== undefined && cfg.filter_subject !== '') return cfg.filter_subject;
  return (cfg.filter_subjects ?? []).join(',');
}

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
  /** The consumer they came from (its creation time): one made again does not know them. */
  consumer: string;
  /** When they were handed over (ms). */
  since: number;
  /** In-progress acknowledgements are still sent for them. */
  extending: boolean;
}

/** The server's answer when the durable consumer does not exist (JSConsumerNotFoundErr). */
function consumerNotFound(err: unknown): boolean {
  return jsErrCode(err) === 10014 || /consumer not found/i.test((err as { message?: string } | null | undefined)?.message ?? '');
}

export class NatsSource implements Source {
  readonly name: string;
  ready = false;
  private readonly link: NatsLink;
  private readonly stats: ListenerStats;
  private readonly ctx: SourceContext;
  private stopped = false;
  private loop: Promise<void> | null = null;
  private consumer: { nc: NatsConnection; c: Consumer; created: string } | null = null;
  /** This process attached to the durable consumer once: if it disappears, it was deleted. */
  private hadConsumer = false;
  /** When the consumer this process last used was created: another one is a consumer made again. */
  private lastCreated = '';
  /** The highest stream sequence this process received, or saw the consumer deliver. */
  private highestSeen = 0;
  /**
   * The lowest stream sequence someone else may hold unacknowledged (another processor, a
   * predecessor that crashed, or messages this process gave back), as the consumer's last
   * state said: Infinity when every message it had unacknowledged was in this process's hands.
   */
  private othersFrom = Infinity;
  /**
   * The consumer's delivered stream sequence at its last read, and whether this process
   * may have missed a message delivered since: the next sequence it expected came to
   * someone else (another processor, which may die with it unacknowledged) or was skipped
   * (a filter_subject). Then a consumer made again starts no later than the one after that
   * read, so that nothing delivered since to another processor is lost.
   */
  private readDelivered = 0;
  private nextExpected = 1;
  private gapSinceRead = false;
  /** The batches handed to the pipeline and not settled. */
  private readonly batches = new Set<Batch>();
  /** Sends the in-progress acknowledgements and reads the consumer's state. */
  private ticker: NodeJS.Timeout | null = null;
  private reading = false;
  /** No fetch before this time (ms): a batch was refused and is redelivered then. */
  private refusedUntil = 0;
  private lastProblem = '';
  /** The fetch being read (stopped at once by stop()). */
  private fetching: ConsumerMessages | null = null;
  /** Messages of the fetch not handed to the pipeline yet. */
  private gathered: JsMsg[] = [];
  /** The consumer (and connection) they came from. */
  private gatheredFrom: { nc: NatsConnection; created: string } | null = null;
  private handOverScheduled = false;
  /** Messages handed to the pipeline and not yet acknowledged (or refused). */
  private inFlight = 0;
  /** Wakes the loop when a batch is settled. */
  private wake: (() => void) | null = null;
  /** The consumer's ack_wait (ms) as last read; until then this listener's own. */
  private ackWaitMs: number;
  /** The consumer's config differences last logged (logged again only when they change). */
  private driftSeen = '';
  /** The consumer's filter does not match this listener's: the error, while it lasts. */
  private mismatch = '';

  constructor(
    readonly config: Config,
    private readonly deps: SourceDeps,
  ) {
    this.name = config.name;
    this.link = new NatsLink(config, `cefd source ${config.name}`);
    this.stats = deps.telemetry.listener(config.name);
    this.stats.natsPending = 0;
    this.ctx = { listener: config.name, stats: this.stats, normalizers: deps.normalizers, peer: 'nats' };
    this.ackWaitMs = Math.round(config.ack_wait * 1000);
  }

  /** The in-progress acknowledgements' period: a third of the consumer's ack_wait. */
  private get tickMs(): number {
    return Math.max(100, Math.round(this.ackWaitMs / 3));
  }

  async start(): Promise<void> {
    this.stopped = false;
    await this.link.start();
    this.loop = this.run();
    this.scheduleTick();
    this.ready = true;
  }

  private scheduleTick(): void {
    if (this.ticker !== null) clearTimeout(this.ticker);
    this.ticker = setTimeout(() => {
      this.ticker = null;
      this.tick();
      // Also while stopping: the batches still settling keep their in-progress acks (stop() clears it).
      this.scheduleTick();
    }, this.tickMs);
    this.ticker.unref();
  }

  /**
   * Takes in the consumer's ack_wait and checks its config against this listener's: the
   * in-progress acknowledgements follow the consumer's ack_wait (the one the server
   * applies); a different ack_wait or max_ack_pending is logged (the consumer is shared and
   * not changed: see ensureConsumer); a different filter_subject is a ConsumerMismatchError.
   */
  private checkConsumer(cfg: ConsumerInfo['config']): void {
    const c = this.config;
    const want = c.filter_subject ?? '';
    const have = filterOf(cfg);
    if (have !== want) {
      throw new ConsumerMismatchError(
        `the durable consumer ${c.consumer} of stream ${c.stream} reads ${have === '' ? 'every subject of the stream (no filter_subject)' : `filter_subject ${have}`}, this listener is configured with ${want === '' ? 'no filter_subject (every subject)' : `filter_subject ${want}`}: not reading from it. Give this listener its own consumer name, or make the filters the same (a consumer's filter is set when it is made: delete it, nats consumer rm ${c.stream} ${c.consumer}, to have it made again with this one)`,
      );
    }
    const ackWaitMs = Math.round(millis(cfg.ack_wait ?? 0));
    if (ackWaitMs > 0 && ackWaitMs !== this.ackWaitMs) {
      const shorter = ackWaitMs < this.ackWaitMs;
      this.ackWaitMs = ackWaitMs;
      // A shorter ack_wait: the next in-progress acknowledgement is due sooner than the timer.
      if (shorter && this.ticker !== null) this.scheduleTick();
    }
    const wantAckWait = Math.round(c.ack_wait * 1000);
    const diffs: string[] = [];
    if (ackWaitMs !== wantAckWait) diffs.push(`ack_wait ${ackWaitMs / 1000}s (this listener: ${wantAckWait / 1000}s; in-progress acknowledgements follow the consumer's, every ${Math.round(this.tickMs) / 1000}s)`);
    if (cfg.max_ack_pending !== c.max_ack_pending) diffs.push(`max_ack_pending ${cfg.max_ack_pending} (this listener: ${c.max_ack_pending})`);
    const seen = diffs.join('; ');
    if (seen === this.driftSeen) return;
    this.driftSeen = seen;
    if (seen === '') return;
    this.deps.telemetry.log.warn(
      { listener: this.name, stream: c.stream, consumer: c.consumer, consumer_ack_wait_ms: ackWaitMs, ack_wait_ms: wantAckWait, consumer_max_ack_pending: cfg.max_ack_pending, max_ack_pending: c.max_ack_pending },
      `nats source ${this.name}: the durable consumer ${c.consumer} of stream ${c.stream} is shared and kept as it is, with ${seen}. Keep these the same on every processor; to change them, edit the consumer (nats consumer edit ${c.stream} ${c.consumer}) or delete it so that it is made again`,
    );
  }

  /**
   * Every third of `ack_wait`: an in-progress acknowledgement for each message handed over
   * at least that long ago and not settled (on the connection it came on, while it is the
   * live one, for at most `max_in_progress`), then the consumer's state for restartSequence.
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
    void this.readConsumer();
  }

  /** The consumer's state now: what was delivered, and whether anyone else holds messages. */
  private async readConsumer(): Promise<void> {
    const cur = this.consumer;
    if (cur === null || this.reading || this.link.current !== cur.nc) return;
    this.reading = true;
    const before = new Set(this.batches);
    try {
      const info = await cur.c.info();
      // An answer about a consumer since replaced says nothing of the one in use.
      if (this.consumer !== cur) return;
      // Deleted and made again by someone else between two fetches: the fetch loop attaches
      // again (ensureConsumer), which checks where it starts.
      if (info.created !== cur.created) this.consumer = null;
      else {
        this.noteConsumer(info, before);
        try {
          this.checkConsumer(info.config);
        } catch {
          // Its filter was changed (nats consumer edit): the fetch loop attaches again and stops.
          this.consumer = null;
        }
      }
    } catch {
      // Not answered (a reconnect, the consumer deleted): the fetch loop finds out.
    } finally {
      this.reading = false;
    }
  }

  /**
   * Takes in what the consumer said (asked while `before` were the batches in hand). Its
   * messages unacknowledged are all this process's only when they are no more than the
   * messages it held both when it asked and now (those the server counted for certain);
   * otherwise someone else may hold one above the acknowledgement floor.
   */
  private noteConsumer(info: ConsumerInfo, before: Set<Batch>): void {
    this.highestSeen = Math.max(this.highestSeen, info.delivered.stream_seq);
    this.readDelivered = info.delivered.stream_seq;
    this.nextExpected = Math.max(this.nextExpected, this.readDelivered + 1);
    this.gapSinceRead = false;
    let mine = 0;
    for (const b of before) if (this.batches.has(b) && b.consumer === info.created) mine += b.msgs.length;
    this.othersFrom = info.num_ack_pending <= mine ? Infinity : info.ack_floor.stream_seq + 1;
  }

  /**
   * Where a durable consumer deleted under this process is made again: the lowest stream
   * sequence it holds unsettled (fetched, on the workers, waiting for the outputs or KSC
   * work), else the one after the highest it has seen; lowered to the consumer's
   * acknowledgement floor when its last state showed messages held by someone else (another
   * processor, a predecessor that crashed) or given back by this one, and to the one after
   * the consumer's delivered sequence at its last read when a message delivered since went
   * to someone else (see gapSinceRead). Nothing that may be unprocessed lies before it;
   * what this process settled after it comes again.
   */
  restartSequence(): number {
    let from = this.highestSeen + 1;
    for (const b of this.batches) for (const m of b.msgs) from = Math.min(from, m.seq);
    for (const m of this.gathered) from = Math.min(from, m.seq);
    if (this.gapSinceRead) from = Math.min(from, this.readDelivered + 1);
    return Math.max(1, Math.min(from, this.othersFrom));
  }

  private problem(text: string): void {
    // Logged once per distinct problem, not once per attempt.
    if (text === this.lastProblem) return;
    this.lastProblem = text;
    this.deps.telemetry.log.warn({ listener: this.name, err: text }, `nats source ${this.name}: ${text}`);
  }

  /**
   * The durable consumer on the live connection, created with this config when missing. One
   * that never existed is created to read the whole stream (a new deployment); one that
   * this process had and that disappeared (deleted by an operator) is made again from
   * restartSequence, so that the stream is not processed again from its start.
   *
   * An existing consumer is used as it is, not updated to this listener's ack_wait and
   * max_ack_pending: it is shared, and a processor that rewrote it would shorten the
   * ack_wait under the others' batches between two of their readings (their in-progress
   * acknowledgements, every third of the ack_wait they last read, would come too late);
   * the differences are logged and the in-progress acknowledgements follow the consumer's
   * ack_wait (checkConsumer). A consumer with another filter_subject is not read at all.
   */
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
    const before = new Set(this.batches);
    const lookUp = () =>
      jsm.consumers.info(c.stream, c.consumer).catch((err: unknown) => {
        if (consumerNotFound(err)) return null;
        throw err;
      });
    /** Made from stream sequence `from` (undefined: the whole stream); null when another processor made it first. */
    const make = async (from: number | undefined, why: string) => {
      const cfg = from === undefined ? want : { ...want, deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: from };
      try {
        const made = await jsm.consumers.add(c.stream, cfg);
        if (from !== undefined) {
          this.stats.natsConsumerRecreated++;
          this.deps.telemetry.log.warn(
            { listener: this.name, stream: c.stream, consumer: c.consumer, start_sequence: from },
            `nats source ${this.name}: the durable consumer ${c.consumer} of stream ${c.stream} ${why}: made again from stream sequence ${from}, the first one this process may not have processed (not from the stream's start)`,
          );
        }
        return made;
      } catch (err) {
        if ((await lookUp()) === null) throw err;
        return null;
      }
    };
    let info = await lookUp();
    let madeHere = false;
    if (info === null) {
      const made = await make(this.hadConsumer ? this.restartSequence() : undefined, 'is gone (deleted?)');
      madeHere = made !== null;
      info = made ?? (await lookUp());
    }
    if (info === null) throw new Error(`consumer ${c.consumer} of stream ${c.stream} was deleted again while it was made`);
    // Made again by another processor that knew only its own messages: it may start after
    // some this one holds unsettled (or gave back). Made again from the lower sequence, so
    // that none of them is lost; the other processor's later ones come again (copies).
    const mine = this.restartSequence();
    if (
      this.hadConsumer &&
      !madeHere &&
      info.created !== this.lastCreated &&
      info.config.deliver_policy === DeliverPolicy.StartSequence &&
      (info.config.opt_start_seq ?? 0) > mine &&
      mine <= this.highestSeen
    ) {
      await jsm.consumers.delete(c.stream, c.consumer).catch((err: unknown) => {
        if (!consumerNotFound(err)) throw err;
      });
      info = (await make(mine, `was made again by another processor from stream sequence ${info.config.opt_start_seq}, after messages this one holds`)) ?? (await lookUp());
      if (info === null) throw new Error(`consumer ${c.consumer} of stream ${c.stream} was deleted again while it was made`);
    }
    this.checkConsumer(info.config);
    const consumer = await nc.jetstream().consumers.get(c.stream, c.consumer);
    this.noteConsumer(info, before);
    this.consumer = { nc, c: consumer, created: info.created };
    this.lastCreated = info.created;
    this.hadConsumer = true;
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
        if (this.mismatch !== '') {
          this.mismatch = '';
          this.ready = !this.stopped;
          this.deps.telemetry.log.info({ listener: this.name }, `nats source ${this.name}: the durable consumer ${this.config.consumer} matches this listener's filter_subject now: reading`);
        }
        const from = this.consumer!;
        const it = await consumer.fetch({ max_messages: Math.min(this.config.batch_size, room), expires: Math.max(1000, waitMs) });
        this.fetching = it;
        if (this.stopped) it.stop();
        for await (const m of it) {
          got++;
          this.gathered.push(m);
          this.gatheredFrom = from;
          if (m.seq > this.highestSeen) this.highestSeen = m.seq;
          if (!m.info.redelivered && m.seq >= this.nextExpected) {
            if (m.seq > this.nextExpected) this.gapSinceRead = true;
            this.nextExpected = m.seq + 1;
          }
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
        this.handOver();
        if (err instanceof ConsumerMismatchError) {
          // Not ready (/readyz names the listener) until the consumer matches; looked at again.
          this.ready = false;
          if (err.message !== this.mismatch) {
            this.mismatch = err.message;
            this.deps.telemetry.log.error({ listener: this.name, code: err.code, stream: this.config.stream, consumer: this.config.consumer }, `nats source ${this.name}: ${err.message}`);
          }
          await sleep(MISMATCH_RETRY_MS);
          continue;
        }
        this.problem(`cannot read stream ${this.config.stream} through consumer ${this.config.consumer}: ${natsErrorText(err)}`);
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
    const from = this.gatheredFrom!;
    const batch: Batch = { msgs, nc: from.nc, consumer: from.created, since: Date.now(), extending: true };
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
            // Given back, not processed: until the consumer's state says otherwise, a consumer
            // made again must start no later than these.
            for (const m of msgs) this.othersFrom = Math.min(this.othersFrom, m.seq);
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
    if (this.ticker !== null) clearTimeout(this.ticker);
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
