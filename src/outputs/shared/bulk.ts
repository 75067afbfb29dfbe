/**
 * What the outputs that send a batch in requests (elasticsearch, splunk_hec, http) share: a batch cut into requests of at
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

/** Records [start, end) are to be sent again: the receiver's error, and its Retry-After (the longest wins). */
export function retryRange(out: Outcome, start: number, end: number, error: string, retryAfterMs?: number): void {
  for (let i = start; i < end; i++) out.retry.push(i);
  out.errors.push(error);
  if (retryAfterMs !== undefined) out.retryAfterMs = Math.max(out.retryAfterMs ?? 0, retryAfterMs);
}

/**
 * A request of records [start, end) was over the receiver's size limit (413): each half is
 * sent on its own (and split again on another 413, down to one record).
 */
export async function sendHalves(start: number, end: number, sendRange: (start: number, end: number) => Promise<void>): Promise<void> {
  const mid = start + Math.ceil((end - start) / 2);
  await sendRange(start, mid);
  await sendRange(mid, end);
}

/**
 * The SendResult of a batch of `count` records whose requests gave `out`. `redact` (the
 * transport's) goes over every text: they quote the receiver's answers, which may echo
 * the credential.
 */
export function resultOf(out: Outcome, count: number, redact: (text: string) => string): SendResult {
  if (out.retry.length === 0 && out.rejected.length === 0) return DELIVERED;
  const error = redact(out.errors.slice(0, 3).join('; ') + (out.errors.length > 3 ? `; and ${out.errors.length - 3} more` : ''));
  const ra = out.retryAfterMs !== undefined ? { retryAfterMs: out.retryAfterMs } : {};
  if (out.rejected.length === 0 && out.retry.length === count) return { status: 'retry', error, ...ra };
  const rejected = out.rejected.map((r) => ({ ...r, error: redact(r.error) }));
  return { status: 'partial', error, retry: out.retry, rejected, ...ra };
}
