/**
 * The shutdown deadline as the output runner applies it (src/pipeline/output-runner.ts):
 * the batch is sent with an AbortSignal that is aborted right after, while the send waits
 * on a receiver that does not answer. An output that honours the signal reports `retry`
 * with the abort's reason at once.
 */
import { expect } from 'vitest';
import type { Batch, Output, SendResult } from '../../src/outputs/types.js';

/** Sends `batch`, aborts on the next turn of the event loop, and checks the abort was the outcome. */
export async function expectSendAborted(o: Output, batch: Batch): Promise<SendResult> {
  const ac = new AbortController();
  const sending = o.send(batch, ac.signal);
  setImmediate(() => ac.abort());
  const r = await sending;
  expect(r.status).toBe('retry');
  expect((r as { error: string }).error).toMatch(/aborted at the shutdown deadline/);
  return r;
}
