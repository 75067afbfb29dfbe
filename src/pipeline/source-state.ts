/**
 * What the pipeline keeps per source (a TCP connection, a UDP listener) while its reads are
 * on the decode workers: the frames of the reads being gathered into the next job, the
 * jobs in flight, and the results waiting for their turn, so each source's events reach
 * the outputs in the order they were read whichever worker finishes first.
 */

/**
 * Reads of one source on workers at once; beyond, the source pauses (and resumes below
 * half). 8 rather than 4: with 4, one busy connection was paused and resumed so often
 * that the 2 decode workers of a 2-core machine waited for jobs: node bench/e2e.mjs --n
 * 1000000 --runs 1 --only 1conn-disk, 3 interleaved rounds: 153-161k events/s with 4,
 * 162-172k with 8, the same events per CPU-second; a job is at most JOB_TARGET_BYTES
 * plus one read in and about 2.5 times that out, so 8 of them hold a few MiB.
 */
export const MAX_IN_FLIGHT_PER_SOURCE = 8;

/**
 * Reads on workers at once of all the sources that cannot be paused (UDP senders)
 * together; beyond, their reads are decoded on the main thread, as past
 * MAX_IN_FLIGHT_PER_SOURCE. Without it a sender rotating its source port (a new source
 * each time) queued worker jobs without bound.
 */
export const MAX_IN_FLIGHT_UNPAUSABLE = 64;

/**
 * While a job of a source is on a worker, its next reads are gathered into one job of
 * up to this many bytes (sent when it is full or when that job comes back): fewer,
 * larger messages between threads, so less time in postMessage and less GC.
 */
export const JOB_TARGET_BYTES = 128 * 1024;

export interface Gathered {
  /** Views into the sockets' chunks. */
  frames: Buffer[];
  truncated: boolean[];
  bytes: number;
}

export class SourceState {
  private frames: Buffer[] = [];
  private truncated: boolean[] = [];
  /** Bytes of the frames gathered. */
  bytes = 0;
  /** Next sequence number to give to a read (or job), and the next one to apply. */
  nextSeq = 0;
  nextCommit = 0;
  private readonly waiting = new Map<number, () => void>();
  inFlight = 0;
  pausedByUs = false;
  /** Stopping: a read of this source was kept for the next start; every later one is kept too (order). */
  spilled = false;

  /** Frames gathered for the next job. */
  get gathered(): number {
    return this.frames.length;
  }

  gather(frame: Buffer, truncated: boolean): void {
    this.frames.push(frame);
    this.truncated.push(truncated);
    this.bytes += frame.length;
  }

  /** The frames gathered so far; the state starts gathering anew. */
  take(): Gathered {
    const g = { frames: this.frames, truncated: this.truncated, bytes: this.bytes };
    this.frames = [];
    this.truncated = [];
    this.bytes = 0;
    return g;
  }

  /** Runs `apply` for read `seq` of this source once every earlier read of it is applied. */
  inOrder(seq: number, apply: () => void): void {
    this.waiting.set(seq, apply);
    while (this.waiting.has(this.nextCommit)) {
      const f = this.waiting.get(this.nextCommit)!;
      this.waiting.delete(this.nextCommit);
      this.nextCommit++;
      f();
    }
  }
}

/**
 * Gathered frames as one job for a worker: their bytes back to back in a fresh
 * ArrayBuffer (transferred, not copied), each frame's start and end, and truncation flags.
 * The frames themselves stay with the caller, to dead-letter them if the worker fails.
 */
export function packJob(g: Gathered): { frames: Buffer[]; data: ArrayBuffer; offsets: Int32Array; flags: Uint8Array } {
  const data = Buffer.allocUnsafeSlow(g.bytes);
  const offsets = new Int32Array(g.frames.length * 2);
  let at = 0;
  for (let i = 0; i < g.frames.length; i++) {
    const f = g.frames[i]!;
    f.copy(data, at);
    offsets[2 * i] = at;
    at += f.length;
    offsets[2 * i + 1] = at;
  }
  const flags = new Uint8Array(g.frames.length);
  for (let i = 0; i < g.truncated.length; i++) flags[i] = g.truncated[i] ? 1 : 0;
  return { frames: g.frames, data: data.buffer as ArrayBuffer, offsets, flags };
}
