/**
 * What the bulk outputs (elasticsearch, splunk_hec) share: a batch cut into requests of at
 * most `maxBytes` (a record larger than that goes alone), each request's per-record
 * outcome gathered in one Outcome, and the Outcome turned into the runner's SendResult
 * (src/outputs/types.ts: retry these, dead-letter those).
 */
import { DELIVERED, type SendResult } from '../types.js';

export interface Outcome {
  /** Indexes (in the batch) of records to send again. */
  retry: number[];
  /** Records refused for good, with the reason code and the receiver's text. */
  rejected: { index: number; reason: string; error: string }[];
  errors: string[];
  retryAfterMs: number | undefined;
}

export function newOutcome(): Outcome {
  return { retry: [], rejected: [], errors: [], retryAfterMs: undefined };
}

/** Sends `pieces` (one per record) in requests of at most `maxBytes`, in order. */
export async function sendInRequests(
  pieces: readonly Buffer[],
  maxBytes: number,
  sendRange: (start: number, end: number) => Promise<void>,
): Promise<void> {
  let start = 0;
  while (start < pieces.length) {
    let end = start;
    let bytes = 0;
    while (end < pieces.length && (end === start || bytes + pieces[end]!.length <= maxBytes)) bytes += pieces[end++]!.length;
    await sendRange(start, end);
    start = end;
  }
}

/** The SendResult of a batch of `count` records whose requests gave `out`. */
export function resultOf(out: Outcome, count: number): SendResult {
  if (out.retry.length === 0 && out.rejected.length === 0) return DELIVERED;
  const error = out.errors.slice(0, 3).join('; ') + (out.errors.length > 3 ? `; and ${out.errors.length - 3} more` : '');
  const ra = out.retryAfterMs !== undefined ? { retryAfterMs: out.retryAfterMs } : {};
  if (out.rejected.length === 0 && out.retry.length === count) return { status: 'retry', error, ...ra };
  return { status: 'partial', error, retry: out.retry, rejected: out.rejected, ...ra };
}
