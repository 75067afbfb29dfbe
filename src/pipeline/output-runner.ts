/**
 * The output runner: feeds one output from its bounded queue, one batch at a time, and
 * owns what outputs do not (STYLE lesson 6): counting, capped exponential backoff with
 * jitter on `retry`, dead-lettering `rejected` records, and per-record results
 * (`partial`: rejected records dead-lettered with their reason, the ones to retry sent
 * again alone after a backoff, the rest counted as sent). The queue's delivery position
 * moves past a batch only when every record of it is settled, so a crash in between sends
 * the whole batch again: delivery is at least once. When the queue reaches its capacity
 * with `when_full: block`, the runner blocks the flow control (flow-control.ts), which
 * pauses every socket until the queue drains below half.
 */
import type { EncodingConfig } from '../codecs/encoders/encoder.js';
import type { Batch, Output, PartialResult, SendResult } from '../outputs/types.js';
import { errorText } from '../outputs/shared/encode.js';
import type { OutputStats, Telemetry } from '../telemetry/telemetry.js';
import type { EventQueue, QueueBatch } from '../buffer/queue.js';
import type { FlowControl } from './flow-control.js';

export interface RunnerOptions {
  name: string;
  capacity: number;
  whenFull: 'block' | 'drop_newest';
  batchMax: number;
  initialBackoffMs: number;
  maxBackoffMs: number;
  /** The output's `encoding` section (which encoder makes its records); default native. */
  encoding?: EncodingConfig;
  /** Most time a hand-over, and a stop's close of the output, wait for it (default CLOSE_WAIT_MS). */
  closeWaitMs?: number;
}

/** Where rejected batches go: builds dead-letter records. `codec`: the encoding of `records` (registry.ts). */
export type RejectSink = (output: string, records: readonly string[], reason: string, error: string, codec: string) => void;

export class OutputRunner {
  readonly name: string;
  readonly stats: OutputStats;
  private wake: (() => void) | null = null;
  private stopping = false;
  private loop: Promise<void> | null = null;
  private idleWaiters: (() => void)[] = [];
  private sleepTimer: NodeJS.Timeout | null = null;
  private sleepResolve: (() => void) | null = null;
  private blocked = false;
  /** Aborts the send in flight (the shutdown deadline). */
  private inFlight: AbortController | null = null;
  /**
   * The delivery loop's generation: stop() or handOver() moves it on when they stop
   * waiting for the loop (an output whose send or start ignores close() and its abort
   * signal). The queue may belong to another runner then, or to this one's next loop
   * (resume() after a failed reload), so the old loop, whenever that call comes back,
   * returns without touching it. The batch it had in flight was never acknowledged:
   * whoever owns the queue sends it again.
   */
  private generation = 0;
  /** This runner's key in the flow control (unique: a reload can run two runners of one name). */
  private readonly flowKey: string;
  private static instances = 0;

  constructor(
    readonly opts: RunnerOptions,
    public output: Output,
    readonly queue: EventQueue,
    private readonly flow: FlowControl,
    private readonly telemetry: Telemetry,
    private readonly onReject: RejectSink | null,
  ) {
    this.name = opts.name;
    this.flowKey = `output ${opts.name} #${++OutputRunner.instances}`;
    this.stats = telemetry.output(opts.name);
    this.stats.capacity = opts.capacity;
    this.stats.queued = queue.length;
    this.stats.queue = queue;
  }

  /**
   * Queue the records of one socket read. Never blocks; may pause the sources.
   *
   * With `block`, records from a pausable source (TCP, TLS) are always taken: the sources
   * pause as soon as the queue is full, so it overshoots by at most the reads in flight
   * then (the one being handled and up to 8 jobs per connection on the decode workers,
   * each up to JOB_TARGET_BYTES of input plus one read: src/pipeline/source-state.ts). A
   * source that cannot be paused (UDP) is held to the queue's hard
   * limit (twice its capacity), beyond which records are dropped and counted. With
   * `drop_newest`, a read that finds the queue full is dropped and counted.
   */
  enqueueMany(records: string[], pausable = true): void {
    if (records.length === 0 || !this.admits(records.length, pausable)) return;
    this.queue.append(records);
    this.afterAppend();
  }

