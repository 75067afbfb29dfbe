/**
 * What happens to one frame, with no I/O: decode (syslog, CEF) → normalizers → id,
 * listener, peer → route filters → JSON. Shared by the in-thread pipeline and the decode
 * workers (decode-worker.ts), so both do exactly the same thing. Counts go to a
 * FrameCounts the caller merges into telemetry.
 */
import { isUtf8 } from 'node:buffer';
import { decodeFrame } from '../codecs/decode.js';
import type { CefdEvent, EventOrigin } from '../event.js';
import { isCode } from '../errors.js';
import { isoFromMs } from '../time.js';
import { normalizeEvent, type Normalizer } from './normalize.js';
import type { FilterLike } from './output-runner.js';

export type { FilterLike };


/** Counters of one batch of frames, merged into telemetry by the caller. */
export class FrameCounts {
  parsed = 0;
  lastEventMs = 0;
  /** code → n, for unparseable frames (dead letters). */
  readonly unparseable = new Map<string, number>();
  readonly errors = new Map<string, number>();
  readonly warnings = new Map<string, number>();
  /** `normalizer\ttype` → n. */
  readonly normalized = new Map<string, number>();
  /** normalizer → [n, last error text]. */
  readonly normalizerFailed = new Map<string, [number, string]>();

  static add(m: Map<string, number>, k: string, n = 1): void {
    m.set(k, (m.get(k) ?? 0) + n);
  }

  /** Plain form for postMessage. */
  toJSON(): FrameCountsData {
    return {
      parsed: this.parsed,
      lastEventMs: this.lastEventMs,
      unparseable: [...this.unparseable],
      errors: [...this.errors],
      warnings: [...this.warnings],
      normalized: [...this.normalized],
      normalizerFailed: [...this.normalizerFailed],
    };
  }
}

export interface FrameCountsData {
  parsed: number;
  lastEventMs: number;
  unparseable: [string, number][];
  errors: [string, number][];
  warnings: [string, number][];
  normalized: [string, number][];
  normalizerFailed: [string, [number, string]][];
}

export interface IngestEnv {
  defaultZone: string;
  includeRaw: boolean;
  /** Route filter of each output, in output order (undefined: every event). */
  filters: readonly (FilterLike | undefined)[];
  /** Code that watches events after the normalizers (in-thread pipeline only). */
  taps?: readonly ((event: CefdEvent, origin: EventOrigin) => void)[];
  onTapError?: (e: unknown) => void;
  /**
   * Copies of events for the console's live tail (src/console/tail.ts): only set while a
   * tail client is connected; gets the event after routing and the frame's bytes.
   */
  tails?: readonly ((event: CefdEvent, frame: Buffer) => void)[];
}

export type FrameResult =
  /** The event's JSON and the outputs it goes to (bit i: output i; all set when more than 31 outputs pass). */
  | { json: string; mask: number }
  | { dead: string };

const ALL = 0xffffffff;

/** The dead-letter record of a frame that is not an event (or a partial frame). */
export function deadLetterRecord(buf: Buffer, reason: string, message: string, listener: string, peer: string, nowMs: number, truncated: boolean): string {
  const rec: Record<string, unknown> = { time: isoFromMs(nowMs), reason, message, listener, peer };
  if (truncated) rec['truncated'] = true;
  if (isUtf8(buf)) rec['raw'] = buf.toString('utf8');
  else rec['rawBase64'] = buf.toString('base64');
  return JSON.stringify(rec);
}

export function processFrame(
  buf: Buffer,
  truncated: boolean,
  nowMs: number,
  listener: string,
  peer: string,
  normalizers: readonly Normalizer[],
  id: string,
  env: IngestEnv,
  counts: FrameCounts,
  tlsFingerprint?: string,
): FrameResult {
  const r = decodeFrame(buf, truncated, nowMs, { defaultZone: env.defaultZone, keepRaw: env.includeRaw });
  if (!r.ok) {
    FrameCounts.add(counts.unparseable, r.failure.code);
    return { dead: deadLetterRecord(buf, r.failure.code, r.failure.message, listener, peer, nowMs, truncated) };
  }
  const event = r.event;
  event.id = id;
  event.listener = listener;
  event.peer = peer;
  if (normalizers.length > 0) {
    const out = normalizeEvent(event, normalizers);
    if (out.kind === 'normalized') FrameCounts.add(counts.normalized, `${out.normalizer}\t${out.type}`);
    else if (out.kind === 'failed') {
      const prev = counts.normalizerFailed.get(out.normalizer);
      const text = out.error instanceof Error ? out.error.message : String(out.error);
      counts.normalizerFailed.set(out.normalizer, [(prev?.[0] ?? 0) + 1, text]);
    }
  }
  counts.parsed++;
  counts.lastEventMs = nowMs;
  if (event.errors !== undefined) for (const e of event.errors) FrameCounts.add(counts.errors, isCode(e.code) ? e.code : 'other');
  if (event.warnings !== undefined) for (const w of event.warnings) FrameCounts.add(counts.warnings, isCode(w.code) ? w.code : 'other');
  const taps = env.taps;
  if (taps !== undefined && taps.length > 0) {
    const origin: EventOrigin = { listener, peer, tlsFingerprint };
    for (let i = 0; i < taps.length; i++) {
      try {
        taps[i]!(event, origin);
      } catch (e) {
        env.onTapError?.(e);
      }
    }
  }
  let mask = 0;
  const filters = env.filters;
  for (let i = 0; i < filters.length; i++) {
    const f = filters[i];
    if (f === undefined || f.test(event)) mask = i < 32 ? mask | (1 << i) : ALL;
  }
  const tails = env.tails;
  if (tails !== undefined && tails.length > 0) {
    for (let i = 0; i < tails.length; i++) {
      try {
        tails[i]!(event, buf);
      } catch (e) {
        env.onTapError?.(e);
      }
    }
  }
  if (mask === 0) return { json: '', mask: 0 };
  let json: string;
  try {
    json = JSON.stringify(event);
  } catch (e) {
    // Only a normalizer can put something in an event that JSON cannot hold (a BigInt, a
    // cycle): the frame is kept as a dead letter rather than lost or crashing cefd.
    FrameCounts.add(counts.unparseable, 'event_unserializable');
    return { dead: deadLetterRecord(buf, 'event_unserializable', `the event cannot be written as JSON: ${(e as Error).message}`, listener, peer, nowMs, truncated) };
  }
  return { json, mask: mask >>> 0 };
}
