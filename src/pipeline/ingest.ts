/**
 * What happens to one frame, with no I/O: decode (syslog, CEF) → normalizers → id,
 * listener, peer → the KSC watch (enrichment, rules) → route filters → one record per
 * encoder in use. Shared by the in-thread pipeline and the decode
 * workers (decode-worker.ts), so both do exactly the same thing. Counts go to a
 * FrameCounts the caller merges into telemetry.
 */
import { isUtf8 } from 'node:buffer';
import { decodeFrame } from '../codecs/decode.js';
import type { CefdEvent, EventOrigin } from '../event.js';
import { isCode } from '../errors.js';
import { isoFromMs } from '../time.js';
import { normalizeEvent, type Normalizer } from './normalize.js';
import { ALL_OUTPUTS, routeMask, type Routes } from './router.js';
import type { KscWatch } from '../ksc/watch.js';


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
  /**
   * `output index\tcode` → [n, last detail]: what an output's encoding could not carry
   * (Encoder.problems, codes `encode_*`), for each record of that output. By index: a
   * worker knows the outputs by their place in the routes.
   */
  readonly encodeProblems = new Map<string, [number, string]>();

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
      encodeProblems: [...this.encodeProblems],
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
  encodeProblems: [string, [number, string]][];
}

export interface IngestEnv {
  defaultZone: string;
  includeRaw: boolean;
  /** Route filters and encoders (router.ts). */
  routes: Routes;
  /** Code that watches events after the normalizers (in-thread pipeline only). */
  taps?: readonly ((event: CefdEvent, origin: EventOrigin) => void)[];
  onTapError?: (e: unknown) => void;
  /**
   * The console's recent events (src/console/tail.ts; on a decode worker
   * src/workers/recent.ts): only set while the console is on; gets the event after routing
   * and the frame's bytes.
   */
  tails?: readonly ((event: CefdEvent, frame: Buffer | undefined) => void)[];
  /** The KSC integration's per-event work (ksc/watch.ts), here or on a worker. */
  watch?: KscWatch | undefined;
}

/**
 * What encoder `e` could not carry in this event's record, counted for each output that
 * gets the record (the outputs of the encoder whose route passed the event).
 */
function countEncodeProblems(routes: Routes, e: number, mask: number, counts: FrameCounts): void {
  const p = routes.encoders[e]!.problems;
  const taken = p.take();
  const encoderOf = routes.encoderOf;
  for (let i = 0; i < encoderOf.length; i++) {
    if (encoderOf[i] !== e || (mask & (i < 32 ? 1 << i : ALL_OUTPUTS)) === 0) continue;
    for (const [code, n] of taken) {
      const key = `${i}\t${code}`;
      const prev = counts.encodeProblems.get(key);
      counts.encodeProblems.set(key, [(prev?.[0] ?? 0) + n, p.last.get(code) ?? '']);
    }
  }
}

/**
 * The `normalizer\ttype` key of counts.normalized, made once per pair: a key made per
 * event is a new string, hashed again by each Map lookup (about 1 % of a worker's time on
 * the KSC workload). Types are the normalizers' to choose: at most 256 are remembered per
 * normalizer, the others made per event.
 */
const normalizedKeys = new Map<string, Map<string, string>>();
function normalizedKey(normalizer: string, type: string): string {
  let byType = normalizedKeys.get(normalizer);
  if (byType === undefined) normalizedKeys.set(normalizer, (byType = new Map()));
  let key = byType.get(type);
  if (key === undefined) {
    key = `${normalizer}\t${type}`;
    if (byType.size < 256) byType.set(type, key);
  }
  return key;
}

/** A frame that is not an event: its dead-letter record. */
export interface DeadFrame {
  dead: string;
}

/** The prefix of this process's event ids: boot time (ms, base 36); unique across restarts. */
export function newIdPrefix(): string {
  return Date.now().toString(36);
}

/** The id of the `seq`th frame since boot (main thread and workers number frames alike). */
export function eventId(prefix: string, seq: number): string {
  return `${prefix}-${seq.toString(36)}`;
}