  /** The same for records already encoded as NDJSON (`count` lines), from a decode worker. */
  enqueueNdjson(ndjson: Buffer, count: number, pausable = true): void {
    if (count === 0 || !this.admits(count, pausable)) return;
    this.queue.appendNdjson(ndjson, count);
    this.afterAppend();
  }

  /**
   * True when records (about `bytes` of them) from a pausable source would be refused now
   * (a full `drop_newest` queue, or a disk buffer without room for them): a source that
   * acknowledges upstream checks this before handing records over.
   */
  refusesNow(bytes = 0): boolean {
    return this.opts.whenFull === 'drop_newest' && (this.queue.fill() >= 1 || this.queue.takes?.(bytes) === false);
  }

  /** Whether `count` more records are taken (see enqueueMany); those refused are counted. */
  private admits(count: number, pausable: boolean): boolean {
    const fill = this.queue.fill();
    if (fill >= 1 && this.opts.whenFull === 'drop_newest') {
      this.telemetry.eventsDropped(this.name, count, 'queue_full');
      return false;
    }
    if (fill >= 2 && !pausable) {
      this.telemetry.eventsDropped(this.name, count, 'queue_hard_limit');
      return false;
    }
    return true;
  }

  private afterAppend(): void {
    this.stats.queued = this.queue.length;
    if (!this.blocked && this.opts.whenFull === 'block' && this.queue.fill() >= 1) {
      this.blocked = true;
      this.flow.block(this.flowKey, `queue of output ${this.name} is full`);
    }
    if (this.wake !== null) {
      const w = this.wake;
      this.wake = null;
      w();
    }
  }

  /** Re-checks the pause state (the disk buffer's writes work again). */
  recheck(): void {
    this.afterDequeue();
  }

  /** Starts the output and the delivery loop. */
  async start(): Promise<void> {
    await this.output.start();
    this.startLoop();
  }

  /**
   * After handOver(): runs again, with `output` (a reload that failed gives the disk buffer
   * back to its runner). The loop runs even when the output does not start: the events wait
   * in the buffer, and before each try to send them the loop starts the output again (a
   * TLS file put back, a folder made writable), with the start error as the retry's error
   * until it starts. Rejects with the start error.
   */
  async resume(output: Output): Promise<void> {
    this.output = output;
    this.stopping = false;
    this.giveUp = false;
    this.stats.capacity = this.opts.capacity;
    this.stats.queue = this.queue;
    this.startError = null;
    try {
      await output.start();
    } catch (e) {
      this.startError = errorText(e);
      this.startFailedAt = Date.now();
      throw e;
    } finally {
      this.startLoop();
    }
  }

  /** Why the output did not start in resume(), until a later start() succeeds. */
  private startError: string | null = null;
  /** When resume()'s start failed (0 once the loop has tried after it: never "just" then). */
  private startFailedAt = 0;

  /** Starts the output again after resume() could not; false (with startError) while it still cannot. */
  private async startAgain(gen: number): Promise<boolean> {
    const output = this.output;
    try {
      await output.start();
      if (this.giveUp || gen !== this.generation) {
        // Stopped or handed over while it started: the output was closed already; close
        // what this start opened (a file, timers, sockets).
        await output.close().catch(() => undefined);
        return false;
      }
      this.startError = null;
      return true;
    } catch (e) {
      if (gen === this.generation) this.startError = errorText(e);
      return false;
    }
  }

  private startLoop(): void {
    // Full already (records the last stop spilled wait): the sources pause before any of
    // them reads, rather than after the first reads were taken on top of the spill.
    if (this.opts.whenFull === 'block' && this.queue.fill() >= 1 && !this.blocked) {
      this.blocked = true;
      this.flow.block(this.flowKey, `queue of output ${this.name} is full`);
    }
    // A new loop is the only one that may act: any earlier one (let go) is stale from now.
    this.loop = this.run(++this.generation);
  }

