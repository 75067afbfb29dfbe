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

test('many frames and frames past the largest size grow the job; every frame keeps its bytes and flag', () => {
  const memory = new JobMemory();
  const st = new SourceState(memory);
  const frames: Buffer[] = [];
  // 2,000 small frames (past the first offsets table), then frames that together pass the largest kept size.
  for (let i = 0; i < 2000; i++) frames.push(Buffer.from(`frame ${i} ${'x'.repeat(i % 37)}`));
  for (let i = 0; i < 5; i++) frames.push(Buffer.alloc(100_000, 0x61 + i));
  frames.forEach((f, i) => st.gather(f, i % 7 === 0));
  const g = st.take();
  expect(g.count).toBe(frames.length);
  expect(g.memory.byteLength).toBeGreaterThan(JobMemory.MAX_KEPT_BYTES);
  for (let i = 0; i < frames.length; i++) {
    expect(frameOf(g, i).equals(frames[i]!)).toBe(true);
    expect(g.flags[i]).toBe(i % 7 === 0 ? 1 : 0);
  }
  // The buffers that became too small went back for reuse (from 4 KiB, doubled or more,
  // up to 256 KiB: 4+8+16+32+64+256 KiB, a 100 KB frame skipping 128); the one larger than
  // MAX_KEPT_BYTES is not kept.
  expect(memory.keptBytes).toBe(380 * 1024);
  memory.release(g.memory);
  expect(memory.keptBytes).toBe(380 * 1024);
});

test('a light source takes a small buffer; a busy one starts its next job at the size of its last (at most MAX_KEPT_BYTES)', () => {
  const st = new SourceState(new JobMemory());
  st.gather(Buffer.alloc(300), false);
  expect(st.take().memory.byteLength).toBe(JobMemory.MIN_BYTES);
  for (let i = 0; i < 300; i++) st.gather(Buffer.alloc(450), false);
  expect(st.take().memory.byteLength).toBe(256 * 1024);
  st.gather(Buffer.alloc(300), false);
  expect(st.take().memory.byteLength).toBe(256 * 1024);
  // A job with a frame of a megabyte: the next one does not start that large.
  st.gather(Buffer.alloc(1_000_000), false);
  expect(st.take().memory.byteLength).toBe(1024 * 1024);
  st.gather(Buffer.alloc(300), false);
  expect(st.take().memory.byteLength).toBe(JobMemory.MAX_KEPT_BYTES);
});

test('job memory is reused once released, up to the bytes kept; a later job does not see an earlier one\'s frames', () => {
  const memory = new JobMemory(2 * JobMemory.MIN_BYTES);
  const st = new SourceState(memory);
  st.gather(Buffer.from('first job'), false);
  const a = st.take();
  st.gather(Buffer.from('second'), false);
  const b = st.take();
  expect(b.memory).not.toBe(a.memory);
  memory.release(a.memory);
  memory.release(b.memory);
  memory.release(new SharedArrayBuffer(JobMemory.MIN_BYTES)); // past keepBytes: not kept
  memory.release(new SharedArrayBuffer(5000)); // not a size it gives: not kept
  expect(memory.keptBytes).toBe(2 * JobMemory.MIN_BYTES);
  st.gather(Buffer.from('third'), false);
  const c = st.take();
  expect([a.memory, b.memory]).toContain(c.memory);
  expect(memory.keptBytes).toBe(JobMemory.MIN_BYTES);
  expect(c.count).toBe(1);
  expect(frameOf(c, 0).toString()).toBe('third');
  // Nothing gathered: an empty job, no buffer taken.
  const empty = st.take();
  expect(empty.count).toBe(0);
  expect(empty.bytes.length).toBe(0);
  expect(memory.keptBytes).toBe(JobMemory.MIN_BYTES);
});

test('kept memory at its bound: smaller buffers make room for a larger one, never the reverse', () => {
  const memory = new JobMemory(64 * 1024);
  const small = Array.from({ length: 16 }, () => memory.get(4096));
  for (const b of small) memory.release(b);
  expect(memory.keptBytes).toBe(64 * 1024);
  // A 32 KiB buffer takes the room of eight 4 KiB ones.
  memory.release(new SharedArrayBuffer(32 * 1024));
  expect(memory.keptBytes).toBe(64 * 1024);
  expect(memory.get(32 * 1024).byteLength).toBe(32 * 1024);
  expect(memory.keptBytes).toBe(32 * 1024);
  // The 4 KiB ones left are the eight not evicted; a 4 KiB buffer does not evict a larger one.
  memory.release(new SharedArrayBuffer(32 * 1024));
  expect(memory.keptBytes).toBe(64 * 1024);
  memory.release(new SharedArrayBuffer(4096));
  expect(memory.keptBytes).toBe(64 * 1024);
  // Larger than the bound: not kept, nothing evicted.
  memory.release(new SharedArrayBuffer(128 * 1024));
  expect(memory.keptBytes).toBe(64 * 1024);
});

test('a job\'s offsets and flags are exact-sized (what the worker is sent), and the next job\'s are its own', () => {
  const st = new SourceState(new JobMemory());
  for (let job = 1; job <= 3; job++) {
    const n = job === 2 ? 40 : 1000;
    for (let i = 0; i < n; i++) st.gather(Buffer.from(`j${job} f${i}`), i === n - 1);
    const g = st.take();
    expect(g.offsets.buffer.byteLength).toBe(8 * n);
    expect(g.flags.buffer.byteLength).toBe(n);
    expect(frameOf(g, n - 1).toString()).toBe(`j${job} f${n - 1}`);
    expect(g.flags[n - 1]).toBe(1);
    expect(g.flags[0]).toBe(0);
  }
});
