/** Per-source state (source-state.ts): results applied in read order, jobs packed from gathered frames. */
import { expect, test } from 'vitest';
import { SourceState, packJob } from '../../src/pipeline/source-state.js';

test('results are applied in the order of their reads, whatever order they come back in', () => {
  const st = new SourceState();
  const seqs = [st.nextSeq++, st.nextSeq++, st.nextSeq++, st.nextSeq++];
  const applied: number[] = [];
  for (const s of [2, 0, 3, 1]) st.inOrder(seqs[s]!, () => applied.push(s));
  expect(applied).toEqual([0, 1, 2, 3]);
  expect(st.nextCommit).toBe(4);
});

test('a job holds the gathered frames back to back, with their offsets and truncation flags', () => {
  const st = new SourceState();
  const chunk = Buffer.from('one\ntwo\nthree');
  st.gather(chunk.subarray(0, 3), false);
  st.gather(chunk.subarray(4, 7), false);
  st.gather(chunk.subarray(8), true);
  expect(st.gathered).toBe(3);
  expect(st.bytes).toBe(11);
  const job = packJob(st.take());
  expect(st.gathered).toBe(0);
  expect(st.bytes).toBe(0);
  const data = Buffer.from(job.data);
  const frames = Array.from({ length: job.offsets.length / 2 }, (_, i) => data.subarray(job.offsets[2 * i]!, job.offsets[2 * i + 1]!).toString());
  expect(frames).toEqual(['one', 'two', 'three']);
  expect([...job.flags]).toEqual([0, 0, 1]);
  // The job's bytes are a copy: the socket's chunk can be reused.
  chunk.fill(0x78);
  expect(data.toString()).toBe('onetwothree');
  expect(job.frames.map(String)).toEqual(['xxx', 'xxx', 'xxxxx']);
});
