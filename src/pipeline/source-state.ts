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
 * Bytes of job memory on workers at once for all the sources that can be paused (TCP and
 * TLS connections) together; a read that would pass it waits, gathered, with its source
 * paused, until they are below half (Pipeline.commit, resumeOverBudget). Without it the memory on workers, and the results
 * that land in the output queues past their `max_size` when they come back, grew with the
 * number of connections (MAX_IN_FLIGHT_PER_SOURCE each): 1000 busy connections resumed at
 * once after an output outage took over 1 GB (397 MB of queue against a 2 MiB max_size).
 * One busy connection (8 jobs of at most 256 KiB) stays well below it.
 */
export const MAX_IN_FLIGHT_BYTES = 16 * 1024 * 1024;

/**
 * While a job of a source is on a worker, its next reads are gathered into one job of
 * up to this many bytes (sent when it is full or when that job comes back): fewer,
 * larger messages between threads, so less time in postMessage and less GC.
 */
export const JOB_TARGET_BYTES = 128 * 1024;

/**
 * Memory for the frames of worker jobs: SharedArrayBuffers the main thread writes a
 * source's frames into as they are read and a worker reads them from (shared, neither
 * copied nor transferred), handed back for the next job once the job's result has been
 * applied. The main thread keeps no object per frame while its job is out: it kept a view
 * per frame for as long as the job, which outlived its young generation and held the
 * sockets' chunks (its scavenges took 200-220 ms per million events, 56-68 ms now:
 * bench/e2e.mjs with --trace-gc). Sizes are powers of two from MIN_BYTES, so a light
 * source's job takes little memory and a busy source's jobs start at the size of its last.
 */
export class JobMemory {
  /** Smallest buffer: a light source's job (a few frames) takes no more. */
  static readonly MIN_BYTES = 4 * 1024;
  /** Largest buffer kept for reuse: a job is at most JOB_TARGET_BYTES plus one read (up to 64 KiB). */
  static readonly MAX_KEPT_BYTES = 256 * 1024;

  /** Buffers waiting for reuse, by size (powers of two). */
  private readonly free = new Map<number, SharedArrayBuffer[]>();
  private keptTotal = 0;

  /** `keepBytes`: most bytes kept for reuse (a busy source has up to MAX_IN_FLIGHT_PER_SOURCE jobs out). */
  constructor(private readonly keepBytes = 8 * 1024 * 1024) {}

  /** The size of the buffer get(bytes) gives: the power of two at or above `bytes`, at least MIN_BYTES. */
  static sizeFor(bytes: number): number {
    let size = JobMemory.MIN_BYTES;
    while (size < bytes) size *= 2;
    return size;
  }

  /** A buffer of at least `bytes` (a kept one when there is one of that size). */
  get(bytes: number): SharedArrayBuffer {
    const size = JobMemory.sizeFor(bytes);
    const buf = this.free.get(size)?.pop();
    if (buf === undefined) return new SharedArrayBuffer(size);
    this.keptTotal -= size;
    return buf;
  }

  /**
   * `buf` is not read any more (its job's result applied, or it was never sent): reuse it.
   * When the kept bytes are at their bound, smaller kept buffers make room for it (a busy
   * source's large ones are the ones worth keeping), else it is not kept.
   */
  release(buf: SharedArrayBuffer): void {
    const size = buf.byteLength;
    if (size !== JobMemory.sizeFor(size) || size > JobMemory.MAX_KEPT_BYTES || size > this.keepBytes) return;
    for (let small = JobMemory.MIN_BYTES; this.keptTotal + size > this.keepBytes && small < size; small *= 2) {
      const smaller = this.free.get(small);
      while (smaller !== undefined && smaller.length > 0 && this.keptTotal + size > this.keepBytes) {
        smaller.pop();
        this.keptTotal -= small;
      }
    }
    if (this.keptTotal + size > this.keepBytes) return;
    let list = this.free.get(size);
    if (list === undefined) this.free.set(size, (list = []));
    list.push(buf);
    this.keptTotal += size;
  }

  /** Bytes kept for reuse. */
  get keptBytes(): number {
    return this.keptTotal;
  }
}

const NO_OFFSETS = new Int32Array(0);
const NO_FLAGS = new Uint8Array(0);
/** An empty job's memory (never kept: JobMemory.release refuses a size it does not give). */
const NO_BYTES = Buffer.from(new SharedArrayBuffer(0));

/** Memory of sources that were given none (tests): nothing is kept for reuse. */
const NOT_KEPT = new JobMemory(0);

