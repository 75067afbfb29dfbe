/**
 * The ingest pipeline: frame → decode (syslog, CEF) → normalizers → id, listener, peer →
 * the KSC watch → route filters → one record per encoder in use → every output whose
 * filter the event passes, in its own encoding (router.ts). Frames that are not events go
 * to the dead-letter output with their raw bytes and a reason code.
 *
 * Sources call `frame()` for each frame of a socket read and `commit()` after the read.
 * Two ways to do the work (processFrame in ingest.ts either way):
 *
 * - On decode workers (default on machines with 2+ cores): `commit()` sends the read's
 *   frames to a worker as one job; the jobs of one connection go to the workers in turn,
 *   so one busy connection uses every core, and their results are put back in order
 *   before they reach the output queues. Events come back as encoded bytes (one block per
 *   encoder) that go into the disk buffer and the outputs as they are; what the KSC watch
 *   found comes back beside them (ksc/watch.ts), a few fields per event that matter.
 * - On this thread, when there are no workers or when a tap (code that needs the event
 *   objects themselves on this thread) is registered.
 *
 * Either way each connection's events reach each output in the order they were read.
 */
import type { FramingMode } from '../codecs/framing/framer.js';
import type { ListenerStats, Telemetry } from '../telemetry/telemetry.js';
import type { CefdEvent, EventOrigin } from '../event.js';
import { isoFromMs } from '../time.js';
import { rawFrameRecord } from '../nats/raw-frame.js';
import { FrameCounts, deadLetterRecord, eventId, newIdPrefix, processFrame, type FrameCountsData, type IngestEnv } from './ingest.js';
import type { Routes } from './router.js';
import { isJsonEncoding } from '../codecs/encoders/registry.js';
import { JOB_TARGET_BYTES, JobMemory, MAX_IN_FLIGHT_BYTES, MAX_IN_FLIGHT_PER_SOURCE, MAX_IN_FLIGHT_UNPAUSABLE, SourceState, copyFrames, frameOf, truncatedOf, type Gathered } from './source-state.js';

export { SourceState };
import { KscWatch, type FindingsHandler, type KscFindings, type KscWatchSpec } from '../ksc/watch.js';
import type { Normalizer } from './normalize.js';
import { processRecords } from './records.js';
import type { OutputRunner } from './output-runner.js';
import type { JobOutcome, WorkerPool } from '../workers/worker-pool.js';
import type { CarriedFacts, RecentBlock, RecentItem, RecentQuery, ResultMessage } from '../workers/worker-protocol.js';
import type { SpilledRead } from './spill.js';

/** What a source knows about where a frame came from. */
export interface SourceContext {
  readonly listener: string;
  readonly stats: ListenerStats;
  readonly normalizers: readonly Normalizer[];
  /** `address:port` of the sender. */
  readonly peer: string;
  /** SHA-256 fingerprint of the sender's TLS client certificate (TLS listeners); for taps and the KSC watch's findings, never in the event's JSON. */
  readonly tlsFingerprint?: string;
  /** Pauses / resumes this source (bounds the reads in flight on workers). Absent for UDP. */
  readonly pause?: () => void;
  readonly resume?: () => void;
  /** The pipeline's per-source state. */
  state?: SourceState;
}

/** A frame handed in whole by a source that is not a socket (see Pipeline.submitFrames). */
export interface SubmittedFrame {
  readonly data: Buffer;
  readonly truncated: boolean;
  /** When the frame was first received (by a receiver, before the hop), ms since the epoch. */
  readonly receivedMs: number;
  /** The event id: the same for the same frame delivered again. */
  readonly id: string;
  readonly listener: string;
  readonly peer: string;
  /** The sender's TLS client certificate fingerprint, when the receiver's listener had one (the trust check reads it). */
  readonly tlsFingerprint?: string;
}

/** A submitted frame decoded on this thread: its own origin, the source's stats and chain. */
function frameContext(f: SubmittedFrame, ctx: SourceContext): SourceContext {
  // Read as ctx.tlsFingerprint only (never listed): an undefined one costs no second object per frame.
  return { listener: f.listener, peer: f.peer, tlsFingerprint: f.tlsFingerprint, stats: ctx.stats, normalizers: ctx.normalizers };
}

export interface PipelineOptions {
  defaultZone: string;
  includeRaw: boolean;
  /**
   * Receiver mode (`mode: receiver`): frames are not decoded here; each becomes a raw-frame
   * record (src/nats/raw-frame.ts) for every output (nats outputs with `payload: frame`),
   * with an id unique to this process, and a processor decodes it later.
   */
  receiver?: boolean;
  /** Compiled from the same outputs as the slots, in the same order. */
  routes: Routes;
}

/** Code that watches events; `origin` says where the event came from (src/ksc/trust.ts). */
export type EventTap = (event: CefdEvent, origin: EventOrigin) => void;

/**
 * The console's recent events (src/console/tail.ts): events decoded on this thread one by
 * one (after routing, with their frame: a view, copy what you keep); and, while a live tail
 * is open, every event a decode worker decoded, a block per read, already encoded
 * (src/workers/recent.ts). The workers keep their own recent events: see queryRecent.
 */
export interface RecentSink {
  event(event: CefdEvent, frame: Buffer | undefined): void;
  block(b: RecentBlock, o: RecentBlockInfo): void;
}

/** What the decode workers keep for the console (Pipeline.setRecent). */
export interface RecentOptions {
  /** Events each worker keeps (0: none). */
  max: number;
  /** Bytes they may take (native JSON and frames), shared among the workers. */
  bytes: number;
  /** A live tail is open: every event comes to RecentSink.block. */
  all: boolean;
}

