/** Per-source state (source-state.ts): results applied in read order, frames gathered into shared job memory. */
import { expect, test } from 'vitest';
import { JobMemory, SourceState, copyFrames, frameOf, truncatedOf } from '../../src/pipeline/source-state.js';

test('results are applied in the order of their reads, whatever order they come back in', () => {
  const st = new SourceState();
  const seqs = [st.nextSeq++, st.nextSeq++, st.nextSeq++, st.nextSeq++];
  const applied: number[] = [];
  for (const s of [2, 0, 3, 1]) st.inOrder(seqs[s]!, () => applied.push(s));
  expect(applied).toEqual([0, 1, 2, 3]);
  expect(st.nextCommit).toBe(4);
});

test('a job holds copies of the gathered frames back to back in shared memory, with their offsets and truncation flags', () => {
  const st = new SourceState();
  const chunk = Buffer.from('one\ntwo\nthree');
  st.gather(chunk.subarray(0, 3), false);
  st.gather(chunk.subarray(4, 7), false);
  st.gather(chunk.subarray(8), true);
  expect(st.gathered).toBe(3);
  expect(st.bytes).toBe(11);
  const g = st.take();
  expect(st.gathered).toBe(0);
  expect(st.bytes).toBe(0);
  expect(g.memory).toBeInstanceOf(SharedArrayBuffer);
  expect(g.count).toBe(3);
  expect([...g.offsets]).toEqual([0, 3, 3, 6, 6, 11]);
  // What a worker reads: the memory, up to the last frame's end.
  const data = Buffer.from(g.memory, 0, g.offsets[5]);
  expect(data.toString()).toBe('onetwothree');
  expect(Array.from({ length: g.count }, (_, i) => frameOf(g, i).toString())).toEqual(['one', 'two', 'three']);
  expect([...g.flags]).toEqual([0, 0, 1]);
  expect(truncatedOf(g)).toEqual([false, false, true]);
  // Copies: the socket's chunk can be reused.
  chunk.fill(0x78);
  expect(data.toString()).toBe('onetwothree');
  // Copies of the frames outlive the memory's reuse.
  const kept = copyFrames(g);
  data.fill(0x79);
  expect(kept.map(String)).toEqual(['one', 'two', 'three']);
});

test('many frames and frames past a chunk grow the job; every frame keeps its bytes and flag', () => {
  const memory = new JobMemory(4);
  const st = new SourceState(memory);
  const frames: Buffer[] = [];
  // 2,000 small frames (past the first offsets table), then frames that together pass a chunk.
  for (let i = 0; i < 2000; i++) frames.push(Buffer.from(`frame ${i} ${'x'.repeat(i % 37)}`));
  for (let i = 0; i < 5; i++) frames.push(Buffer.alloc(100_000, 0x61 + i));
  frames.forEach((f, i) => st.gather(f, i % 7 === 0));
  const g = st.take();
  expect(g.count).toBe(frames.length);
  expect(g.memory.byteLength).toBeGreaterThan(JobMemory.CHUNK_BYTES);
  for (let i = 0; i < frames.length; i++) {
    expect(frameOf(g, i).equals(frames[i]!)).toBe(true);
    expect(g.flags[i]).toBe(i % 7 === 0 ? 1 : 0);
  }
  // The chunk that became too small went back for reuse; the larger one is not kept.
  expect(memory.kept).toBe(1);
  memory.release(g.memory);
  expect(memory.kept).toBe(1);
});

test('job memory is reused once released, up to the number kept; a later job does not see an earlier one\'s frames', () => {
  const memory = new JobMemory(2);
  const st = new SourceState(memory);
  st.gather(Buffer.from('first job'), false);
  const a = st.take();
  st.gather(Buffer.from('second'), false);
  const b = st.take();
  expect(b.memory).not.toBe(a.memory);
  memory.release(a.memory);
  memory.release(b.memory);
  memory.release(new SharedArrayBuffer(JobMemory.CHUNK_BYTES));
  expect(memory.kept).toBe(2);
  st.gather(Buffer.from('third'), false);
  const c = st.take();
  expect([a.memory, b.memory]).toContain(c.memory);
  expect(memory.kept).toBe(1);
  expect(c.count).toBe(1);
  expect(frameOf(c, 0).toString()).toBe('third');
  // Nothing gathered: an empty job, no chunk taken.
  const empty = st.take();
  expect(empty.count).toBe(0);
  expect(empty.bytes.length).toBe(0);
  expect(memory.kept).toBe(1);
});
