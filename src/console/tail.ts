/**
 * The live tail: while at least one client is connected, the pipeline hands every event
 * (and its frame) to `offer()` (Pipeline.addTail; events are then decoded on the main
 * thread). The last `max` events stay in a ring for the Events page's search and detail
 * view; nothing is copied while no client is connected.
 */
import type { CefdEvent } from '../event.js';
import { compileFilter, type Filter } from '../filter/filter.js';

export interface TailEntry {
  id: string;
  /** Arrival (ms). */
  ms: number;
  listener: string;
  /** The event as native JSON (the event object after routing). */
  json: string;
  /** The frame as text (cut at 64 KiB); empty for an event read from a SQL row. */
  raw: string;
}

export interface TailClient {
  filter: Filter | undefined;
  send(e: TailEntry, event: object): void;
}

const RAW_MAX = 64 * 1024;

export class TailHub {
  private ring: (TailEntry | undefined)[];
  private next = 0;
  private readonly clients = new Set<TailClient>();
  private detach: (() => void) | undefined;

  constructor(
    private max: number,
    /** Starts the copy (returns how to stop it). */
    private readonly attach: (sink: (event: CefdEvent, frame: Buffer | undefined) => void) => () => void,
  ) {
    this.ring = new Array<TailEntry | undefined>(max);
  }

  get clientCount(): number {
    return this.clients.size;
  }

  subscribe(c: TailClient): () => void {
    this.clients.add(c);
    if (this.detach === undefined) this.detach = this.attach((ev, frame) => this.offer(ev, frame));
    return () => {
      this.clients.delete(c);
      if (this.clients.size === 0 && this.detach !== undefined) {
        this.detach();
        this.detach = undefined;
      }
    };
  }

  close(): void {
    this.clients.clear();
    this.detach?.();
    this.detach = undefined;
  }

  private offer(event: CefdEvent, frame: Buffer | undefined): void {
    const e: TailEntry = {
      id: String(event.id),
      ms: Date.now(),
      listener: String(event.listener),
      json: JSON.stringify(event),
      raw: frame === undefined ? '' : frame.subarray(0, RAW_MAX).toString('utf8'),
    };
    this.ring[this.next] = e;
    this.next = (this.next + 1) % this.max;
    for (const c of this.clients) {
      if (c.filter === undefined || c.filter.test(event)) c.send(e, event);
    }
  }

  /** Newest first. */
  entries(): TailEntry[] {
    const out: TailEntry[] = [];
    for (let i = 1; i <= this.max; i++) {
      const e = this.ring[(this.next - i + this.max) % this.max];
      if (e === undefined) break;
      out.push(e);
    }
    return out;
  }

  get(id: string): TailEntry | undefined {
    return this.ring.find((e) => e !== undefined && e.id === id);
  }

  /** Events in memory that pass `filter` and contain `text` (case-insensitive, in the frame or the JSON); newest first. */
  search(o: { filter?: string; text?: string; limit: number }): TailEntry[] {
    const f = o.filter !== undefined && o.filter.trim() !== '' ? compileFilter(o.filter) : undefined;
    const t = o.text?.toLowerCase();
    const out: TailEntry[] = [];
    for (const e of this.entries()) {
      if (t !== undefined && t !== '' && !e.raw.toLowerCase().includes(t) && !e.json.toLowerCase().includes(t)) continue;
      if (f !== undefined && !f.test(JSON.parse(e.json) as object)) continue;
      out.push(e);
      if (out.length >= o.limit) break;
    }
    return out;
  }
}