/** Where a worker's recent block came from; its events' ids are eventId(idPrefix, firstSeq + frame index). */
export interface RecentBlockInfo {
  listener: string;
  receivedMs: number;
  idPrefix: string;
  firstSeq: number;
}

const ALL = 0xffffffff;

/**
 * submitFramesAsync decodes batches of fewer frames than this on the main thread when none
 * of the source's batches is on a worker (a lightly loaded stream: batches of a few
 * frames): the round trip to a worker (a message each way, a thread woken) costs about as
 * much as decoding them, and under load batches grow to `batch_size` and go to the workers.
 */
const SMALL_BATCH = 64;

/** Where a source's frames come from, as taps and the KSC findings handler get it. */
function originOf(ctx: SourceContext): EventOrigin {
  return { listener: ctx.listener, peer: ctx.peer, tlsFingerprint: ctx.tlsFingerprint };
}

/** A read of `ctx` kept for the next start: copies of its frames (their job memory is reused). */
function spilledRead(ctx: SourceContext, g: Gathered, receivedMs: number): SpilledRead {
  return { listener: ctx.listener, peer: ctx.peer, ...(ctx.tlsFingerprint !== undefined ? { tlsFingerprint: ctx.tlsFingerprint } : {}), receivedMs, frames: copyFrames(g), truncated: truncatedOf(g) };
}


export class Pipeline {
  private slots: OutputRunner[];
  /** Per output, the records of the current read (in its encoding). */
  private pending: string[][];
  /** Scratch: one record per encoder, filled by processFrame. */
  private encoded: string[] = [];
  private watch: KscWatch | undefined;
  private onFindings: FindingsHandler | undefined;
  private deadPending: string[] = [];
  private readonly bootId: string;
  private seq = 0;
  private taps: EventTap[] = [];
  /** The console's recent events: the sink, and what the workers keep. */
  private recent: RecentSink | null = null;
  private recentOpts: RecentOptions = { max: 0, bytes: 0, all: false };
  private tails: RecentSink['event'][] = [];
  private env: IngestEnv;
  private counts = new FrameCounts();
  private pool: WorkerPool | null = null;
  /** The worker configuration version the current slots and filters belong to. */
  private workerVersion = -1;
  /** Jobs on workers, by local id, for drain(). */
  private readonly jobs = new Set<number>();
  /** Of those, the jobs of sources that cannot be paused (MAX_IN_FLIGHT_UNPAUSABLE). */
  private unpausableJobs = 0;
  /** Job memory on workers of the sources that can be paused (MAX_IN_FLIGHT_BYTES). */
  private pausableBytes = 0;
  /** Sources paused because pausableBytes reached MAX_IN_FLIGHT_BYTES (some with a read held, gathered): resumed below half. */
  private readonly overBudget = new Set<SourceContext>();
  /** drain() is sending what sources gathered: nothing is held for the budget. */
  private draining = false;
  private jobSeq = 0;
  /** Where sources' frames are gathered for their worker jobs, reused job after job. */
  private readonly jobMemory = new JobMemory();
  private jobWaiters: { ids: Set<number>; resolve: () => void }[] = [];
  /** Sources (pausable ones) whose frames wait to be sent (see JOB_TARGET_BYTES), for drain(). */
  private readonly gathering = new Set<SourceContext>();
  /** Set while stopping: reads the workers did not decode go here (spill.ts), not to the dead letter. */
  private spill: ((r: SpilledRead) => boolean) | null = null;

  constructor(
    slots: OutputRunner[],
    private deadLetter: OutputRunner,
    private readonly telemetry: Telemetry,
    private opts: PipelineOptions,
  ) {
    this.slots = slots;
    this.pending = slots.map(() => []);
    // A receiver's frames meet other receivers' in one stream: its pid makes the ids of two
    // receivers started in the same millisecond differ.
    this.bootId = opts.receiver === true ? `${newIdPrefix()}${process.pid.toString(36)}` : newIdPrefix();
    this.env = this.makeEnv();
  }

  private makeEnv(): IngestEnv {
    return {
      defaultZone: this.opts.defaultZone,
      includeRaw: this.opts.includeRaw,
      routes: this.opts.routes,
      taps: this.taps,
      watch: this.watch,
      onTapError: (e) => this.telemetry.repeated('error', 'tap_threw', { err: (e as Error).message }, 'an event tap threw'),
      tails: this.tails,
    };
  }

  /** Decode on these workers (null: on this thread), whose configuration is `version`. */
  useWorkers(pool: WorkerPool | null, version = -1): void {
    this.pool = pool;
    pool?.setWatch(this.watch?.spec ?? null);
    if (this.recent !== null) this.postRecent();
    this.workerVersion = version;
  }

  /**
   * Swaps outputs and options (config reload), and the worker configuration version they
   * match. Results decoded under another version are done again on this thread.
   */
  reconfigure(slots: OutputRunner[], deadLetter: OutputRunner, opts: PipelineOptions, workerVersion = this.workerVersion): void {
    this.flushInline();
    this.slots = slots;
    this.pending = slots.map(() => []);
    this.deadLetter = deadLetter;
    this.opts = opts;
    this.env = this.makeEnv();
    this.workerVersion = workerVersion;
  }

  /**
   * The KSC integration's per-event work (null: none), on the workers and here; what it
   * finds goes to `onFindings` on this thread with the frames' origin.
   */
  setWatch(spec: KscWatchSpec | null, onFindings?: FindingsHandler): void {
    this.watch = spec === null ? undefined : new KscWatch(spec);
    if (onFindings !== undefined) this.onFindings = onFindings;
    this.env = this.makeEnv();
    this.pool?.setWatch(spec);
  }

