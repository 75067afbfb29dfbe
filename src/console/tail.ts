/**
 * The console's recent events and live tail. While the console is on, the pipeline hands
 * this hub (Pipeline.setRecent) the events of every read: from a decode worker as one block
 * of native JSON lines and frames, the last `max` of each read (src/workers/recent.ts),
 * or, for events decoded on the main thread, one by one. The hub keeps the last `max`
 * events, and at most `maxBytes`, in a ring for the Events page's search and detail view;
 * nothing is turned into a string or parsed until someone searches or tails.
 *
 * While a tail client is connected the workers send every event, not just the last `max`
 * of a read; the hub parses each one for the clients' filters. Events stay on the workers
 * either way.
 */
import type { CefdEvent } from '../event.js';
import { compileFilter, type Filter } from '../filter/filter.js';
import { eventId } from '../pipeline/ingest.js';
import type { RecentBlockInfo, RecentSink } from '../pipeline/pipeline.js';
import type { RecentBlock } from '../workers/worker-protocol.js';
import { RECENT_RAW_MAX } from '../workers/recent.js';

export interface TailEntry {
  id: string;
  /** Arrival (ms). */
  ms: number;
  listener: string;
  /** The event as native JSON. */
  json: string;
  /** The frame as text (cut at 64 KiB); empty for an event read from a SQL row. */
  raw: string;
}

export interface TailClient {
  filter: Filter | undefined;
  send(e: TailEntry, event: object): void;
}

/** How the hub starts, changes and stops what the pipeline sends (Pipeline.setRecent). */
export type RecentAttach = (sink: RecentSink | null, perRead: number) => void;

/** A worker's block, or one event decoded on the main thread. */
type Chunk =
  | { kind: 'block'; ms: number; listener: string; idPrefix: string; firstSeq: number; buf: Buffer; ends: Int32Array; frames: Int32Array; count: number; bytes: number }
  | { kind: 'one'; ms: number; listener: string; id: string; event: CefdEvent | undefined; json: string | undefined; raw: Buffer; count: 1; bytes: number };

/** A first-in first-out ring of chunks that grows by doubling (evicting from the front is O(1)). */
class Deque<T> {
  private items: (T | undefined)[] = new Array<T | undefined>(16);
  private head = 0;
  size = 0;

  push(x: T): void {
    if (this.size === this.items.length) {
      const bigger = new Array<T | undefined>(this.items.length * 2);
      for (let i = 0; i < this.size; i++) bigger[i] = this.items[(this.head + i) % this.items.length];
      this.items = bigger;
      this.head = 0;
    }
    this.items[(this.head + this.size) % this.items.length] = x;
    this.size++;
  }

  shift(): T | undefined {
    if (this.size === 0) return undefined;
    const x = this.items[this.head];
    this.items[this.head] = undefined;
    this.head = (this.head + 1) % this.items.length;
    this.size--;
    return x;
  }

  /** i-th from the front. */
  at(i: number): T {
    return this.items[(this.head + i) % this.items.length]!;
  }

  clear(): void {
    this.items = new Array<T | undefined>(16);
    this.head = 0;
    this.size = 0;
  }
}

export class TailHub {
  private readonly chunks = new Deque<Chunk>();
  private events = 0;
  private bytes = 0;
  private readonly clients = new Set<TailClient>();
  private attached = false;

  constructor(
    private readonly max: number,
    private readonly maxBytes: number,
    private readonly attach: RecentAttach,
    /** The native encoding (with the configuration's `event` options). */
    private readonly encode: (e: CefdEvent) => string = (e) => JSON.stringify(e),
  ) {}

  /** Starts the ring (the console is on). */
  start(): void {
    this.attached = true;
    this.attach(this.sink, this.perRead());
  }

  get clientCount(): number {
    return this.clients.size;
  }

  /** Events in memory now. */
  get size(): number {
    return Math.min(this.events, this.max);
  }

  private perRead(): number {
    return this.clients.size > 0 ? Infinity : this.max;
  }

  subscribe(c: TailClient): () => void {
    this.clients.add(c);
    if (this.clients.size === 1 && this.attached) this.attach(this.sink, this.perRead());
    return () => {
      if (!this.clients.delete(c)) return;
      if (this.clients.size === 0 && this.attached) this.attach(this.sink, this.perRead());
    };
  }

  close(): void {
    this.clients.clear();
    if (this.attached) this.attach(null, 0);
    this.attached = false;
    this.chunks.clear();
    this.events = 0;
    this.bytes = 0;
  }

