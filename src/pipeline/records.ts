/**
 * Events that do not come from frames (a SQL row, built by its source): the same steps as
 * processFrame in ingest.ts after the decode (normalizers, counts, taps, route filters,
 * JSON), so a row's event is routed and counted like a frame's. Keep the two in step.
 */
import type { CefdEvent, EventOrigin } from '../event.js';
import { isCode } from '../errors.js';
import { FrameCounts, type IngestEnv } from './ingest.js';
import { normalizeEvent, type Normalizer } from './normalize.js';

/** The JSON of each event per output (index = output), and dead letters. */
export interface RecordsResult {
  pending: string[][];
  dead: string[];
  counts: FrameCounts;
}

/**
 * `deadOf(event, reason, message)` builds the dead-letter record of an event that cannot
 * be written as JSON (only a normalizer can cause that).
 */
export function processRecords(
  events: readonly CefdEvent[],
  origin: EventOrigin,
  normalizers: readonly Normalizer[],
  env: IngestEnv,
  outputs: number,
  deadOf: (event: CefdEvent, reason: string, message: string) => string,
): RecordsResult {
  const counts = new FrameCounts();
  const pending: string[][] = [];
  for (let i = 0; i < outputs; i++) pending.push([]);
  const dead: string[] = [];
  for (const event of events) {
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
    counts.lastEventMs = Date.now();
    if (event.errors !== undefined) for (const e of event.errors) FrameCounts.add(counts.errors, isCode(e.code) ? e.code : 'other');
    if (event.warnings !== undefined) for (const w of event.warnings) FrameCounts.add(counts.warnings, isCode(w.code) ? w.code : 'other');
    const taps = env.taps;
    if (taps !== undefined) {
      for (const tap of taps) {
        try {
          tap(event, origin);
        } catch (e) {
          env.onTapError?.(e);
        }
      }
    }
    let json: string | undefined;
    for (let i = 0; i < outputs; i++) {
      const f = env.filters[i];
      if (f !== undefined && !f.test(event)) continue;
      if (json === undefined) {
        try {
          json = JSON.stringify(event);
        } catch (e) {
          FrameCounts.add(counts.unparseable, 'event_unserializable');
          dead.push(deadOf(event, 'event_unserializable', `the event cannot be written as JSON: ${(e as Error).message}`));
          break;
        }
      }
      pending[i]!.push(json);
    }
  }
  return { pending, dead, counts };
}