  private deliver(origin: EventOrigin, f: KscFindings | undefined): void {
    if (f === undefined || this.onFindings === undefined) return;
    try {
      this.onFindings(origin, f);
    } catch (e) {
      this.telemetry.repeated('error', 'ksc_findings_failed', { err: (e as Error).message }, 'handling KSC findings failed');
    }
  }

  private ackHolds: (() => Promise<void> | undefined)[] = [];

  /**
   * Work an extension started for submitted frames that must be done before the source
   * acknowledges them upstream (the KSC work published to NATS: ksc/cluster.ts).
   */
  holdAcks(hold: () => Promise<void> | undefined): () => void {
    this.ackHolds = [...this.ackHolds, hold];
    return () => {
      this.ackHolds = this.ackHolds.filter((h) => h !== hold);
    };
  }

  /**
   * After `submitFrames`: undefined when the frames may be acknowledged now, else a promise
   * that resolves when they may, or rejects when they must be given back (delivered again).
   */
  acksHeld(): Promise<void> | undefined {
    if (this.ackHolds.length === 0) return undefined;
    const waits = this.ackHolds.map((h) => h()).filter((p): p is Promise<void> => p !== undefined);
    return waits.length === 0 ? undefined : Promise.all(waits).then(() => undefined);
  }

  addTap(tap: EventTap): () => void {
    this.taps.push(tap);
    this.env = this.makeEnv();
    return () => {
      this.taps = this.taps.filter((t) => t !== tap);
      this.env = this.makeEnv();
    };
  }

  /**
   * The console's recent events (null: none, the default). Events stay on the workers, and
   * each keeps its last `max` events within its share of `bytes` for queryRecent; with `all` (a live tail is open) every event also comes to
   * `sink.block`. Events decoded here go to `sink.event`. Call again to change the options.
   */
  setRecent(sink: RecentSink | null, o: RecentOptions = { max: 0, bytes: 0, all: false }): void {
    this.recent = sink;
    this.recentOpts = sink === null ? { max: 0, bytes: 0, all: false } : o;
    this.tails = sink === null ? [] : [sink.event];
    this.env = this.makeEnv();
    this.postRecent();
  }

  private postRecent(): void {
    const p = this.pool;
    if (p === null) return;
    const o = this.recentOpts;
    p.setRecent(o.max, Math.floor(o.bytes / Math.max(1, p.threads)), o.all);
  }

  /** The recent events the decode workers keep that match `q` (none without workers). */
  queryRecent(q: RecentQuery): Promise<{ items: RecentItem[]; kept: number }> {
    if (this.pool === null || this.recent === null) return Promise.resolve({ items: [], kept: 0 });
    return this.pool.queryRecent(q);
  }

  /** Events go to workers when there are (working) workers and no tap needs the event objects here. */
  /** Jobs on workers now. */
  get jobsInFlight(): number {
    return this.jobs.size;
  }

  get onWorkers(): boolean {
    return this.opts.receiver !== true && this.pool !== null && !this.pool.broken && this.taps.length === 0;
  }

  frame(buf: Buffer, mode: FramingMode | 'datagram', truncated: boolean, ctx: SourceContext): void {
    const stats = ctx.stats;
    if (mode === 'lf') stats.framesLf++;
    else if (mode === 'octet') stats.framesOctet++;
    else stats.framesDatagram++;
    if (truncated) this.telemetry.frameProblem(ctx.listener, mode === 'octet' ? 'frame_incomplete' : 'frame_truncated', ctx.peer);
    if (this.opts.receiver === true) {
      const rec = rawFrameRecord(buf, truncated, Date.now(), mode, eventId(this.bootId, this.seq++), ctx.listener, ctx.peer, ctx.tlsFingerprint);
      for (const p of this.pending) p.push(rec);
      stats.eventsParsed++;
      return;
    }
    if (this.onWorkers) {
      // Copied into the source's next job (the socket's chunk may be reused).
      (ctx.state ??= new SourceState(this.jobMemory)).gather(buf, truncated);
      return;
    }
    // Frames gathered for a worker before the workers went away come first.
    if (ctx.state !== undefined && ctx.state.gathered > 0) this.decodeHere(ctx, ctx.state);
    this.decodeInline(buf, truncated, Date.now(), ctx);
  }

  /** Decodes one frame on this thread into the records pending for the current read. */
  private decodeInline(buf: Buffer, truncated: boolean, now: number, ctx: SourceContext, id?: string): void {
    const enc = this.encoded;
    const r = processFrame(buf, truncated, now, ctx.listener, ctx.peer, ctx.normalizers, id ?? eventId(this.bootId, this.seq++), this.env, this.counts, enc, ctx.tlsFingerprint);
    if (this.watch !== undefined) {
      const found = this.watch.take();
      if (found !== undefined) this.deliver(originOf(ctx), found);
    }
    if (typeof r !== 'number') {
      this.deadPending.push(r.dead);
      return;
    }
    if (r === 0) return;
    const encoderOf = this.opts.routes.encoderOf;
    for (let i = 0; i < this.slots.length; i++) if (i >= 32 || (r >>> i) & 1) this.pending[i]!.push(enc[encoderOf[i]!]!);
  }

