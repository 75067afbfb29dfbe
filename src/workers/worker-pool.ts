/**
 * The decode workers (decode-worker.ts): jobs go round-robin, so the reads of one busy
 * connection are decoded on several threads at once; the pipeline puts the results back
 * in order. A worker that dies is replaced and its jobs come back as failures (the
 * pipeline dead-letters their frames, which it still holds). Workers that keep dying
 * (more than 5 in a minute) are given up: the pool reports itself `broken` and the
 * pipeline decodes on its own thread from then on.
 */
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import type { InitMessage, JobMessage, RecentItem, RecentMessage, RecentQuery, ResultMessage, WatchMessage, WorkerReply } from './worker-protocol.js';
import type { KscWatchSpec } from '../ksc/watch.js';

export type JobOutcome = { ok: true; result: ResultMessage } | { ok: false; error: string };

/** The compiled worker script (under vitest the sources are .ts: use the build in dist/). */
function workerScript(): string {
  const here = dirname(fileURLToPath(import.meta.url));
  const local = join(here, 'decode-worker.js');
  if (existsSync(local)) return local;
  return join(here, '..', '..', 'dist', 'src', 'workers', 'decode-worker.js');
}

interface Slot {
  worker: Worker;
  jobs: Map<number, (o: JobOutcome) => void>;
  dead: boolean;
}

const INIT_TIMEOUT_MS = 30_000;
const MAX_DEATHS_PER_MINUTE = 5;

/**
 * Young generation of each decode worker's heap (V8 sizes it as three semi-spaces: 4 MiB
 * each here, against 16 by default). A worker's events die within a job, so a small young
 * generation costs no CPU (its scavenges copy little and it stays in the core's cache) and
 * keeps the daemon's memory down. Measured (node bench/e2e.mjs --n 1000000 --only
 * 1conn-disk, 3 interleaved runs each): peak RSS 223-246 MiB -> 168-192 MiB, 83-91k events
 * per CPU-second either way.
 */
const WORKER_YOUNG_GENERATION_MB = 12;

export class WorkerPool {
  private readonly slots: Slot[] = [];
  private next = 0;
  private jobId = 0;
  private initMsg: InitMessage | null = null;
  private watchMsg: WatchMessage | null = null;
  private recentMsg: RecentMessage | null = null;
  private queryId = 0;
  private readonly queries = new Map<number, (r: { items: RecentItem[]; kept: number } | undefined) => void>();
  private version = 0;
  private closed = false;
  private deaths: number[] = [];
  /** Workers kept dying: do not use the pool any more. */
  broken = false;

  constructor(
    private readonly size: number,
    private readonly onWorkerError: (error: string) => void,
  ) {}

  private failJobs(slot: Slot, why: string): void {
    const cbs = [...slot.jobs.values()];
    slot.jobs.clear();
    for (const cb of cbs) cb({ ok: false, error: why });
  }

  private spawn(): Slot {
    const worker = new Worker(workerScript(), { resourceLimits: { maxYoungGenerationSizeMb: WORKER_YOUNG_GENERATION_MB } });
    const slot: Slot = { worker, jobs: new Map(), dead: false };
    worker.on('message', (m: WorkerReply) => {
      if (m.kind === 'result' || m.kind === 'job_failed') {
        const cb = slot.jobs.get(m.jobId);
        if (cb === undefined) return;
        slot.jobs.delete(m.jobId);
        cb(m.kind === 'result' ? { ok: true, result: m } : { ok: false, error: m.error });
      } else if (m.kind === 'recent_items') {
        this.queries.get(m.reqId)?.({ items: m.items, kept: m.kept });
      }
    });
    const died = (why: string) => {
      if (slot.dead) return;
      slot.dead = true;
      // Its jobs fail: the pipeline dead-letters their frames, even when closing.
      this.failJobs(slot, why);
      if (this.closed) return;
      this.onWorkerError(why);
      const now = Date.now();
      this.deaths = this.deaths.filter((t) => now - t < 60_000);
      this.deaths.push(now);
      if (this.deaths.length > MAX_DEATHS_PER_MINUTE) {
        if (!this.broken) this.onWorkerError(`decode workers keep failing (${this.deaths.length} in a minute): decoding on the main thread from now on`);
        this.broken = true;
        return;
      }
      const i = this.slots.indexOf(slot);
      if (i !== -1) {
        const fresh = this.spawn();
        this.slots[i] = fresh;
        if (this.initMsg !== null) fresh.worker.postMessage(this.initMsg);
        if (this.watchMsg !== null) fresh.worker.postMessage(this.watchMsg);
        if (this.recentMsg !== null) fresh.worker.postMessage(this.recentMsg);
      }
    };
    worker.on('error', (e) => died(`decode worker failed: ${e.message}`));
    // Any exit while the pool is open is a death (a worker never exits on its own).
    worker.on('exit', (code) => died(`decode worker exited with code ${code}`));
    return slot;
  }

