/**
 * The decode workers (decode-worker.ts): jobs go round-robin, so the reads of one busy
 * connection are decoded on several threads at once; the pipeline puts the results back
 * in order. A worker that dies is replaced; its jobs come back as failures (the pipeline
 * dead-letters their frames, which it still holds).
 */
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import type { InitMessage, JobMessage, ResultMessage, WorkerReply } from './worker-protocol.js';

export type JobOutcome = { ok: true; result: ResultMessage } | { ok: false; error: string };

/** The compiled worker script (under vitest the sources are .ts: use the build in dist/). */
function workerScript(): string {
  const here = dirname(fileURLToPath(import.meta.url));
  const local = join(here, 'decode-worker.js');
  if (existsSync(local)) return local;
  return join(here, '..', '..', 'dist', 'src', 'pipeline', 'decode-worker.js');
}

interface Slot {
  worker: Worker;
  jobs: Map<number, (o: JobOutcome) => void>;
}

export class WorkerPool {
  private readonly slots: Slot[] = [];
  private next = 0;
  private jobId = 0;
  private inFlightJobs = 0;
  private initMsg: InitMessage | null = null;
  private version = 0;
  private closed = false;

  constructor(
    private readonly size: number,
    private readonly onWorkerError: (error: string) => void,
  ) {}

  get inFlight(): number {
    return this.inFlightJobs;
  }

  /** Version of the configuration the workers run. */
  get configVersion(): number {
    return this.version;
  }

  private spawn(): Slot {
    const worker = new Worker(workerScript());
    const slot: Slot = { worker, jobs: new Map() };
    worker.on('message', (m: WorkerReply) => {
      if (m.kind === 'result' || m.kind === 'job_failed') {
        const cb = slot.jobs.get(m.jobId);
        if (cb === undefined) return;
        slot.jobs.delete(m.jobId);
        this.inFlightJobs--;
        cb(m.kind === 'result' ? { ok: true, result: m } : { ok: false, error: m.error });
      }
    });
    const died = (why: string) => {
      if (this.closed) return;
      this.onWorkerError(why);
      const i = this.slots.indexOf(slot);
      // Its jobs fail (their frames are dead-lettered); a new worker takes its place.
      for (const cb of slot.jobs.values()) {
        this.inFlightJobs--;
        cb({ ok: false, error: why });
      }
      slot.jobs.clear();
      if (i !== -1) {
        const fresh = this.spawn();
        this.slots[i] = fresh;
        if (this.initMsg !== null) fresh.worker.postMessage(this.initMsg);
      }
    };
    worker.on('error', (e) => died(`decode worker failed: ${e.message}`));
    worker.on('exit', (code) => {
      if (code !== 0) died(`decode worker exited with code ${code}`);
    });
    return slot;
  }

  /** Starts the workers (first call) and (re)loads their configuration; rejects when a worker cannot load it. */
  async init(config: Omit<InitMessage, 'kind' | 'version'>): Promise<void> {
    while (this.slots.length < this.size) this.slots.push(this.spawn());
    const msg: InitMessage = { kind: 'init', version: ++this.version, ...config };
    this.initMsg = msg;
    await Promise.all(
      this.slots.map(
        (s) =>
          new Promise<void>((resolve, reject) => {
            const on = (m: WorkerReply) => {
              if ((m.kind === 'ready' || m.kind === 'init_failed') && m.version === msg.version) {
                s.worker.off('message', on);
                if (m.kind === 'ready') resolve();
                else reject(new Error(`decode worker: ${m.error}`));
              }
            };
            s.worker.on('message', on);
            s.worker.postMessage(msg);
          }),
      ),
    );
  }

  /** Sends a job to the next worker; `done` is called once with its outcome. */
  submit(job: Omit<JobMessage, 'kind' | 'jobId'>, done: (o: JobOutcome) => void): void {
    const slot = this.slots[this.next]!;
    this.next = (this.next + 1) % this.slots.length;
    const jobId = ++this.jobId;
    slot.jobs.set(jobId, done);
    this.inFlightJobs++;
    // `data` is transferred, not copied (the pipeline keeps views of the frames, to
    // dead-letter them if the worker fails).
    slot.worker.postMessage({ kind: 'job', jobId, ...job } satisfies JobMessage, [job.data, job.offsets.buffer as ArrayBuffer, job.truncated.buffer as ArrayBuffer]);
  }

  async close(): Promise<void> {
    this.closed = true;
    await Promise.all(this.slots.map((s) => s.worker.terminate()));
    this.slots.length = 0;
  }
}
