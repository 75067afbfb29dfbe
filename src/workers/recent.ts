/**
 * The console's recent events, kept where they are decoded: on each decode worker
 * (decode-worker.ts), the last `max` events it decoded, for the Events page's search and
 * detail view (src/console/tail.ts asks with a RecentQueryMessage). Off (`max` 0), nothing
 * here runs.
 *
 * At the end of each job, its last events (at most `max`) are copied as bytes into a ring
 * (`bytes` at most, grown on demand): the native JSON, copied from the records an output
 * with the native encoding (same options) already wrote, or encoded here when no output
 * uses it; then the frame. Nothing is kept as a JS object, so nothing lives long on the
 * heap (kept strings would be promoted to the old generation and cost major GCs).
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

const FIRST_RING_BYTES = 256 * 1024;

/** Tests an item against a query (the worker's and the main thread's recent events alike). */
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

/** What the worker loop has of a job's native records: its encoder's output bytes. */
export interface NativeOut {
  buf: Buffer;
  len: number;
}

export class RecentKeeper {
  /** Events kept (0: off). */
  max = 0;
  /** A live tail is open: results carry every event of their job. */
  all = false;
  private cap = 0;
  private encode: (e: CefdEvent) => string = (e) => JSON.stringify(e);
  /** The routes' encoder that makes the same records as `encode`, or -1. */
  private same = -1;
  private sameMask = 0;
  /** The event processFrame decoded last (the pipeline's `tails` hook sets it). */
  private seen: CefdEvent | undefined;

  // The ring: the kept event number n is in slot n % max; its bytes (JSON, then frame) at
  // `at` (counted since the start, modulo the ring's size).
  private kept = 0;
  private seqs = new Float64Array(0);
  private times = new Float64Array(0);
  private listeners: string[] = [];
  private prefixes: string[] = [];
  private at = new Float64Array(0);
  private jsonLen = new Int32Array(0);
  private rawLen = new Int32Array(0);
  private ring: Buffer = Buffer.alloc(0);
  private written = 0;

  // The job in progress: its last `max` events (frame index, and where the native output
  // wrote its record, or the event when it has no such record).
  private job = { nowMs: 0, listener: '', idPrefix: '', firstSeq: 0 };
  private out: NativeOut | undefined;
  /** The job's event number whose native record was written last (-1: none yet). */
  private lastWritten = -1;
  private jobKept = 0;
  private jobFrames: number[] = [];
  private jobStart: number[] = [];
  private jobEnd: number[] = [];
  private jobEvents: (CefdEvent | undefined)[] = [];

  /** For IngestEnv.tails. */
  readonly tail = (event: CefdEvent): void => {
    this.seen = event;
  };

  /** The encoder index whose output begin() wants (-1: none, events are encoded here). */
  get nativeEncoder(): number {
    return this.same;
  }

  configure(routes: Routes, event: EventOptions | undefined): void {
    const enc = createEncoder({ codec: 'native', ...(event !== undefined ? { event } : {}) });
    this.encode = enc.encode;
    this.same = routes.encoders.findIndex((e) => e.key === enc.key);
    this.sameMask = this.same >= 0 ? routes.encoderMasks[this.same]! : 0;
  }

  /** Keep the last `max` events in at most `bytes`; `all`: a tail is open. */
  set(max: number, bytes: number, all: boolean): void {
    if (max !== this.max || bytes !== this.cap) {
      this.max = max;
      this.cap = bytes;
      this.kept = 0;
      this.written = 0;
      this.seqs = new Float64Array(max);
      this.times = new Float64Array(max);
      this.listeners = new Array<string>(max);
      this.prefixes = new Array<string>(max);
      this.at = new Float64Array(max);
      this.jsonLen = new Int32Array(max);
      this.rawLen = new Int32Array(max);
      this.ring = max > 0 ? Buffer.allocUnsafeSlow(Math.min(FIRST_RING_BYTES, Math.max(1024, bytes))) : Buffer.alloc(0);
    }
    this.all = max > 0 && all;
  }

  /** A job starts; `out` is the native encoder's output (when nativeEncoder >= 0). */
  begin(nowMs: number, listener: string, idPrefix: string, firstSeq: number, out: NativeOut | undefined): void {
    this.job = { nowMs, listener, idPrefix, firstSeq };
    this.out = out;
    this.lastWritten = -1;
    this.jobKept = 0;
    this.seen = undefined;
  }

  /**
   * Right after processFrame of frame `i` returned `r` (before its records are written: the
   * native record starts where the native output is now, and ends where the next one starts).
   */
  after(i: number, r: unknown): void {
    const ev = this.seen;
    this.seen = undefined;
    if (ev === undefined || typeof r !== 'number') return;
    // While a tail is open every event of the job is needed (x % Infinity is x).
    const cap = this.all ? Infinity : this.max;
    const n = this.jobKept++;
    const out = this.out;
    if (out !== undefined && (r & this.sameMask) !== 0) {
      const start = out.len;
      if (this.lastWritten >= 0 && n - this.lastWritten < cap) this.jobEnd[this.lastWritten % cap] = start - 1;
      const k = n % cap;
      this.jobFrames[k] = i;
      this.jobStart[k] = start;
      this.jobEnd[k] = -1;
      this.jobEvents[k] = undefined;
      this.lastWritten = n;
    } else {
      const k = n % cap;
      this.jobFrames[k] = i;
      this.jobEvents[k] = ev;
    }
  }