  private readonly sink: RecentSink = {
    event: (event, frame) => {
      const raw = frame === undefined ? Buffer.alloc(0) : Buffer.from(frame.subarray(0, RECENT_RAW_MAX));
      const c: Chunk = { kind: 'one', ms: Date.now(), listener: String(event.listener), id: String(event.id), event, json: undefined, raw, count: 1, bytes: raw.length * 4 + 256 };
      this.add(c);
      if (this.clients.size > 0) this.publish(this.entryOf(c, 0), event);
    },
    block: (b: RecentBlock, o: RecentBlockInfo) => {
      const buf = Buffer.from(b.bytes);
      const count = b.frames.length;
      const c: Chunk = { kind: 'block', ms: o.receivedMs, listener: o.listener, idPrefix: o.idPrefix, firstSeq: o.firstSeq, buf, ends: b.ends, frames: b.frames, count, bytes: buf.length + 8 * count + 128 };
      this.add(c);
      if (this.clients.size > 0) {
        for (let j = 0; j < count; j++) {
          const e = this.entryOf(c, j);
          let ev: object;
          try {
            ev = JSON.parse(e.json) as object;
          } catch {
            continue;
          }
          this.publish(e, ev);
        }
      }
    },
  };

  private add(c: Chunk): void {
    this.chunks.push(c);
    this.events += c.count;
    this.bytes += c.bytes;
    // Whole chunks go once the rest still holds `max` events (or the bytes are over).
    while (this.chunks.size > 1) {
      const first = this.chunks.at(0);
      if (this.events - first.count < this.max && this.bytes <= this.maxBytes) break;
      this.chunks.shift();
      this.events -= first.count;
      this.bytes -= first.bytes;
    }
  }

  private publish(e: TailEntry, event: object): void {
    for (const c of this.clients) {
      if (c.filter === undefined || c.filter.test(event as CefdEvent)) c.send(e, event);
    }
  }

  private idOf(c: Chunk, j: number): string {
    return c.kind === 'one' ? c.id : eventId(c.idPrefix, c.firstSeq + c.frames[j]!);
  }

  private entryOf(c: Chunk, j: number): TailEntry {
    if (c.kind === 'one') {
      if (c.json === undefined) {
        try {
          c.json = this.encode(c.event!);
        } catch (e) {
          c.json = JSON.stringify({ id: c.id, listener: c.listener, error: `cannot encode: ${(e as Error).message}` });
        }
        c.event = undefined;
      }
      return { id: c.id, ms: c.ms, listener: c.listener, json: c.json, raw: c.raw.toString('utf8') };
    }
    const start = j === 0 ? 0 : c.ends[2 * j - 1]!;
    const jsonEnd = c.ends[2 * j]!;
    return { id: this.idOf(c, j), ms: c.ms, listener: c.listener, json: c.buf.toString('utf8', start, jsonEnd), raw: c.buf.toString('utf8', jsonEnd, c.ends[2 * j + 1]!) };
  }

  /** Newest first, at most `max`, materialized one by one. */
  private *walk(): Generator<{ c: Chunk; j: number }> {
    let n = 0;
    for (let i = this.chunks.size - 1; i >= 0; i--) {
      const c = this.chunks.at(i);
      for (let j = c.count - 1; j >= 0; j--) {
        if (n++ >= this.max) return;
        yield { c, j };
      }
    }
  }

  /** Newest first. */
  entries(): TailEntry[] {
    const out: TailEntry[] = [];
    for (const { c, j } of this.walk()) out.push(this.entryOf(c, j));
    return out;
  }

  get(id: string): TailEntry | undefined {
    for (const { c, j } of this.walk()) if (this.idOf(c, j) === id) return this.entryOf(c, j);
    return undefined;
  }

  /** Events in memory that pass `filter` and contain `text` (case-insensitive, in the frame or the JSON); newest first. */
  search(o: { filter?: string; text?: string; limit: number }): TailEntry[] {
    const f = o.filter !== undefined && o.filter.trim() !== '' ? compileFilter(o.filter) : undefined;
    const t = o.text?.toLowerCase();
    const out: TailEntry[] = [];
    for (const { c, j } of this.walk()) {
      const e = this.entryOf(c, j);
      if (t !== undefined && t !== '' && !e.raw.toLowerCase().includes(t) && !e.json.toLowerCase().includes(t)) continue;
      if (f !== undefined && !f.test(JSON.parse(e.json) as CefdEvent)) continue;
      out.push(e);
      if (out.length >= o.limit) break;
    }
    return out;
  }
}
