/**
 * The console's recent events, kept where they are decoded: on each decode worker
 * (decode-worker.ts), the last `max` events it decoded, for the Events page's search and
 * detail view (src/console/tail.ts asks with a RecentQueryMessage). Off (`max` 0), nothing
 * here runs.
 *
 * Keeping an event costs a reference and a copy of its frame into a ring of bytes: the
 * native JSON is the record an output with the native encoding (same options) already made,
 * or, when no output uses it, the event object itself, encoded only when someone asks.
 * While a live tail is open (`all`), a job's result also carries every event of the job as
 * native JSON and frame (a RecentBlock), which the main thread sends to the tail clients.
 */
import { createEncoder } from '../codecs/encoders/registry.js';
import type { EventOptions } from '../codecs/encoders/native.js';
import type { CefdEvent } from '../event.js';
import { compileFilter, type Filter } from '../filter/filter.js';
import { eventId } from '../pipeline/ingest.js';
import type { Routes } from '../pipeline/router.js';
import type { RecentBlock, RecentItem, RecentQuery } from './worker-protocol.js';

/** A frame's first bytes kept with its event (the detail view's `raw`). */
export const RECENT_RAW_MAX = 64 * 1024;

/** What a query needs of an event: where it came from, its JSON and frame. */
export interface RecentSource {
  readonly max: number;
  /** Newest first, at most `limit`, those that pass `filter` and contain `text`. */
  query(q: RecentQuery): { items: RecentItem[]; kept: number };
}

/** Tests an item against a query (the worker's and the main thread's ring alike). */
export function matcher(q: RecentQuery): (json: string, raw: string) => boolean {
  const t = q.text !== undefined && q.text !== '' ? q.text.toLowerCase() : undefined;
  let f: Filter | undefined;
  if (q.filter !== undefined && q.filter.trim() !== '') f = compileFilter(q.filter);
  return (json, raw) => {
    if (t !== undefined && !raw.toLowerCase().includes(t) && !json.toLowerCase().includes(t)) return false;
    if (f !== undefined && !f.test(JSON.parse(json) as CefdEvent)) return false;
    return true;
  };
}

export class RecentKeeper implements RecentSource {
  /** Events kept (0: off). */
  max = 0;
  /** A live tail is open: results carry every event of their job. */
  all = false;
  private encode: (e: CefdEvent) => string = (e) => JSON.stringify(e);
  /** The routes' encoder that makes the same records as `encode`, or -1. */
  private same = -1;
  private sameMask = 0;
  /** The event processFrame decoded last (the pipeline's `tails` hook sets it). */
  private seen: CefdEvent | undefined;

  // The ring: slot k of the kept event number n is n % max.
  private kept = 0;
  private vals: (string | CefdEvent | undefined)[] = [];
  private seqs = new Float64Array(0);
  private times = new Float64Array(0);
  private listeners: string[] = [];
  private prefixes: string[] = [];
  /** Where its frame starts in the byte ring (counted since the start), and its length. */
  private rawAt = new Float64Array(0);
  private rawLen = new Int32Array(0);
  private bytes: Buffer = Buffer.alloc(0);
  private written = 0;

  // The job in progress.
  private job = { nowMs: 0, listener: '', idPrefix: '', firstSeq: 0 };
  private blockJson: string[] = [];
  private blockFrames: number[] = [];
  private blockRaw: Buffer[] = [];

  /** For IngestEnv.tails. */
  readonly tail = (event: CefdEvent): void => {
    this.seen = event;
  };

  configure(routes: Routes, event: EventOptions | undefined): void {
    const enc = createEncoder({ codec: 'native', ...(event !== undefined ? { event } : {}) });
    this.encode = enc.encode;
    this.same = routes.encoders.findIndex((e) => e.key === enc.key);
    this.sameMask = this.same >= 0 ? routes.encoderMasks[this.same]! : 0;
    // Events kept under other options would show another shape: start afresh.
    this.kept = 0;
    this.vals = [];
  }

  /** Keep the last `max` events and `bytes` of their frames; `all`: a tail is open. */
  set(max: number, bytes: number, all: boolean): void {
    if (max !== this.max || bytes !== this.bytes.length) {
      this.max = max;
      this.kept = 0;
      this.written = 0;
      this.vals = [];
      this.seqs = new Float64Array(max);
      this.times = new Float64Array(max);
      this.listeners = new Array<string>(max);
      this.prefixes = new Array<string>(max);
      this.rawAt = new Float64Array(max);
      this.rawLen = new Int32Array(max);
      this.bytes = max > 0 ? Buffer.allocUnsafeSlow(Math.max(1024, bytes)) : Buffer.alloc(0);
    }
    this.all = max > 0 && all;
  }