  /**
   * Frames that did not come from a socket of this process (a NATS message: a frame a
   * receiver published): decoded here, now, with the id, listener, peer and received time
   * they carry, and handed to the output queues before this returns. The queues' appends
   * are synchronous (a disk buffer has written the block when `append` returns), so when
   * this returns every output's buffer has taken the events, which is when a source that
   * must acknowledge upstream (src/sources/nats/) may do so. Call it only when
   * `roomForRecords()` is true, so that no `drop_newest` output drops them.
   */
  submitFrames(frames: readonly SubmittedFrame[], ctx: SourceContext): void {
    const saved = this.takeInline();
    for (const f of frames) {
      ctx.stats.framesLf++;
      this.decodeInline(f.data, f.truncated, f.receivedMs, frameContext(f, ctx), f.id);
    }
    this.enqueueInline(this.takeInline(), true, ctx.listener, ctx.stats);
    this.pending = saved.pending;
    this.deadPending = saved.dead;
    this.counts = saved.counts;
  }

  /**
   * submitFrames, but only when every output takes all of the events: decoded first, then
   * each output asked with its records' real bytes (a guess from the frames' size can be
   * far off: a short frame makes an event many times its size), so that no `drop_newest`
   * output drops an event whose frame the source then acknowledges. False: nothing was
   * queued (the records are discarded; the frames come again). KSC findings of the batch
   * were handed on already: a redelivered event carries the same id, which the KSC work
   * stream and the start claims deduplicate (src/ksc/cluster.ts).
   */
  private submitFramesIfTaken(frames: readonly SubmittedFrame[], ctx: SourceContext): boolean {
    const saved = this.takeInline();
    try {
      for (const f of frames) this.decodeInline(f.data, f.truncated, f.receivedMs, frameContext(f, ctx), f.id);
      const t = this.takeInline();
      const bytesOf = (records: string[]) => {
        let n = 0;
        for (const r of records) n += Buffer.byteLength(r) + 1;
        return n;
      };
      for (let i = 0; i < this.slots.length; i++) if (this.slots[i]!.refusesNow(bytesOf(t.pending[i]!))) return false;
      if (this.deadLetter.refusesNow(bytesOf(t.dead))) return false;
      ctx.stats.framesLf += frames.length;
      this.enqueueInline(t, true, ctx.listener, ctx.stats);
      return true;
    } finally {
      this.pending = saved.pending;
      this.deadPending = saved.dead;
      this.counts = saved.counts;
    }
  }

  /**
   * submitFrames for a source that acknowledges upstream and need not wait (the nats
   * source): the frames are decoded on the workers when the pipeline decodes there (on
   * this thread otherwise), and `done(true)` is called once every output's buffer took
   * their events: the source may acknowledge them then. `done(false)`: none was taken (a
   * `drop_newest` output was full when they were ready, or cefd was stopping before the
   * workers decoded them); the source must not acknowledge them, so they are delivered
   * again. Calls for one source complete in the order they were made. The frames must
   * not change until `done`: a worker failure decodes them here.
   */
  submitFramesAsync(frames: readonly SubmittedFrame[], ctx: SourceContext, done: (taken: boolean) => void): void {
    const st = (ctx.state ??= new SourceState(this.jobMemory));
    const here = () => {
      // Stopping, and an earlier batch was not taken: neither is this one (see below).
      if (st.spilled && this.spill !== null) {
        done(false);
        return;
      }
      done(this.submitFramesIfTaken(frames, ctx));
    };
    // A small batch with nothing of this source on a worker (a stream with a light load) is
    // decoded here: the round trip to a worker costs more than the batch's decoding.
    // With the console's recent events on, here too: the workers' keeper knows events by
    // the job's id prefix and sequence, not by the ids these frames carry.
    if (!this.onWorkers || this.spill !== null || this.recent !== null || frames.length === 0 || (frames.length < SMALL_BATCH && st.inFlight === 0)) {
      // Calls still on workers come first.
      if (st.nextCommit < st.nextSeq) st.inOrder(st.nextSeq++, here);
      else here();
      return;
    }
    const { data, offsets, flags, carried } = packCarried(frames);
    const seq = st.nextSeq++;
    const job = ++this.jobSeq;
    this.jobs.add(job);
    st.inFlight++;
    this.pool!.submit({ listener: ctx.listener, peer: ctx.peer, nowMs: Date.now(), idPrefix: '', firstSeq: 0, data, offsets, truncated: flags, carried }, (o) => {
      st.inFlight--;
      st.inOrder(seq, () => {
        // Stopping, and an earlier batch was not taken: neither are the later ones, so what
        // is taken stays a prefix in fetch order (the rest comes again after the restart).
        if (st.spilled && this.spill !== null) {
          done(false);
          return;
        }
        if (!o.ok) {
          // Stopping: the messages are not acknowledged and come again after the restart.
          if (this.spill !== null) {
            st.spilled = true;
            done(false);
            return;
          }
          this.telemetry.repeated('error', `worker_failed:${ctx.listener}`, { listener: ctx.listener, frames: frames.length, err: o.error.slice(0, 300) }, `a decode worker failed; its ${frames.length} frames are decoded on the main thread`);
          here();
          return;
        }
        // Decoded under a configuration that has changed since (a reload): done again here.
        if (o.result.version !== this.workerVersion) {
          here();
          return;
        }
        if (this.refusesResult(o.result)) {
          done(false);
          return;
        }
        ctx.stats.framesLf += frames.length;
        this.applyBlocks(o.result, true);
        this.mergeCounts(ctx.listener, ctx.stats, o.result.counts);
        done(true);
      });
      this.jobDone(job);
    });
  }

  /** True when an output (or the dead-letter output) would refuse a worker's result now: each output against its own encoding's records (OutputRunner.refusesNow). */
  private refusesResult(r: ResultMessage): boolean {
    const encoderOf = this.opts.routes.encoderOf;
    for (let i = 0; i < this.slots.length; i++) if (this.slots[i]!.refusesNow(r.blocks[encoderOf[i]!]?.length ?? 0)) return true;
    return this.deadLetter.refusesNow(r.deadBytes);
  }