  private async run(gen: number): Promise<void> {
    let backoff = 0;
    /**
     * A batch partly settled by a `partial` result: the records still to send (alone), and
     * the batch's size in the queue, acknowledged once every record is settled.
     */
    let rest: { count: number; records: readonly string[] } | null = null;
    for (;;) {
      if (this.giveUp) return;
      if (rest === null && this.queue.length === 0) {
        for (const w of this.idleWaiters.splice(0)) w();
        if (this.stopping) return;
        await new Promise<void>((r) => (this.wake = r));
        continue;
      }
      let error: string;
      let retryAfterMs: number | undefined;
      let n = 0;
      try {
        const fromQueue: QueueBatch | null = rest === null ? this.queue.peekBatch(this.opts.batchMax) : null;
        const batch: Batch = fromQueue ?? { records: rest!.records };
        const total: number = fromQueue?.count ?? rest!.count;
        n = fromQueue?.count ?? rest!.records.length;
        let res: SendResult | undefined;
        if (this.startError !== null) {
          // Right after resume()'s failed start (within a backoff), the first try reports
          // that error rather than starting the output again at once; later tries start it first.
          const justFailed = Date.now() - this.startFailedAt < this.opts.initialBackoffMs;
          this.startFailedAt = 0;
          if (justFailed || !(await this.startAgain(gen))) res = { status: 'retry', error: `the output is not started: ${this.startError}` };
          if (gen !== this.generation) return;
        }
        if (res === undefined) {
          const ac = new AbortController();
          this.inFlight = ac;
          res = await this.output.send(batch, ac.signal).finally(() => {
            if (this.inFlight === ac) this.inFlight = null;
          });
          // Let go of while the batch was in flight: not acknowledged here (see generation).
          if (gen !== this.generation) return;
        }
        if (res.problem !== undefined && res.problem.events > 0) this.telemetry.outputAbandoned(this.name, res.problem.events, res.problem.reason, res.problem.error);
        if (res.status === 'delivered' || res.status === 'rejected') {
          if (res.status === 'delivered') this.stats.sent += n;
          else this.reject(batch.records, res.reason, res.error);
          rest = null;
          backoff = this.settled(total, backoff);
          continue;
        }
        error = res.error;
        retryAfterMs = res.retryAfterMs;
        if (res.status === 'partial') {
          const retry = this.partial(batch.records, res);
          if (retry.length === 0) {
            rest = null;
            backoff = this.settled(total, backoff);
            continue;
          }
          rest = { count: total, records: retry };
          n = retry.length;
        }
      } catch (e) {
        // Let go of while its call was out (see generation): the error is not this runner's any more.
        if (gen !== this.generation) return;
        // A queue that cannot be read (a disk error) or an output that broke its promise
        // never to throw: log, back off, try again; never take the process down.
        error = `internal error: ${(e as Error).message}`;
        this.telemetry.repeated('error', `runner_internal:${this.name}`, { output: this.name, err: (e as Error).stack }, `output ${this.name}: ${error}`);
      }
      // Stopped or handed over while the batch was in flight (close() made it fail): its
      // records stay in the queue for the next runner; sleeping a backoff first would hold
      // up the reload or the shutdown for up to max_backoff.
      if (this.giveUp || gen !== this.generation) return;
      // Capped exponential backoff with full jitter; Retry-After wins when longer, beyond
      // max_backoff: the output already capped it at max_retry_after (http-transport.ts).
      backoff = backoff === 0 ? this.opts.initialBackoffMs : Math.min(this.opts.maxBackoffMs, backoff * 2);
      let wait = backoff / 2 + (Math.random() * backoff) / 2;
      if (retryAfterMs !== undefined) wait = Math.max(wait, retryAfterMs);
      this.telemetry.outputRetrying(this.name, n, error, wait);
      await this.sleep(wait);
      if (gen !== this.generation) return;
      this.afterDequeue();
    }
  }

  /** Every record of the queue's head batch (`count`) is settled: move past it. Returns the reset backoff. */
  private settled(count: number, backoff: number): number {
    this.queue.ack(count);
    if (backoff !== 0) this.telemetry.outputRecovered(this.name);
    this.afterDequeue();
    return 0;
  }