  /**
   * The job is done: its last events go into the ring; while a tail is open, all of them
   * come back as a block (oldest first).
   */
  finish(data: Buffer, offsets: Int32Array): RecentBlock | undefined {
    const cap = this.all ? Infinity : this.max;
    const count = Math.min(this.jobKept, cap);
    const first = this.jobKept > cap ? this.jobKept % cap : 0;
    const out = this.out;
    // The last native record ends at the output's end (without the newline).
    if (out !== undefined && this.lastWritten >= 0 && this.jobKept - this.lastWritten <= cap) this.jobEnd[this.lastWritten % cap] = out.len - 1;
    const parts: Buffer[] | undefined = this.all ? [] : undefined;
    const frames: number[] = [];
    for (let j = 0; j < count; j++) {
      const s = (first + j) % cap;
      const ev = this.jobEvents[s];
      let json: Buffer;
      if (ev === undefined) json = out!.buf.subarray(this.jobStart[s]!, this.jobEnd[s]!);
      else {
        try {
          json = Buffer.from(this.encode(ev), 'utf8');
        } catch {
          continue;
        }
      }
      const f = this.jobFrames[s]!;
      const raw = data.subarray(offsets[2 * f]!, Math.min(offsets[2 * f + 1]!, offsets[2 * f]! + RECENT_RAW_MAX));
      if (j >= count - this.max) this.keep(f, json, raw);
      if (parts !== undefined) {
        parts.push(json, raw);
        frames.push(f);
      }
    }
    this.jobEvents.length = 0;
    this.out = undefined;
    if (parts === undefined || frames.length === 0) return undefined;
    let total = 0;
    for (const p of parts) total += p.length;
    const own = Buffer.allocUnsafeSlow(Math.max(1, total));
    const ends = new Int32Array(parts.length);
    let len = 0;
    for (let x = 0; x < parts.length; x++) {
      len += parts[x]!.copy(own, len);
      ends[x] = len;
    }
    return { bytes: own.buffer as ArrayBuffer, ends, frames: Int32Array.from(frames) };
  }

  private keep(f: number, json: Buffer, raw: Buffer): void {
    let need = json.length + raw.length;
    if (need > this.cap) {
      raw = raw.subarray(0, Math.max(0, this.cap - json.length));
      need = json.length + raw.length;
      if (need > this.cap) return;
    }
    this.makeRoom(need);
    const k = this.kept % this.max;
    this.seqs[k] = this.job.firstSeq + f;
    this.times[k] = this.job.nowMs;
    this.listeners[k] = this.job.listener;
    this.prefixes[k] = this.job.idPrefix;
    this.at[k] = this.written;
    this.jsonLen[k] = json.length;
    this.rawLen[k] = raw.length;
    this.put(json);
    this.put(raw);
    this.kept++;
  }

  /** Grows the ring (up to `cap`) rather than overwrite an event still kept. */
  private makeRoom(need: number): void {
    const held = Math.min(this.kept, this.max);
    if (held === 0) return;
    // The slot `need` bytes will overwrite part of: the oldest still whole after this write.
    const oldest = this.at[(this.kept - held) % this.max]!;
    const size = this.ring.length;
    if (this.written + need - oldest <= size || size >= this.cap) return;
    let bigger = size;
    while (bigger < this.cap && this.written + need - oldest > bigger) bigger = Math.min(this.cap, bigger * 2);
    const next = Buffer.allocUnsafeSlow(bigger);
    // Copy the live bytes [oldest, written) to their places in the bigger ring.
    for (let p = oldest; p < this.written; ) {
      const from = p % size;
      const to = p % bigger;
      const n = Math.min(this.written - p, size - from, bigger - to);
      this.ring.copy(next, to, from, from + n);
      p += n;
    }
    this.ring = next;
  }

  private put(b: Buffer): void {
    const size = this.ring.length;
    let p = 0;
    while (p < b.length) {
      const to = (this.written + p) % size;
      const n = Math.min(b.length - p, size - to);
      b.copy(this.ring, to, p, p + n);
      p += n;
    }
    this.written += b.length;
  }

  private text(from: number, n: number): string {
    const size = this.ring.length;
    const a = from % size;
    if (a + n <= size) return this.ring.toString('utf8', a, a + n);
    return Buffer.concat([this.ring.subarray(a), this.ring.subarray(0, a + n - size)]).toString('utf8');
  }

  /** Slot k is whole (its bytes not overwritten since). */
  private whole(k: number): boolean {
    return this.written - this.at[k]! <= this.ring.length;
  }

  query(q: RecentQuery): { items: RecentItem[]; kept: number } {
    const held = Math.min(this.kept, this.max);
    const items: RecentItem[] = [];
    const test = q.id === undefined ? matcher(q) : undefined;
    let whole = 0;
    for (let n = this.kept - 1; n >= this.kept - held; n--) {
      const k = n % this.max;
      if (!this.whole(k)) break;
      whole++;
      if (items.length >= q.limit) continue;
      const id = eventId(this.prefixes[k]!, this.seqs[k]!);
      if (q.id !== undefined && id !== q.id) continue;
      const json = this.text(this.at[k]!, this.jsonLen[k]!);
      const raw = this.text(this.at[k]! + this.jsonLen[k]!, this.rawLen[k]!);
      if (test !== undefined && !test(json, raw)) continue;
      items.push({ id, seq: this.seqs[k]!, ms: this.times[k]!, listener: this.listeners[k]!, json, raw });
    }
    return { items, kept: whole };
  }
}
