/**
 * The console's recent events and live tail. While the console is on, the decode workers
 * keep the last `max` events each decoded (src/workers/recent.ts; asked with `query`), and
 * the pipeline hands this hub the events decoded on the main thread one by one (no workers,
 * a SQL source, a read decoded again after a reload), of which it keeps the last `max`
 * (at most `maxBytes`). A search or a detail view asks both and merges the answers, newest
 * first.
 *
 * While a tail client is connected the workers also send every event they decode (a block
 * per read, native JSON and frame), which the hub parses for the clients' filters. Events
 * stay on the workers either way.
 */
import type { CefdEvent } from '../event.js';
import { compileFilter, type Filter } from '../filter/filter.js';
import type { RecentBlockInfo, RecentOptions, RecentSink } from '../pipeline/pipeline.js';
import { eventId } from '../pipeline/ingest.js';
import type { RecentBlock, RecentItem, RecentQuery } from '../workers/worker-protocol.js';
import { matcher, RECENT_RAW_MAX } from '../workers/recent.js';

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

/** How the hub starts, changes and stops what the pipeline keeps and sends (Pipeline.setRecent). */
export type RecentAttach = (sink: RecentSink | null, o: RecentOptions) => void;

/** Asks the decode workers for their recent events (Pipeline.queryRecent). */
export type RecentAsk = (q: RecentQuery) => Promise<{ items: RecentItem[]; kept: number }>;

/** An event decoded on the main thread. */
interface Kept {
  ms: number;
  seq: number;
  listener: string;
  id: string;
  event: CefdEvent | undefined;
  json: string | undefined;
  raw: Buffer;
  bytes: number;
}

/** The number in an id of eventId() (the order events were read in); 0 for another id. */
function seqOf(id: string): number {
  const n = parseInt(id.slice(id.lastIndexOf('-') + 1), 36);
  return Number.isSafeInteger(n) ? n : 0;
}

