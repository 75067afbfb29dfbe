/**
 * Events that do not come from frames (a SQL row, built by its source): the same steps as
 * a frame's event after the decode (ingest.ts processEvent: normalizers, counts, the KSC
 * watch, taps, route filters, one encoding per encoder in use), so a row's event is
 * routed, encoded and counted like a frame's.
 */
import type { CefdEvent, EventOrigin } from '../event.js';
import { FrameCounts, processEvent, type IngestEnv } from './ingest.js';
import type { Normalizer } from './normalize.js';

/** The record of each event per output (index = output), and dead letters. */
export interface RecordsResult {
  pending: string[][];
  dead: string[];
  counts: FrameCounts;
}

/**
 * `deadOf(event, reason, message)` builds the dead-letter record of an event that cannot
 * be encoded (only a normalizer can cause that).
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
  const encoded: string[] = [];
  const encoderOf = env.routes.encoderOf;
  for (const event of events) {
    const m = processEvent(event, origin, normalizers, env, counts, encoded, Date.now());
    if (typeof m !== 'number') {
      dead.push(deadOf(event, 'event_unserializable', `the event cannot be encoded: ${m.message}`));
      continue;
    }
    if (m === 0) continue;
    for (let i = 0; i < outputs; i++) if (i >= 32 || (m >>> i) & 1) pending[i]!.push(encoded[encoderOf[i]!]!);
  }
  return { pending, dead, counts };
}