  /** A job starts. */
  begin(nowMs: number, listener: string, idPrefix: string, firstSeq: number): void {
    this.job = { nowMs, listener, idPrefix, firstSeq };
    this.seen = undefined;
  }

  /** After processFrame of frame `i` (`frame`) returned `r`, with `encoded` its records. */
  after(i: number, r: unknown, encoded: readonly string[], frame: Buffer): void {
    const ev = this.seen;
    if (ev === undefined) return;
    this.seen = undefined;
    if (typeof r !== 'number') return;
    const k = this.kept++ % this.max;
    const v = this.same >= 0 && (r & this.sameMask) !== 0 ? encoded[this.same]! : ev;
    this.vals[k] = v;
    this.seqs[k] = this.job.firstSeq + i;
    this.times[k] = this.job.nowMs;
    this.listeners[k] = this.job.listener;
    this.prefixes[k] = this.job.idPrefix;
    // The frame into the byte ring (wrapping around); an old frame overwritten is gone.
    const size = this.bytes.length;
    const n = Math.min(frame.length, RECENT_RAW_MAX, size);
    const at = this.written % size;
    const first = Math.min(n, size - at);
    frame.copy(this.bytes, at, 0, first);
    if (first < n) frame.copy(this.bytes, 0, first, n);
    this.rawAt[k] = this.written;
    this.rawLen[k] = n;
    this.written += n;
    if (this.all) {
      this.blockJson.push(this.jsonAt(k));
      this.blockFrames.push(i);
      this.blockRaw.push(frame.subarray(0, n));
    }
  }

  /** While a tail is open: the job's events, oldest first. */
  finish(): RecentBlock | undefined {
    const count = this.blockJson.length;
    if (count === 0) return undefined;
    let size = 0;
    for (let j = 0; j < count; j++) size += Buffer.byteLength(this.blockJson[j]!, 'utf8') + this.blockRaw[j]!.length;
    const buf = Buffer.allocUnsafeSlow(Math.max(1, size));
    const ends = new Int32Array(2 * count);
    let len = 0;
    for (let j = 0; j < count; j++) {
      len += buf.write(this.blockJson[j]!, len, 'utf8');
      ends[2 * j] = len;
      len += this.blockRaw[j]!.copy(buf, len);
      ends[2 * j + 1] = len;
    }
    const frames = Int32Array.from(this.blockFrames);
    this.blockJson = [];
    this.blockFrames = [];
    this.blockRaw = [];
    return { bytes: buf.buffer as ArrayBuffer, ends, frames };
  }

  /** The native JSON of slot k (encoded now if it was kept as an event, and kept so). */
  private jsonAt(k: number): string {
    const v = this.vals[k]!;
    if (typeof v === 'string') return v;
    let s: string;
    try {
      s = this.encode(v);
    } catch (e) {
      s = JSON.stringify({ id: String(v.id), listener: String(v.listener), error: `cannot encode: ${(e as Error).message}` });
    }
    this.vals[k] = s;
    return s;
  }

  private rawOf(k: number): string {
    const size = this.bytes.length;
    const at = this.rawAt[k]!;
    const n = this.rawLen[k]!;
    if (this.written - at > size) return '';
    const start = at % size;
    if (start + n <= size) return this.bytes.toString('utf8', start, start + n);
    return Buffer.concat([this.bytes.subarray(start), this.bytes.subarray(0, start + n - size)]).toString('utf8');
  }

  query(q: RecentQuery): { items: RecentItem[]; kept: number } {
    const held = Math.min(this.kept, this.max);
    const items: RecentItem[] = [];
    const test = q.id === undefined ? matcher(q) : undefined;
    for (let n = this.kept - 1; n >= this.kept - held && items.length < q.limit; n--) {
      const k = n % this.max;
      const id = eventId(this.prefixes[k]!, this.seqs[k]!);
      if (q.id !== undefined && id !== q.id) continue;
      const json = this.jsonAt(k);
      const raw = this.rawOf(k);
      if (test !== undefined && !test(json, raw)) continue;
      items.push({ id, seq: this.seqs[k]!, ms: this.times[k]!, listener: this.listeners[k]!, json, raw });
    }
    return { items, kept: held };
  }
}