  /** A partial frame left when a connection closed: dead-lettered with its raw bytes. */
  deadLetterFrame(buf: Buffer, reason: string, message: string, ctx: SourceContext, truncated = false): void {
    const rec = deadLetterRecord(buf, reason, message, ctx.listener, ctx.peer, Date.now(), truncated);
    this.telemetry.deadLettered(reason);
    const st = ctx.state;
    // Frames gathered for a worker come before it.
    if (st !== undefined && st.gathered > 0) this.commit(ctx, true, true);
    if (st !== undefined && st.nextCommit < st.nextSeq) {
      // Reads of this source are still on workers: this comes after them.
      const seq = st.nextSeq++;
      st.inOrder(seq, () => this.deadLetter.enqueueMany([rec]));
      return;
    }
    this.deadPending.push(rec);
  }

  /**
   * Events from a source that reads records, not frames (the sql source): normalized,
   * routed and counted like decoded frames, on this thread; `dead` are dead-letter records
   * of records that could not become events. Queued only when every output (and the
   * dead-letter output) takes all of them now: encoded first, then each output asked with its records' real bytes
   * (OutputRunner.refusesNow: a `drop_newest` queue that is full, or a disk buffer whose
   * `max_size` has no room for them, would drop them). False: nothing was queued or
   * counted, and the source must not move its position (the sql source reads the rows
   * again, maybe fewer at a time).
   */
  submitRecordsIfTaken(events: readonly CefdEvent[], dead: readonly string[], ctx: SourceContext): boolean {
    const r = processRecords(events, { listener: ctx.listener, peer: ctx.peer }, ctx.normalizers, this.env, this.slots.length, (ev, reason, message) =>
      JSON.stringify({ time: isoFromMs(Date.now()), reason, message, listener: ctx.listener, peer: ctx.peer, id: ev.id, sql: ev['sql'] }),
    );
    const allDead = dead.length > 0 ? [...dead, ...r.dead] : r.dead;
    const bytesOf = (records: readonly string[]) => {
      let n = 0;
      for (const x of records) n += Buffer.byteLength(x) + 1;
      return n;
    };
    for (let i = 0; i < this.slots.length; i++) {
      const p = r.pending[i]!;
      if (p.length > 0 && this.slots[i]!.refusesNow(bytesOf(p))) return false;
    }
    if (allDead.length > 0 && this.deadLetter.refusesNow(bytesOf(allDead))) return false;
    for (let i = 0; i < this.slots.length; i++) {
      const p = r.pending[i]!;
      if (p.length > 0) this.slots[i]!.enqueueMany(p, true);
    }
    if (allDead.length > 0) this.deadLetter.enqueueMany(allDead, true);
    this.mergeCounts(ctx.listener, ctx.stats, r.counts.toJSON());
    return true;
  }

  /**
   * Resolves once every record queued so far is in every disk buffer's files (durable as
   * its fsync policy says), not only in a full buffer's memory overflow: DiskQueue.onDisk.
   * Memory queues resolve at once (they keep nothing over a crash anyway).
   */
  onDisk(): Promise<void> {
    return Promise.all([...this.slots, this.deadLetter].map((s) => s.queue.onDisk?.())).then(() => undefined);
  }

  /** True when every output's queue (and the dead-letter one) is below full: see submitRecordsIfTaken and submitFrames. */
  roomForRecords(): boolean {
    for (const s of this.slots) if (s.queue.fill() >= 1) return false;
    return this.deadLetter.queue.fill() < 1;
  }


  /**
   * Batches an output rejected for good: dead-lettered with the reason. A JSON record is
   * embedded as it is (`"event":{...}`); a record of another encoding (`cef`) as a JSON
   * string (`"record":"CEF:0|..."`), since dead letters are NDJSON. Both name a non-native
   * encoding (`"encoding"`), so the record can be read back.
   */
  readonly rejectSink = (output: string, records: readonly string[], reason: string, error: string, codec = 'native'): void => {
    const time = JSON.stringify(isoFromMs(Date.now()));
    const enc = codec === 'native' ? '' : `"encoding":${JSON.stringify(codec)},`;
    const head = `{"time":${time},"reason":${JSON.stringify(reason)},"message":${JSON.stringify(error.slice(0, 500))},"output":${JSON.stringify(output)},${enc}`;
    const recs = isJsonEncoding(codec) ? records.map((r) => `${head}"event":${r}}`) : records.map((r) => `${head}"record":${JSON.stringify(r)}}`);
    this.telemetry.deadLettered(reason, recs.length);
    this.deadLetter.enqueueMany(recs);
  };