const newestFirst = (a: RecentItem, b: RecentItem): number => b.ms - a.ms || b.seq - a.seq;

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
  private readonly kept = new Deque<Kept>();
  private bytes = 0;
  private readonly clients = new Set<TailClient>();
  private attached = false;

  constructor(
    private readonly max: number,
    private readonly maxBytes: number,
    private readonly attach: RecentAttach,
    private readonly ask: RecentAsk,
    /** The native encoding (with the configuration's `event` options). */
    private readonly encode: (e: CefdEvent) => string = (e) => JSON.stringify(e),
  ) {}

  /** Starts keeping events (the console is on). */
  start(): void {
    this.attached = true;
    this.attach(this.sink, this.options());
  }

  get clientCount(): number {
    return this.clients.size;
  }

  private options(): RecentOptions {
    return { max: this.max, bytes: this.maxBytes, all: this.clients.size > 0 };
  }

  subscribe(c: TailClient): () => void {
    this.clients.add(c);
    if (this.clients.size === 1 && this.attached) this.attach(this.sink, this.options());
    return () => {
      if (!this.clients.delete(c)) return;
      if (this.clients.size === 0 && this.attached) this.attach(this.sink, this.options());
    };
  }

  close(): void {
    this.clients.clear();
    if (this.attached) this.attach(null, { max: 0, bytes: 0, all: false });
    this.attached = false;
    this.kept.clear();
    this.bytes = 0;
  }

  private readonly sink: RecentSink = {
    event: (event, frame) => {
      const raw = frame === undefined ? Buffer.alloc(0) : Buffer.from(frame.subarray(0, RECENT_RAW_MAX));
      const id = String(event.id);
      const k: Kept = { ms: Date.now(), seq: seqOf(id), listener: String(event.listener), id, event, json: undefined, raw, bytes: 0 };
      // What `maxBytes` counts: the copy of the frame, and the event object (kept until
      // shown), about three times its frame (the whole frame, not the copy's 64 KiB: a
      // larger max_frame_bytes makes larger events). An event without a frame (a SQL row)
      // is encoded now and kept as its JSON: nothing else says how large it is.
      if (frame === undefined) {
        this.itemOf(k);
        k.bytes = k.json!.length * 2 + 256;
      } else k.bytes = raw.length + frame.length * 3 + 256;
      this.kept.push(k);
      this.bytes += k.bytes;
      while (this.kept.size > this.max || (this.bytes > this.maxBytes && this.kept.size > 1)) this.bytes -= this.kept.shift()!.bytes;
      if (this.clients.size > 0) this.publish(this.itemOf(k), event);
    },
    block: (b: RecentBlock, o: RecentBlockInfo) => {
      if (this.clients.size === 0) return;
      const buf = Buffer.from(b.bytes);
      for (let j = 0; j < b.frames.length; j++) {
        const start = j === 0 ? 0 : b.ends[2 * j - 1]!;
        const jsonEnd = b.ends[2 * j]!;
        const seq = o.firstSeq + b.frames[j]!;
        const e: TailEntry = { id: eventId(o.idPrefix, seq), ms: o.receivedMs, listener: o.listener, json: buf.toString('utf8', start, jsonEnd), raw: buf.toString('utf8', jsonEnd, b.ends[2 * j + 1]!) };
        let ev: object;
        try {
          ev = JSON.parse(e.json) as object;
        } catch {
          continue;
        }
        this.publish(e, ev);
      }
    },
  };

  private publish(e: TailEntry, event: object): void {
    for (const c of this.clients) {
      if (c.filter === undefined || c.filter.test(event as CefdEvent)) c.send(e, event);
    }
  }

  private itemOf(k: Kept): RecentItem {
    if (k.json === undefined) {
      try {
        k.json = this.encode(k.event!);
      } catch (e) {
        k.json = JSON.stringify({ id: k.id, listener: k.listener, error: `cannot encode: ${(e as Error).message}` });
      }
      k.event = undefined;
    }
    return { id: k.id, seq: k.seq, ms: k.ms, listener: k.listener, json: k.json, raw: k.raw.toString('utf8') };
  }

  /** The main thread's own recent events that match `q`, newest first. */
  private local(q: RecentQuery): RecentItem[] {
    const test = q.id === undefined ? matcher(q) : undefined;
    const out: RecentItem[] = [];
    for (let i = this.kept.size - 1; i >= 0 && out.length < q.limit; i--) {
      const k = this.kept.at(i);
      if (q.id !== undefined && k.id !== q.id) continue;
      const item = this.itemOf(k);
      if (test !== undefined && !test(item.json, item.raw)) continue;
      out.push(item);
    }
    return out;
  }

  /**
   * Recent events that pass `filter` and contain `text` (case-insensitive, in the frame or
   * the JSON), newest first, and how many are kept. Throws FilterSyntaxError for a bad filter.
   */
  async search(o: { filter?: string; text?: string; limit: number }): Promise<{ entries: TailEntry[]; kept: number }> {
    if (o.filter !== undefined && o.filter.trim() !== '') compileFilter(o.filter);
    const q: RecentQuery = { limit: o.limit, ...(o.filter !== undefined ? { filter: o.filter } : {}), ...(o.text !== undefined ? { text: o.text } : {}) };
    const far = await this.ask(q);
    // A read a worker decoded under an older configuration is decoded again here (a reload):
    // its events may be in both places.
    const seen = new Set<string>();
    const items = [...far.items, ...this.local(q)]
      .sort(newestFirst)
      .filter((x) => {
        if (seen.has(x.id)) return false;
        seen.add(x.id);
        return true;
      })
      .slice(0, o.limit);
    return { entries: items.map(({ id, ms, listener, json, raw }) => ({ id, ms, listener, json, raw })), kept: far.kept + this.kept.size };
  }

  async get(id: string): Promise<TailEntry | undefined> {
    const here = this.local({ id, limit: 1 })[0] ?? (await this.ask({ id, limit: 1 })).items[0];
    return here === undefined ? undefined : { id: here.id, ms: here.ms, listener: here.listener, json: here.json, raw: here.raw };
  }
}