  /**
   * Starts the workers (first call) and (re)loads their configuration. Rejects when a
   * worker cannot load it, dies, or does not answer within 30 s; the version then stays
   * the one before.
   */
  async init(config: Omit<InitMessage, 'kind' | 'version'>): Promise<number> {
    while (this.slots.length < this.size) this.slots.push(this.spawn());
    const msg: InitMessage = { kind: 'init', version: this.version + 1, ...config };
    await Promise.all(
      this.slots.map(
        (s) =>
          new Promise<void>((resolve, reject) => {
            const done = (err: Error | null) => {
              clearTimeout(timer);
              s.worker.off('message', on);
              s.worker.off('exit', onExit);
              if (err === null) resolve();
              else reject(err);
            };
            const on = (m: WorkerReply) => {
              if ((m.kind === 'ready' || m.kind === 'init_failed') && m.version === msg.version) {
                done(m.kind === 'ready' ? null : new Error(`decode worker: ${m.error}`));
              }
            };
            const onExit = () => done(new Error('decode worker exited while loading its configuration'));
            const timer = setTimeout(() => done(new Error('decode worker did not load its configuration within 30 s')), INIT_TIMEOUT_MS);
            s.worker.on('message', on);
            s.worker.once('exit', onExit);
            s.worker.postMessage(msg);
            if (this.watchMsg !== null) s.worker.postMessage(this.watchMsg);
            if (this.recentMsg !== null) s.worker.postMessage(this.recentMsg);
          }),
      ),
    );
    this.version = msg.version;
    this.initMsg = msg;
    return msg.version;
  }

  /**
   * The KSC integration's per-event work for the jobs sent from now on (messages to a
   * worker are handled in order, so no job sent after this call runs under the old one).
   */
  setWatch(spec: KscWatchSpec | null): void {
    this.watchMsg = { kind: 'watch', spec };
    for (const s of this.slots) if (!s.dead) s.worker.postMessage(this.watchMsg);
  }

  /** Decode worker threads. */
  get threads(): number {
    return this.size;
  }

  /** The console's recent events on each worker (RecentMessage; `max` 0: none). */
  setRecent(max: number, bytes: number, all: boolean): void {
    this.recentMsg = { kind: 'recent', max, bytes, all };
    for (const s of this.slots) if (!s.dead) s.worker.postMessage(this.recentMsg);
  }

  /**
   * The recent events of every worker that match `q` (each newest first, concatenated), and
   * how many they keep; a worker that does not answer within `timeoutMs` (busy, dying) is
   * left out.
   */
  async queryRecent(q: RecentQuery, timeoutMs = 5_000): Promise<{ items: RecentItem[]; kept: number }> {
    const answers = await Promise.all(
      this.slots
        .filter((s) => !s.dead)
        .map(
          (s) =>
            new Promise<{ items: RecentItem[]; kept: number } | undefined>((resolve) => {
              const reqId = ++this.queryId;
              const done = (r: { items: RecentItem[]; kept: number } | undefined): void => {
                clearTimeout(timer);
                this.queries.delete(reqId);
                resolve(r);
              };
              const timer = setTimeout(() => done(undefined), timeoutMs);
              timer.unref();
              this.queries.set(reqId, done);
              s.worker.postMessage({ kind: 'recent_query', reqId, query: q });
            }),
        ),
    );
    const items: RecentItem[] = [];
    let kept = 0;
    for (const a of answers) {
      if (a === undefined) continue;
      items.push(...a.items);
      kept += a.kept;
    }
    return { items, kept };
  }

  /** Sends a job to the next worker; `done` is called once with its outcome. */
  submit(job: Omit<JobMessage, 'kind' | 'jobId'>, done: (o: JobOutcome) => void): void {
    const slot = this.slots[this.next]!;
    this.next = (this.next + 1) % this.slots.length;
    const jobId = ++this.jobId;
    slot.jobs.set(jobId, done);
    // `data` is shared (the pipeline keeps it, to dead-letter the frames if the worker
    // fails) or transferred, never copied. (Small typed arrays are copied: cheaper than
    // transferring them.)
    slot.worker.postMessage({ kind: 'job', jobId, ...job } satisfies JobMessage, job.data instanceof ArrayBuffer ? [job.data] : []);
  }

  /** Stops the workers; jobs still on them fail (their frames are dead-lettered). */
  async close(): Promise<void> {
    this.closed = true;
    for (const done of [...this.queries.values()]) done(undefined);
    for (const s of this.slots) this.failJobs(s, 'cefd stopped before this read was decoded');
    await Promise.all(this.slots.map((s) => s.worker.terminate()));
    this.slots.length = 0;
  }
}