  /**
   * Hands the records of the current read to the output queues (or the read to a
   * worker). `pausable` is false for sources that cannot be paused (UDP): see
   * OutputRunner.enqueueMany.
   */
  commit(ctx?: SourceContext, pausable = true, now = false): void {
    const st = ctx?.state;
    if (ctx !== undefined && st !== undefined && st.gathered > 0) {
      if (!now && this.onWorkers && pausable && st.inFlight > 0 && st.bytes < JOB_TARGET_BYTES) {
        // A job of this source is on a worker: gather this read with the next ones; they
        // are sent when full or when that job comes back (submit's callback).
        this.gathering.add(ctx);
        return;
      }
      if (this.onWorkers && pausable && ctx.pause !== undefined && this.spill === null && !this.draining && this.pausableBytes > 0 && this.pausableBytes + st.bytes > MAX_IN_FLIGHT_BYTES) {
        // The job memory of all sources on the workers is at its budget: this read waits,
        // gathered, and its source pauses, until the workers have room (resumeOverBudget).
        this.gathering.add(ctx);
        this.pauseOverBudget(ctx, st);
        return;
      }
      this.gathering.delete(ctx);
      if (!this.onWorkers || (ctx.pause === undefined && (st.inFlight >= MAX_IN_FLIGHT_PER_SOURCE || this.unpausableJobs >= MAX_IN_FLIGHT_UNPAUSABLE))) {
        // No workers any more (they failed, or a tap appeared since these frames came), or
        // a source that cannot be paused (UDP) is ahead of them (it alone, or all such
        // sources together): decode this read here, so jobs in flight stay bounded.
        this.decodeHere(ctx, st);
      } else {
        this.submit(ctx, st, pausable);
        return;
      }
    }
    if (ctx !== undefined && st !== undefined && st.nextCommit < st.nextSeq) {
      // Reads of this source are still on workers: this one comes after them.
      const recs = this.takeInline();
      const seq = st.nextSeq++;
      st.inOrder(seq, () => this.enqueueInline(recs, pausable, ctx.listener, ctx.stats, ctx.peer));
      return;
    }
    this.enqueueInline(this.takeInline(), pausable, ctx?.listener, ctx?.stats, ctx?.peer);
  }

  /** Decodes the frames collected for a worker job on this thread instead. */
  private decodeHere(ctx: SourceContext, st: SourceState): void {
    const now = Date.now();
    const g = st.take();
    for (let i = 0; i < g.count; i++) this.decodeInline(frameOf(g, i), g.flags[i] === 1, now, ctx);
    this.jobMemory.release(g.memory);
  }

  private takeInline(): { pending: string[][]; dead: string[]; counts: FrameCounts } {
    const out = { pending: this.pending, dead: this.deadPending, counts: this.counts };
    this.pending = this.slots.map(() => []);
    this.deadPending = [];
    this.counts = new FrameCounts();
    return out;
  }

  private enqueueInline(t: { pending: string[][]; dead: string[]; counts: FrameCounts }, pausable: boolean, listener: string | undefined, stats: ListenerStats | undefined, peer?: string): void {
    for (let i = 0; i < this.slots.length; i++) {
      const p = t.pending[i];
      if (p !== undefined && p.length > 0) this.slots[i]!.enqueueMany(p, pausable);
    }
    if (t.dead.length > 0) this.deadLetter.enqueueMany(t.dead, pausable);
    if (listener !== undefined && stats !== undefined) this.mergeCounts(listener, stats, t.counts.toJSON(), peer);
  }

  /** Whatever is pending from frames without a source (reconfigure). */
  private flushInline(): void {
    this.enqueueInline(this.takeInline(), true, undefined, undefined);
  }

  private mergeCounts(listener: string, stats: ListenerStats, c: FrameCountsData, peer?: string): void {
    stats.eventsParsed += c.parsed;
    if (c.lastEventMs > stats.lastEventMs) stats.lastEventMs = c.lastEventMs;
    if (peer !== undefined && c.parsed > 0) stats.senderSeen(peer, c.parsed, c.lastEventMs);
    for (const [code, n] of c.unparseable) {
      this.telemetry.frameUnparseable(listener, code, n);
      this.telemetry.deadLettered(code, n);
    }
    for (const [code, n] of c.errors) stats.parseErrors.add(code, n);
    for (const [code, n] of c.warnings) stats.parseWarnings.add(code, n);
    for (const [k, n] of c.normalized) {
      const tab = k.indexOf('\t');
      this.telemetry.eventNormalized(k.slice(0, tab), k.slice(tab + 1), n);
    }
    for (const [name, [n, text]] of c.normalizerFailed) this.telemetry.normalizerFailed(name, text, n);
    for (const [k, [n, detail]] of c.encodeProblems) {
      const tab = k.indexOf('\t');
      // Counts come with the records, under the configuration they were made for (a result
      // of another version is decoded again here), so the index names the current output.
      const output = this.slots[Number(k.slice(0, tab))];
      if (output !== undefined) this.telemetry.encodeProblem(output.name, k.slice(tab + 1), n, detail);
    }
  }

  // ---- workers ----

  private submit(ctx: SourceContext, st: SourceState, pausable: boolean): void {
    if (this.spill !== null) {
      // Stopping, the workers closing: this read is kept for the next start, after the
      // reads of this source still on workers (they are kept or applied first).
      const g = st.take();
      const read = spilledRead(ctx, g, Date.now());
      this.jobMemory.release(g.memory);
      const seq = st.nextSeq++;
      st.inOrder(seq, () => this.keepRead(read, ctx, pausable));
      return;
    }
    const g = st.take();
    const firstSeq = this.seq;
    this.seq += g.count;
    const seq = st.nextSeq++;
    const nowMs = Date.now();
    const job = ++this.jobSeq;
    this.jobs.add(job);
    st.inFlight++;
    const unpausable = ctx.pause === undefined;
    const bytes = unpausable ? 0 : g.memory.byteLength;
    if (unpausable) this.unpausableJobs++;
    else this.pausableBytes += bytes;
    if (!unpausable && !st.pausedByUs) {
      if (st.inFlight >= MAX_IN_FLIGHT_PER_SOURCE) {
        st.pausedByUs = true;
        ctx.pause!();
      } else if (this.pausableBytes >= MAX_IN_FLIGHT_BYTES) this.pauseOverBudget(ctx, st);
    }
    this.pool!.submit(
      { listener: ctx.listener, peer: ctx.peer, ...(ctx.tlsFingerprint !== undefined ? { tlsFingerprint: ctx.tlsFingerprint } : {}), nowMs, idPrefix: this.bootId, firstSeq, data: g.memory, offsets: g.offsets, truncated: g.flags },
      (o) => {
        st.inFlight--;
        if (unpausable) this.unpausableJobs--;
        else this.pausableBytes -= bytes;
        st.inOrder(seq, () => {
          this.applyResult(ctx, o, g, nowMs, pausable, firstSeq);
          // A worker that failed may still be reading it (the pool closing): not reused then.
          if (o.ok) this.jobMemory.release(g.memory);
        });
        // Frames gathered while this job was out go now (in order: after it).
        if (st.gathered > 0 && this.gathering.has(ctx)) this.commit(ctx, true, true);
        this.jobDone(job);
        if (st.pausedByUs && st.inFlight < MAX_IN_FLIGHT_PER_SOURCE / 2 && !this.overBudget.has(ctx)) {
          st.pausedByUs = false;
          ctx.resume?.();
        }
        if (this.overBudget.size > 0 && this.pausableBytes < MAX_IN_FLIGHT_BYTES / 2) this.resumeOverBudget();
      },
    );
  }