  /** Counts and dead-letters rejected records (one call per reason and error). */
  private reject(records: readonly string[], reason: string, error: string): void {
    this.telemetry.outputRejected(this.name, records.length, reason, error);
    if (this.onReject !== null) this.onReject(this.name, records, reason, error, this.opts.encoding?.codec ?? 'native');
  }

  /**
   * Applies a per-record result: rejected records are dead-lettered, the others not
   * listed are counted as sent. Returns the records to send again. An index out of range
   * is ignored; one listed both ways is rejected (an output bug must not loop forever).
   */
  private partial(records: readonly string[], res: PartialResult): string[] {
    const rejected = new Map<number, { reason: string; error: string }>();
    for (const r of res.rejected ?? []) if (Number.isInteger(r.index) && r.index >= 0 && r.index < records.length) rejected.set(r.index, r);
    const retry = new Set<number>();
    for (const i of res.retry ?? []) if (Number.isInteger(i) && i >= 0 && i < records.length && !rejected.has(i)) retry.add(i);
    this.stats.sent += records.length - rejected.size - retry.size;
    const groups = new Map<string, { reason: string; error: string; records: string[] }>();
    for (const [i, r] of [...rejected].sort((a, b) => a[0] - b[0])) {
      const k = `${r.reason}\0${r.error}`;
      let g = groups.get(k);
      if (g === undefined) groups.set(k, (g = { reason: r.reason, error: r.error, records: [] }));
      g.records.push(records[i]!);
    }
    for (const g of groups.values()) this.reject(g.records, g.reason, g.error);
    return [...retry].sort((a, b) => a - b).map((i) => records[i]!);
  }

  /** Set by stop(): a failing output stops retrying at shutdown. */
  private giveUp = false;

  private sleep(ms: number): Promise<void> {
    if (this.giveUp) return Promise.resolve();
    return new Promise((r) => {
      this.sleepResolve = r;
      this.sleepTimer = setTimeout(() => {
        this.sleepTimer = null;
        this.sleepResolve = null;
        r();
      }, ms);
      this.sleepTimer.unref?.();
    });
  }

  /** Ends a backoff sleep at once (stop's deadline, a hand-over). */
  private endSleep(): void {
    if (this.sleepTimer === null) return;
    clearTimeout(this.sleepTimer);
    this.sleepTimer = null;
    const r = this.sleepResolve;
    this.sleepResolve = null;
    r?.();
  }

  private afterDequeue(): void {
    this.stats.queued = this.queue.length;
    if (this.blocked && this.queue.fill() <= 0.5) {
      this.blocked = false;
      this.flow.unblock(this.flowKey);
    }
  }

  /** Resolves when the queue is empty (everything delivered or dead-lettered). */
  drained(): Promise<void> {
    if (this.queue.length === 0) return Promise.resolve();
    return new Promise((r) => this.idleWaiters.push(r));
  }

  /**
   * Stops the runner: waits up to `timeoutMs` for the queue to drain, then closes the
   * output (and the queue, unless `keepQueue`: a reload hands a disk buffer on to the
   * output's next runner). Returns how many records were left undelivered.
   */
  async stop(timeoutMs: number, keepQueue = false): Promise<number> {
    this.stopping = true;
    if (this.wake !== null) {
      const w = this.wake;
      this.wake = null;
      w();
    }
    // How long the loop may take to come back once its request is aborted (not cut below).
    const loopWaitMs = Math.min(timeoutMs, 500);
    // A failing output with a disk buffer: its events wait on disk for the next start.
    if (this.queue.durable && this.stats.retrying === 1) timeoutMs = Math.min(timeoutMs, 100);
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<'timeout'>((r) => (timer = setTimeout(() => r('timeout'), timeoutMs)));
    const done = await Promise.race([this.drained().then(() => 'drained' as const), timeout]);
    clearTimeout(timer);
    if (done === 'timeout') {
      this.giveUp = true;
      // The deadline: a request in flight is aborted, not waited for; its batch stays in
      // the queue (a disk buffer keeps it for the next start).
      this.inFlight?.abort();
      this.endSleep();
    }
    // The runner exits once the queue is empty, or once the aborted batch comes back (an
    // output that ignores the signal is not waited for beyond a moment).
    if (!(await this.loopEnded(loopWaitMs))) this.letGo('stop');
    const left = this.queue.length;
    if (this.blocked) {
      this.blocked = false;
      this.flow.unblock(this.flowKey);
    }
    await this.closeWithin(this.opts.closeWaitMs ?? CLOSE_WAIT_MS, 'stop');
    if (!keepQueue) await this.queue.close();
    return left;
  }

