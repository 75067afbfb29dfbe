/**
 * The bound on the warnings an event lists. One hostile frame can carry a warning every
 * few bytes (`msg= a= a= a=...` is a `cef_duplicate_key` per 3 bytes: 21,000 in 64 KiB),
 * which made events 30 times larger than their frame and flooded the queues. An event
 * lists at most MAX_WARNINGS warnings; the rest are only counted, per code, in ONE last
 * warning `warnings_left_out` (docs/event-format.md). Decoding and the normalizer share
 * the bound: the normalizer's warnings join the same list (src/pipeline/normalize.ts).
 */
import type { Problem } from '../errors.js';

export const MAX_WARNINGS = 32;

/** Per-code counts of the warnings left out, for lists that reached the bound. */
const leftOut = new WeakMap<Problem[], Map<string, number>>();

/**
 * Appends `p` to `list` unless the list is full: then it is counted for the summary
 * (appended once, its message written by finishWarnings).
 */
export function pushWarning(list: Problem[], p: Problem): void {
  if (list.length < MAX_WARNINGS) {
    list.push(p);
    return;
  }
  let t = leftOut.get(list);
  if (t === undefined) {
    t = new Map();
    leftOut.set(list, t);
    list.push({ code: 'warnings_left_out', message: '' });
  }
  t.set(p.code, (t.get(p.code) ?? 0) + 1);
}

/** Writes the summary's message (call after the last pushWarning on `list`). */
export function finishWarnings(list: Problem[]): void {
  if (list.length <= MAX_WARNINGS) return;
  const t = leftOut.get(list);
  if (t === undefined) return;
  let total = 0;
  let parts = '';
  for (const [code, n] of t) {
    total += n;
    parts += `${parts === '' ? '' : ', '}${code} ${n}`;
  }
  list[MAX_WARNINGS] = { code: 'warnings_left_out', message: `${total} more warnings not listed (${parts})` };
}