  /** Pauses a source for the memory on workers (MAX_IN_FLIGHT_BYTES), to be read again by resumeOverBudget. */
  private pauseOverBudget(ctx: SourceContext, st: SourceState): void {
    if (!st.pausedByUs) {
      st.pausedByUs = true;
      ctx.pause?.();
    }
    this.overBudget.add(ctx);
  }

  /**
   * The sources held for the memory on workers (MAX_IN_FLIGHT_BYTES), in the order they were
   * held: the read each kept gathered goes to the workers while they have room (the others
   * wait for the next return), and the source reads again unless it is over its own limit
   * (then at its next job's return).
   */
  private resumeOverBudget(): void {
    for (const ctx of [...this.overBudget]) {
      if (!this.overBudget.has(ctx)) continue;
      const st = ctx.state;
      if (st !== undefined && st.gathered > 0) {
        if (this.pausableBytes > 0 && this.pausableBytes + st.bytes > MAX_IN_FLIGHT_BYTES) return;
        this.overBudget.delete(ctx);
        this.commit(ctx, true, true);
        // At the budget again with this job: it stays paused.
        if (this.overBudget.has(ctx)) continue;
      } else this.overBudget.delete(ctx);
      if (st === undefined || !st.pausedByUs || st.inFlight >= MAX_IN_FLIGHT_PER_SOURCE / 2) continue;
      st.pausedByUs = false;
      ctx.resume?.();
    }
  }

  private jobDone(job: number): void {
    this.jobs.delete(job);
    if (this.jobWaiters.length === 0) return;
    this.jobWaiters = this.jobWaiters.filter((w) => {
      w.ids.delete(job);
      if (w.ids.size > 0) return true;
      w.resolve();
      return false;
    });
  }

  /** `g` holds the job's frames, for a failure or a redo (views of it do not outlive the call). */
  private applyResult(ctx: SourceContext, o: JobOutcome, g: Gathered, nowMs: number, pausable: boolean, firstSeq: number): void {
    if (this.spill !== null && ctx.state?.spilled === true) {
      // An earlier read of this source was kept for the next start: this one follows it
      // there, decoded or not, so the source's events stay in order.
      this.keepRead(spilledRead(ctx, g, nowMs), ctx, pausable);
      return;
    }
    if (!o.ok) {
      // Stopping: the read is good input we ran out of time for; keep it for the next start.
      if (this.spill !== null) {
        this.keepRead(spilledRead(ctx, g, nowMs), ctx, pausable);
        return;
      }
      // The worker failed: keep the frames as dead letters rather than lose them.
      this.telemetry.decodeWorkerFailed(ctx.listener, g.count, o.error.slice(0, 300));
      const recs: string[] = [];
      for (let i = 0; i < g.count; i++) recs.push(deadLetterRecord(frameOf(g, i), 'worker_failed', o.error.slice(0, 200), ctx.listener, ctx.peer, nowMs, g.flags[i] === 1));
      this.telemetry.deadLettered('worker_failed', recs.length);
      this.deadLetter.enqueueMany(recs, pausable);
      return;
    }
    const r: ResultMessage = o.result;
    if (r.version !== this.workerVersion) {
      // Decoded under a configuration that has changed since (a reload): do it again here.
      this.redoInline(ctx, g, nowMs, pausable);
      return;
    }
    this.applyBlocks(r, pausable);
    this.mergeCounts(ctx.listener, ctx.stats, r.counts, ctx.peer);
    if (r.recent !== undefined && this.recent !== null) {
      try {
        this.recent.block(r.recent, { listener: ctx.listener, receivedMs: nowMs, idPrefix: this.bootId, firstSeq });
      } catch (e) {
        this.telemetry.repeated('error', 'tap_threw', { err: (e as Error).message }, 'the console\'s recent events failed');
      }
    }
  }