/** The dead-letter record of a frame that is not an event (or a partial frame). */
export function deadLetterRecord(buf: Buffer, reason: string, message: string, listener: string, peer: string, nowMs: number, truncated: boolean): string {
  const rec: Record<string, unknown> = { time: isoFromMs(nowMs), reason, message, listener, peer };
  if (truncated) rec['truncated'] = true;
  if (isUtf8(buf)) rec['raw'] = buf.toString('utf8');
  else rec['rawBase64'] = buf.toString('base64');
  return JSON.stringify(rec);
}

/**
 * One frame: returns its route mask (0: no output wants it) with `encoded[e]` set to the
 * record of encoder e for every encoder some routed output uses (each encoded once), or
 * the frame's dead-letter record.
 */
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
  encoded: string[],
  tlsFingerprint?: string,
): number | DeadFrame {
  const r = decodeFrame(buf, truncated, nowMs, { defaultZone: env.defaultZone, keepRaw: env.includeRaw });
  if (!r.ok) {
    FrameCounts.add(counts.unparseable, r.failure.code);
    return { dead: deadLetterRecord(buf, r.failure.code, r.failure.message, listener, peer, nowMs, truncated) };
  }
  const event = r.event;
  event.id = id;
  event.listener = listener;
  event.peer = peer;
  const m = processEvent(event, { listener, peer, tlsFingerprint }, normalizers, env, counts, encoded, nowMs, buf);
  if (typeof m === 'number') return m;
  return { dead: unencodableRecord(buf, m, listener, peer, nowMs, truncated) };
}

/**
 * The dead-letter record of a frame whose event an encoder could not write. Only a
 * normalizer can put such a thing in an event (a BigInt, a cycle): the frame is kept as a
 * dead letter rather than lost or crashing cefd. (Counted by the caller: processEvent, or
 * the decode worker that writes records many at once.)
 */
export function unencodableRecord(buf: Buffer, err: Error, listener: string, peer: string, nowMs: number, truncated: boolean): string {
  return deadLetterRecord(buf, 'event_unserializable', `the event cannot be encoded: ${err.message}`, listener, peer, nowMs, truncated);
}

/**
 * What happens to an event after it was decoded, whatever it was read from (a frame here,
 * a SQL row in records.ts): normalizers, counts, the KSC watch, taps, route filters, and
 * one encoding per encoder a routed output uses (`encoded[e]`). Returns the route mask,
 * or the Error of an encoder that could not write the event (counted as
 * `event_unserializable`; the caller dead-letters what the event came from).
 */
export function processEvent(
  event: CefdEvent,
  origin: EventOrigin,
  normalizers: readonly Normalizer[],
  env: IngestEnv,
  counts: FrameCounts,
  encoded: string[],
  nowMs: number,
  /** The frame the event came from (for the console's live tail); none for a SQL row. */
  frame?: Buffer,
): number | Error {
  if (normalizers.length > 0) {
    const out = normalizeEvent(event, normalizers);
    if (out.kind === 'normalized') FrameCounts.add(counts.normalized, normalizedKey(out.normalizer, out.type));
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
  env.watch?.see(event);
  const taps = env.taps;
  if (taps !== undefined && taps.length > 0) {
    for (let i = 0; i < taps.length; i++) {
      try {
        taps[i]!(event, origin);
      } catch (e) {
        env.onTapError?.(e);
      }
    }
  }
  const routes = env.routes;
  const mask = routeMask(routes, event);
  const tails = env.tails;
  if (tails !== undefined && tails.length > 0) {
    for (let i = 0; i < tails.length; i++) {
      try {
        tails[i]!(event, frame);
      } catch (e) {
        env.onTapError?.(e);
      }
    }
  }
  if (mask === 0) return 0;
  const encoders = routes.encoders;
  try {
    for (let e = 0; e < encoders.length; e++) {
      if ((mask & routes.encoderMasks[e]!) === 0) continue;
      const enc = encoders[e]!;
      encoded[e] = enc.encode(event);
      if (enc.problems.counts.size > 0) countEncodeProblems(routes, e, mask, counts);
    }
  } catch (e) {
    FrameCounts.add(counts.unparseable, 'event_unserializable');
    return e instanceof Error ? e : new Error(String(e));
  }
  return mask;
}