  /**
   * A reload gives this output's disk buffer to a new runner: stop at once without closing
   * the queue. The output is closed first (an HTTP request in flight is aborted), so the
   * batch in flight goes back to the queue un-acknowledged and the next runner sends it.
   */
  async handOver(waitMs = this.opts.closeWaitMs ?? CLOSE_WAIT_MS): Promise<void> {
    this.stopping = true;
    this.giveUp = true;
    if (this.wake !== null) {
      const w = this.wake;
      this.wake = null;
      w();
    }
    this.endSleep();
    if (this.blocked) {
      this.blocked = false;
      this.flow.unblock(this.flowKey);
    }
    const t0 = Date.now();
    await this.closeWithin(waitMs, 'reload');
    if (!(await this.loopEnded(Math.max(0, waitMs - (Date.now() - t0))))) this.letGo('reload');
  }

  /**
   * Closes the output, waiting at most `ms`: a close() that fails or does not finish is
   * logged, not thrown (a stop or a reload goes on; the next runner, or the next start,
   * opens the output anew).
   */
  private async closeWithin(ms: number, at: 'stop' | 'reload'): Promise<void> {
    let failed: string | undefined;
    const closing = this.closeOutput().catch((e: unknown) => {
      failed = errorText(e);
    });
    const next = at === 'stop' ? 'cefd stops anyway' : 'the new output starts anyway';
    if (!(await within(closing, ms))) {
      this.telemetry.repeated('error', `output_close:${this.name}`, { output: this.name, wait_ms: ms }, `output ${this.name}: its close() did not finish within ${ms} ms at a ${at}; ${next} (a file or connection of the old one may still be open)`);
    } else if (failed !== undefined) {
      this.telemetry.repeated('error', `output_close:${this.name}`, { output: this.name, err: failed }, `output ${this.name}: its close() failed at a ${at}: ${failed}; ${next}`);
    }
  }

  /** True when the delivery loop ended within `ms` (or was not running). */
  private loopEnded(ms: number): Promise<boolean> {
    return within(this.loop ?? Promise.resolve(), ms);
  }

  /** The loop did not end in time: it is let go (see `generation`), and this is logged. */
  private letGo(at: 'stop' | 'reload'): void {
    this.generation++;
    this.telemetry.repeated(
      'warn',
      `handover_loop:${this.name}`,
      { output: this.name },
      `output ${this.name}: a send or start of the output did not end when it was closed at a ${at}; cefd no longer waits for it, and its batch stays in the buffer unacknowledged, to be sent again (it may arrive twice if the old send completes)`,
    );
  }

  /** Closes the output; records it had to let go unconfirmed are counted and logged. */
  private async closeOutput(): Promise<void> {
    const report = await this.output.close();
    const a = report?.abandoned;
    if (a !== null && a !== undefined && a.events > 0) this.telemetry.outputAbandoned(this.name, a.events, a.reason, a.error);
  }

  async reopen(): Promise<void> {
    await this.output.reopen?.();
  }
}

/**
 * Most time a reload waits for an output being handed over to close and its delivery
 * loop to end (both end at once for outputs that honour close() and the abort signal),
 * and a stop for the output's close(). Above the syslog output's own bound on its close
 * (min(write_timeout, 5 s), src/outputs/syslog/), so that one is never cut short.
 */
export const CLOSE_WAIT_MS = 10_000;

/** True when `p` fulfils within `ms`, false when it has not by then; rejects when `p` rejects in time. */
async function within(p: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<false>((r) => (timer = setTimeout(() => r(false), ms)));
  try {
    const done = p.then(() => true);
    // A rejection after the time is up has no one waiting: it must not go unhandled.
    done.catch(() => undefined);
    return await Promise.race([done, late]);
  } finally {
    clearTimeout(timer);
  }
}
