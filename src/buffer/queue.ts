/**
 * Per-output event queues. The output runner reads batches from the head (`peek`), and
 * removes them only once the output has delivered them (`ack`), so a batch that must be
 * retried stays at the head. The memory queue is the default; the disk queue (disk-queue.ts)
 * implements the same interface so it can take its place.
 */

import type { Batch } from '../outputs/types.js';

export interface EventQueue {
  /** Records waiting (not yet acknowledged). */
  readonly length: number;
  /**
   * Appends serialized records (one JSON text each). Returns once they are accepted: at
   * once for the memory queue, after the write (and fsync, per policy) for the disk queue.
   */
  append(records: readonly string[]): void;
  /** Appends records already encoded as NDJSON (`count` lines). */
  appendNdjson(ndjson: Buffer, count: number): void;
  /** Up to `max` records from the head, not removed. */
  peek(max: number): string[];
  /** The same, as a batch for an output (NDJSON bytes when the queue has them). */
  peekBatch(max: number): QueueBatch;
  /** Removes the first `n` records (delivered or dead-lettered). */
  ack(n: number): void;
  /**
   * How full the queue is: at 1 the owner pauses the sources (`block`) or drops
   * (`drop_newest`); it resumes at 0.5; 2 is the hard limit for sources that cannot be
   * paused (UDP).
   */
  fill(): number;
  /**
   * Whether an append of about `bytes` would be stored now rather than dropped (the disk
   * buffer's `max_size` with `when_full: drop_newest`); absent: whenever fill() < 1.
   */
  takes?(bytes: number): boolean;
  /**
   * Resolves once every record appended so far survives a crash of cefd (the disk buffer:
   * on disk, see DiskQueue.onDisk); absent for a memory queue.
   */
  onDisk?(): Promise<void>;
  /** True when what is queued survives a restart (the disk buffer). */
  readonly durable: boolean;
  /** Bytes held (the disk buffer's files); undefined for the memory queue. */
  readonly bytes?: number;
  /** Releases files. */
  close(): Promise<void>;
}

/** A batch as the queue hands it to the output runner: an output's Batch and how many records it is. */
export interface QueueBatch extends Batch {
  readonly count: number;
}

export class StringBatch implements QueueBatch {
  constructor(readonly records: readonly string[]) {}
  get count(): number {
    return this.records.length;
  }
}

/**
 * A batch read from the disk buffer: NDJSON bytes in pieces (views into the buffer's
 * blocks); joined, or decoded to strings, only if an output asks.
 */
export class BytesBatch implements QueueBatch {
  private decoded: string[] | null = null;
  private joined: Buffer | null = null;
  constructor(
    readonly count: number,
    readonly ndjsonParts: readonly Buffer[],
  ) {}
  get ndjson(): Buffer {
    this.joined ??= this.ndjsonParts.length === 1 ? this.ndjsonParts[0]! : Buffer.concat(this.ndjsonParts as Buffer[]);
    return this.joined;
  }
  get records(): readonly string[] {
    this.decoded ??= splitNdjson(this.ndjson);
    return this.decoded;
  }
}

/**
 * A FIFO of strings in fixed-size blocks: O(1) append and removal, no array shifting, and
 * memory given back as blocks empty. The bound is enforced by its owner (the output runner).
 */
export class MemoryQueue implements EventQueue {
  private static readonly BLOCK = 1024;

  readonly durable = false;

  constructor(private readonly capacity: number) {}

  fill(): number {
    return this.count / this.capacity;
  }

  private blocks: string[][] = [];
  private head = 0; // index in blocks[0]
  private count = 0;

  get length(): number {
    return this.count;
  }

  append(records: readonly string[]): void {
    for (let i = 0; i < records.length; i++) this.push(records[i]!);
  }

  /** Memory holds strings: the lines are decoded (the memory queue is for small setups). */
  appendNdjson(ndjson: Buffer, count: number): void {
    if (count > 0) this.append(splitNdjson(ndjson));
  }

  push(record: string): void {
    let last = this.blocks[this.blocks.length - 1];
    if (last === undefined || last.length === MemoryQueue.BLOCK) {
      last = [];
      this.blocks.push(last);
    }
    last.push(record);
    this.count++;
  }

  peek(max: number): string[] {
    const out: string[] = [];
    let b = 0;
    let i = this.head;
    while (out.length < max && b < this.blocks.length) {
      const block = this.blocks[b]!;
      if (i >= block.length) {
        b++;
        i = 0;
        continue;
      }
      const take = Math.min(max - out.length, block.length - i);
      for (let k = 0; k < take; k++) out.push(block[i + k]!);
      i += take;
    }
    return out;
  }

  peekBatch(max: number): QueueBatch {
    return new StringBatch(this.peek(max));
  }

  ack(n: number): void {
    let left = Math.min(n, this.count);
    this.count -= left;
    while (left > 0) {
      const block = this.blocks[0]!;
      const avail = block.length - this.head;
      if (left < avail) {
        // Drop references early so memory can be collected.
        for (let k = 0; k < left; k++) block[this.head + k] = '';
        this.head += left;
        left = 0;
      } else {
        left -= avail;
        this.blocks.shift();
        this.head = 0;
      }
    }
    if (this.count === 0) {
      this.blocks = [];
      this.head = 0;
    }
  }

  async close(): Promise<void> {}
}

/** The records of an NDJSON buffer, as strings. */
export function splitNdjson(buf: Buffer): string[] {
  const out: string[] = [];
  let at = 0;
  for (let lf = buf.indexOf(0x0a); lf !== -1; lf = buf.indexOf(0x0a, at)) {
    out.push(buf.toString('utf8', at, lf));
    at = lf + 1;
  }
  return out;
}
