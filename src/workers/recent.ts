/**
 * The console's recent events, kept on a decode worker (decode-worker.ts): while the console
 * is on, a job's result carries the native JSON and the frame of its last `max` events (all
 * of them while a live tail is open), so the main thread's ring (src/console/tail.ts) fills
 * without decoding anything itself. Off (`max` 0), nothing here runs.
 *
 * An event routed to an output that uses the native encoding (with the same options) reuses
 * that output's record; otherwise the kept events are encoded here once more, and only the
 * last `max` of a job.
 */
import { createEncoder } from '../codecs/encoders/registry.js';
import type { EventOptions } from '../codecs/encoders/native.js';
import type { CefdEvent } from '../event.js';
import type { Routes } from '../pipeline/router.js';
import type { RecentBlock } from './worker-protocol.js';

/** A frame's first bytes kept with its event (the detail view's `raw`). */
export const RECENT_RAW_MAX = 64 * 1024;

export class RecentKeeper {
  /** Events of a job to keep (its last ones): 0 off, Infinity all. */
  max = 0;
  private encode: (e: CefdEvent) => string = (e) => JSON.stringify(e);
  /** The routes' encoder that makes the same records as `encode`, or -1. */
  private same = -1;
  private sameMask = 0;
  /** The event processFrame decoded last (the pipeline's `tails` hook sets it). */
  private seen: CefdEvent | undefined;
  private keep = 0;
  private kept = 0;
  private vals: (string | CefdEvent)[] = [];
  private frames = new Int32Array(0);

  /** For IngestEnv.tails. */
  readonly tail = (event: CefdEvent): void => {
    this.seen = event;
  };

  configure(routes: Routes, event: EventOptions | undefined): void {
    const enc = createEncoder({ codec: 'native', ...(event !== undefined ? { event } : {}) });
    this.encode = enc.encode;
    this.same = routes.encoders.findIndex((e) => e.key === enc.key);
    this.sameMask = this.same >= 0 ? routes.encoderMasks[this.same]! : 0;
  }

  /** A job of `n` frames starts. */
  begin(n: number): void {
    this.keep = Math.min(n, this.max);
    this.kept = 0;
    if (this.frames.length < this.keep) this.frames = new Int32Array(this.keep);
    this.seen = undefined;
  }

  /** After processFrame of frame `i` returned `r`, with `encoded` its records. */
  after(i: number, r: unknown, encoded: readonly string[]): void {
    const ev = this.seen;
    if (ev === undefined) return;
    this.seen = undefined;
    if (typeof r !== 'number') return;
    const slot = this.kept % this.keep;
    this.vals[slot] = this.same >= 0 && (r & this.sameMask) !== 0 ? encoded[this.same]! : ev;
    this.frames[slot] = i;
    this.kept++;
  }

  /** The kept events of the job, oldest first, with their frames from `data`. */
  finish(data: Buffer, offsets: Int32Array): RecentBlock | undefined {
    const count = Math.min(this.kept, this.keep);
    if (count === 0) return undefined;
    const first = this.kept > this.keep ? this.kept % this.keep : 0;
    const jsons: string[] = [];
    const idx: number[] = [];
    let size = 0;
    for (let j = 0; j < count; j++) {
      const slot = (first + j) % this.keep;
      const v = this.vals[slot]!;
      let json: string;
      try {
        json = typeof v === 'string' ? v : this.encode(v);
      } catch {
        continue;
      }
      const f = this.frames[slot]!;
      jsons.push(json);
      idx.push(f);
      size += Buffer.byteLength(json, 'utf8') + Math.min(RECENT_RAW_MAX, offsets[2 * f + 1]! - offsets[2 * f]!);
    }
    this.vals.length = 0;
    const buf = Buffer.allocUnsafeSlow(Math.max(1, size));
    const ends = new Int32Array(2 * jsons.length);
    let len = 0;
    for (let j = 0; j < jsons.length; j++) {
      len += buf.write(jsons[j]!, len, 'utf8');
      ends[2 * j] = len;
      const f = idx[j]!;
      const start = offsets[2 * f]!;
      len += data.copy(buf, len, start, Math.min(offsets[2 * f + 1]!, start + RECENT_RAW_MAX));
      ends[2 * j + 1] = len;
    }
    return { bytes: buf.buffer as ArrayBuffer, ends, frames: Int32Array.from(idx) };
  }
}