  /** A worker's result into the output queues (and the dead-letter one), its KSC findings to their handler. */
  private applyBlocks(r: ResultMessage, pausable: boolean): void {
    const encoderOf = this.opts.routes.encoderOf;
    for (let i = 0; i < this.slots.length; i++) {
      // Output i gets the records of its own encoder, of the events its route passed.
      const b = r.blocks[encoderOf[i]!]!;
      if (b.events === 0) continue;
      const bit = i < 32 ? 1 << i : ALL;
      let count = 0;
      for (let k = 0; k < b.events; k++) if (b.masks[k]! & bit) count++;
      if (count === 0) continue;
      const all = Buffer.from(b.bytes, 0, b.length);
      if (count === b.events) {
        this.slots[i]!.enqueueNdjson(all, count, pausable);
        continue;
      }
      const parts: Buffer[] = [];
      for (let k = 0; k < b.events; k++) {
        if (!(b.masks[k]! & bit)) continue;
        parts.push(all.subarray(k === 0 ? 0 : b.lineEnds[k - 1]!, b.lineEnds[k]!));
      }
      this.slots[i]!.enqueueNdjson(Buffer.concat(parts), count, pausable);
    }
    // The origin the worker made the findings under (the job's listener, peer and TLS client
    // certificate, sent with it): the trust check reads it (ksc/extension.ts).
    if (r.ksc !== undefined) this.deliver(r.origin, r.ksc);
    if (r.findings !== undefined) for (const f of r.findings) this.deliver(f.origin, f.ksc);
    if (r.deadCount > 0) this.deadLetter.enqueueNdjson(Buffer.from(r.dead, 0, r.deadBytes), r.deadCount, pausable);
  }

  private redoInline(ctx: SourceContext, g: Gathered, nowMs: number, pausable: boolean): void {
    const saved = this.takeInline();
    for (let i = 0; i < g.count; i++) this.decodeInline(frameOf(g, i), g.flags[i] === 1, nowMs, ctx);
    this.enqueueInline(this.takeInline(), pausable, ctx.listener, ctx.stats, ctx.peer);
    this.pending = saved.pending;
    this.deadPending = saved.dead;
    this.counts = saved.counts;
  }

  /**
   * From now on, reads whose worker job fails (the pool closing at the end of a stop) go to
   * `sink` (it returns false when it could not keep them: then they are dead-lettered).
   */
  spillFailedReads(sink: ((r: SpilledRead) => boolean) | null): void {
    this.spill = sink;
  }

  /** A read kept at stop; when the spill file cannot take it, decoded here rather than lost. */
  private keepRead(read: SpilledRead, ctx: SourceContext, pausable: boolean): void {
    if (this.spill !== null && this.spill(read)) {
      if (ctx.state !== undefined) ctx.state.spilled = true;
      return;
    }
    this.telemetry.repeated('error', 'spill_failed', { listener: ctx.listener, frames: read.frames.length }, `the shutdown spill file cannot be written; decoding ${read.frames.length} frames on the main thread`);
    const saved = this.takeInline();
    for (let i = 0; i < read.frames.length; i++) this.decodeInline(read.frames[i]!, read.truncated[i] === true, read.receivedMs, ctx);
    this.enqueueInline(this.takeInline(), pausable, ctx.listener, ctx.stats);
    this.pending = saved.pending;
    this.deadPending = saved.dead;
    this.counts = saved.counts;
  }

  /**
   * Decodes a read kept by the last stop (spill.ts) on this thread, as if it had just been
   * read, with its original receive time; its events go to the outputs in the order kept.
   */
  replay(read: SpilledRead, ctx: SourceContext): void {
    const saved = this.takeInline();
    for (let i = 0; i < read.frames.length; i++) this.decodeInline(read.frames[i]!, read.truncated[i] === true, read.receivedMs, ctx);
    this.enqueueInline(this.takeInline(), true, ctx.listener, ctx.stats);
    this.pending = saved.pending;
    this.deadPending = saved.dead;
    this.counts = saved.counts;
  }

  /**
   * Resolves when every read on a worker at the time of the call has been applied (or
   * after `timeoutMs`); reads submitted later do not hold it up.
   */
  drain(timeoutMs = 10_000): Promise<void> {
    this.draining = true;
    try {
      for (const ctx of [...this.gathering]) this.commit(ctx, true, true);
    } finally {
      this.draining = false;
    }
    if (this.jobs.size === 0) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.jobWaiters = this.jobWaiters.filter((w) => w !== waiter);
        resolve();
      }, timeoutMs);
      timer.unref();
      const waiter = {
        ids: new Set(this.jobs),
        resolve: () => {
          clearTimeout(timer);
          resolve();
        },
      };
      this.jobWaiters.push(waiter);
    });
  }
}

/**
 * Frames with their own facts as one job for a worker: their bytes copied into a fresh
 * ArrayBuffer, transferred (the caller keeps the frames, to decode them here if the
 * worker fails), with each frame's offsets, flags, id, receive time and origin.
 */
function packCarried(frames: readonly SubmittedFrame[]): { data: ArrayBuffer; offsets: Int32Array; flags: Uint8Array; carried: CarriedFacts } {
  let bytes = 0;
  for (const f of frames) bytes += f.data.length;
  const data = Buffer.allocUnsafeSlow(bytes);
  const n = frames.length;
  const offsets = new Int32Array(n * 2);
  const flags = new Uint8Array(n);
  const ids = new Array<string>(n);
  const receivedMs = new Float64Array(n);
  const origin = new Uint32Array(n);
  const origins: string[] = [];
  const known = new Map<string, number>();
  let at = 0;
  for (let i = 0; i < n; i++) {
    const f = frames[i]!;
    f.data.copy(data, at);
    offsets[2 * i] = at;
    at += f.data.length;
    offsets[2 * i + 1] = at;
    flags[i] = f.truncated ? 1 : 0;
    ids[i] = f.id;
    receivedMs[i] = f.receivedMs;
    const key = `${f.listener}\n${f.peer}\n${f.tlsFingerprint ?? ''}`;
    let o = known.get(key);
    if (o === undefined) {
      o = known.size;
      known.set(key, o);
      origins.push(f.listener, f.peer, f.tlsFingerprint ?? '');
    }
    origin[i] = o;
  }
  return { data: data.buffer as ArrayBuffer, offsets, flags, carried: { ids, receivedMs, origin, origins } };
}