/** A source's gathered frames: their bytes back to back, each frame's start and end, truncation flags. */
export interface Gathered {
  /** The memory the bytes are in (JobMemory): the job's `data`. */
  memory: SharedArrayBuffer;
  /** The frames' bytes (a view of `memory`). */
  bytes: Buffer;
  /** Start and end of each frame in `bytes`. */
  offsets: Int32Array;
  /** 1 where the frame was truncated. */
  flags: Uint8Array;
  count: number;
}

/** Frame `i` of `g` (a view: copy it to keep it past the release of `g.memory`). */
export function frameOf(g: Gathered, i: number): Buffer {
  return g.bytes.subarray(g.offsets[2 * i]!, g.offsets[2 * i + 1]!);
}

/** Copies of the frames of `g`, which outlive its memory (a read kept at stop). */
export function copyFrames(g: Gathered): Buffer[] {
  const out: Buffer[] = [];
  for (let i = 0; i < g.count; i++) out.push(Buffer.from(frameOf(g, i)));
  return out;
}

/** The truncation flags of `g` as booleans. */
export function truncatedOf(g: Gathered): boolean[] {
  return Array.from(g.flags, (f) => f === 1);
}

export class SourceState {
  private buf: Buffer | null = null;
  /** The job's tables, made at its first frame (nothing is kept between jobs: a source may idle for days). */
  private offsets = NO_OFFSETS;
  private flags = NO_FLAGS;
  private count = 0;
  /** Frames of the last job: the next one's tables start that large. */
  private lastCount = 0;
  /** Bytes of the frames gathered. */
  bytes = 0;
  /** Bytes of the last job: the next one's memory starts that large (a busy source's jobs are not grown frame by frame). */
  private lastBytes = 0;
  /** Next sequence number to give to a read (or job), and the next one to apply. */
  nextSeq = 0;
  nextCommit = 0;
  private readonly waiting = new Map<number, () => void>();
  inFlight = 0;
  pausedByUs = false;
  /** Stopping: a read of this source was kept for the next start; every later one is kept too (order). */
  spilled = false;

  constructor(private readonly memory: JobMemory = NOT_KEPT) {}

  /** Frames gathered for the next job. */
  get gathered(): number {
    return this.count;
  }

  /** Copies `frame` (a view into a socket's chunk, which may be reused) into the next job. */
  gather(frame: Buffer, truncated: boolean): void {
    const len = frame.length;
    let buf = this.buf;
    if (buf === null || this.bytes + len > buf.length) buf = this.grow(len);
    frame.copy(buf, this.bytes);
    const n = this.count;
    if (2 * n + 2 > this.offsets.length) {
      const offsets = new Int32Array(this.offsets.length === 0 ? 2 * Math.max(16, this.lastCount) : this.offsets.length * 2);
      offsets.set(this.offsets);
      this.offsets = offsets;
      const flags = new Uint8Array(offsets.length >> 1);
      flags.set(this.flags);
      this.flags = flags;
    }
    this.offsets[2 * n] = this.bytes;
    this.bytes += len;
    this.offsets[2 * n + 1] = this.bytes;
    this.flags[n] = truncated ? 1 : 0;
    this.count = n + 1;
  }

  private grow(len: number): Buffer {
    const old = this.buf;
    const need = this.bytes + len;
    const mem = this.memory.get(old === null ? Math.max(need, Math.min(this.lastBytes, JobMemory.MAX_KEPT_BYTES)) : Math.max(need, old.length * 2));
    const buf = Buffer.from(mem);
    if (old !== null) {
      old.copy(buf, 0, 0, this.bytes);
      // Never shared: nothing reads it.
      this.memory.release(old.buffer as SharedArrayBuffer);
    }
    this.buf = buf;
    return buf;
  }

  /** The frames gathered so far (offsets and flags exact-sized: they are copied to the worker); the state starts gathering anew. */
  take(): Gathered {
    const buf = this.buf ?? NO_BYTES;
    const n = this.count;
    const g: Gathered = {
      memory: buf.buffer as SharedArrayBuffer,
      bytes: buf.subarray(0, this.bytes),
      // Exact-sized (a view would send its whole buffer to the worker).
      offsets: this.offsets.length === 2 * n ? this.offsets : this.offsets.slice(0, 2 * n),
      flags: this.flags.length === n ? this.flags : this.flags.slice(0, n),
      count: n,
    };
    this.buf = null;
    this.offsets = NO_OFFSETS;
    this.flags = NO_FLAGS;
    this.lastCount = n;
    this.lastBytes = this.bytes;
    this.count = 0;
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
