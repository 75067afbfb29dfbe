/**
 * The disk buffer: append, read back in order, acknowledge, replay after a restart or a
 * crash, segment roll-over and deletion, corruption and truncation, write errors.
 */
import fs from 'node:fs';
import { join } from 'node:path';
import { execFileSync } from 'node:child_process';
import fc from 'fast-check';
import { afterEach, describe, expect, test, vi } from 'vitest';
import { DiskQueue, type DiskQueueOptions } from '../../src/buffer/disk-queue.js';
import { StringBatch } from '../../src/buffer/queue.js';
import { tempDir, waitFor } from '../helpers/daemon.js';

const open: DiskQueue[] = [];
afterEach(async () => {
  for (const q of open.splice(0)) await q.close();
});

function openQ(dir: string, extra: Partial<DiskQueueOptions> = {}): { q: DiskQueue; corrupt: number[]; errors: string[] } {
  const corrupt: number[] = [];
  const errors: string[] = [];
  const q = DiskQueue.open({
    dir,
    maxBytes: 1024 * 1024,
    fsync: 'never',
    fsyncIntervalMs: 1000,
    onCorrupt: (b) => corrupt.push(b),
    onWriteError: (e) => errors.push(e),
    ...extra,
  });
  open.push(q);
  return { q, corrupt, errors };
}

/** Reads everything: peek/ack in batches of `batch`. */
function drain(q: DiskQueue, batch = 7): string[] {
  const out: string[] = [];
  for (;;) {
    const b = q.peek(batch);
    if (b.length === 0) return out;
    out.push(...b);
    q.ack(b.length);
  }
}

const rec = (i: number) => JSON.stringify({ id: `e-${i}`, msg: 'Задача x'.repeat(1 + (i % 5)) });

/**
 * Makes the segment writes (`writevSync`) fail with ENOSPC until the returned function is
 * called, as a full file system does; the spill file (written with `writeSync`) still works.
 * What the buffer holds in memory comes from such errors only.
 */
function failSegmentWrites(): () => void {
  const spy = vi.spyOn(fs, 'writevSync').mockImplementation(() => {
    throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' });
  });
  return () => spy.mockRestore();
}

describe('DiskQueue', () => {
  test('records come back in order, once, across blocks and segments; delivered segments are deleted', async () => {
    const dir = tempDir();
    const { q } = openQ(dir, { segmentBytes: 4096 });
    const all: string[] = [];
    for (let b = 0; b < 50; b++) {
      const block = Array.from({ length: 1 + (b % 9) }, (_, k) => rec(all.length + k));
      all.push(...block);
      q.append(block);
    }
    expect(q.length).toBe(all.length);
    expect(fs.readdirSync(dir).filter((f) => f.endsWith('.seg')).length).toBeGreaterThan(3);
    expect(drain(q)).toEqual(all);
    expect(q.length).toBe(0);
    await new Promise((r) => setTimeout(r, 50));
    expect(fs.readdirSync(dir).filter((f) => f.endsWith('.seg')).length).toBe(1);
  });

  test('a retried batch is the same batch (peek does not consume)', () => {
    const { q } = openQ(tempDir());
    q.append(['a', 'b', 'c']);
    expect(q.peek(2)).toEqual(['a', 'b']);
    expect(q.peek(2)).toEqual(['a', 'b']);
    q.ack(2);
    expect(q.peek(5)).toEqual(['c']);
  });

  test('after a restart, undelivered records are replayed in order, including a partly delivered block', async () => {
    const dir = tempDir();
    const a = openQ(dir);
    const all = Array.from({ length: 100 }, (_, i) => rec(i));
    for (let i = 0; i < 100; i += 10) a.q.append(all.slice(i, i + 10));
    a.q.peek(25);
    a.q.ack(25); // ends in the middle of the third block
    await a.q.close();
    open.splice(open.indexOf(a.q), 1);
    const b = openQ(dir);
    expect(b.q.replayed).toBe(75);
    expect(b.q.length).toBe(75);
    b.q.append([rec(100)]);
    expect(drain(b.q, 13)).toEqual([...all.slice(25), rec(100)]);
  });

  test('a crash (no close) delivers again what was delivered since the last ack write: at least once', () => {
    const dir = tempDir();
    const a = openQ(dir);
    const all = Array.from({ length: 30 }, (_, i) => rec(i));
    a.q.append(all);
    a.q.peek(30);
    a.q.ack(30);
    // No close: the ack file is written at most every 200 ms, so it may be missing.
    open.splice(open.indexOf(a.q), 1);
    const b = openQ(dir);
    const again = drain(b.q);
    expect(all.slice(all.length - again.length)).toEqual(again);
  });

  test('a truncated last block (crash mid-write) is skipped and counted; the rest is read', async () => {
    const dir = tempDir();
    const a = openQ(dir);
    a.q.append(['one', 'two']);
    a.q.append(['three', 'four']);
    await a.q.close();
    open.splice(open.indexOf(a.q), 1);
    const seg = fs.readdirSync(dir).filter((f) => f.endsWith('.seg')).sort()[0]!;
    const p = join(dir, seg);
    fs.truncateSync(p, fs.statSync(p).size - 3);
    const b = openQ(dir);
    expect(b.q.length).toBe(2);
    expect(b.corrupt.length).toBe(1);
    b.q.append(['five']);
    expect(drain(b.q)).toEqual(['one', 'two', 'five']);
  });

  test('a corrupted block in the middle is skipped (counted); reading resynchronizes at the next block', async () => {
    const dir = tempDir();
    const a = openQ(dir);
    a.q.append(['a1', 'a2']);
    a.q.append(['b1-xxxxxxxxxxxxxxxx', 'b2']);
    a.q.append(['c1']);
    await a.q.close();
    open.splice(open.indexOf(a.q), 1);
    const seg = join(dir, fs.readdirSync(dir).filter((f) => f.endsWith('.seg')).sort()[0]!);
    const buf = fs.readFileSync(seg);
    const i = buf.indexOf('b1-xxxx');
    buf[i + 5] ^= 0xff; // flip a byte inside block b: its CRC fails
    fs.writeFileSync(seg, buf);
    const b = openQ(dir);
    expect(b.corrupt).toHaveLength(1);
    expect(b.q.length).toBe(3);
    expect(drain(b.q)).toEqual(['a1', 'a2', 'c1']);
  });

  test('a damaged block at the acknowledged position costs only its own records: the next blocks, and appends after the restart, come whole', async () => {
    for (const damage of ['flip', 'cut'] as const) {
      const dir = tempDir();
      const a = openQ(dir);
      a.q.append(['a1', 'a2', 'a3']);
      if (damage === 'flip') a.q.append(['b1', 'b2', 'b3']);
      a.q.peek(2);
      a.q.ack(2); // the acknowledged position: block a, record 2
      await a.q.close();
      open.splice(open.indexOf(a.q), 1);
      const seg = join(dir, fs.readdirSync(dir).filter((f) => f.endsWith('.seg')).sort()[0]!);
      if (damage === 'flip') {
        const buf = fs.readFileSync(seg);
        buf[buf.indexOf('a2')] ^= 1; // block a's CRC fails
        fs.writeFileSync(seg, buf);
      } else {
        fs.truncateSync(seg, 10); // block a torn
      }
      const b = openQ(dir);
      b.q.append(['new1', 'new2', 'new3']);
      const expected = damage === 'flip' ? ['b1', 'b2', 'b3', 'new1', 'new2', 'new3'] : ['new1', 'new2', 'new3'];
      expect(drain(b.q), damage).toEqual(expected);
      expect(b.corrupt.length, damage).toBe(1);
    }
  });

  test('a block whose record count was damaged (the CRC covers the body only) is corrupt: skipped and counted, never read with a wrong count', async () => {
    for (const count of [1, 0, 5]) {
      const dir = tempDir();
      const a = openQ(dir);
      a.q.append(['x1', 'x2', 'x3']);
      a.q.append(['y1']);
      await a.q.close();
      open.splice(open.indexOf(a.q), 1);
      const seg = join(dir, fs.readdirSync(dir).filter((f) => f.endsWith('.seg')).sort()[0]!);
      const buf = fs.readFileSync(seg);
      expect(buf.readUInt32LE(8)).toBe(3); // the first block's count field
      buf.writeUInt32LE(count, 8);
      fs.writeFileSync(seg, buf);
      const b = openQ(dir);
      const got = drain(b.q);
      expect(got, `count ${count}`).toEqual(['y1']);
      expect(b.corrupt.length, `count ${count}`).toBe(1);
      expect(b.q.length).toBe(0);
    }
  });

  test('random garbage in a segment never throws; valid blocks around it are read', async () => {
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ minLength: 1, maxLength: 3000 }), fc.nat(), async (garbage, at) => {
        const dir = tempDir();
        const a = openQ(dir);
        a.q.append(['first']);
        await a.q.close();
        open.splice(open.indexOf(a.q), 1);
        const seg = join(dir, fs.readdirSync(dir).filter((f) => f.endsWith('.seg')).sort()[0]!);
        const orig = fs.readFileSync(seg);
        fs.writeFileSync(seg, Buffer.concat([orig, Buffer.from(garbage)]));
        const b = openQ(dir);
        b.q.append(['last']);
        const got = drain(b.q);
        expect(got[0]).toBe('first');
        expect(got[got.length - 1]).toBe('last');
        void at;
        await b.q.close();
        open.splice(open.indexOf(b.q), 1);
      }),
      { numRuns: 60 },
    );
  });

  test('fill: bytes against max_size', () => {
    const { q } = openQ(tempDir(), { maxBytes: 64 * 1024, segmentBytes: 64 * 1024 });
    expect(q.fill()).toBe(0);
    q.append(Array.from({ length: 100 }, () => 'x'.repeat(1000)));
    expect(q.fill()).toBeGreaterThan(1);
  });

  /** Bytes of the segment files in `dir`. */
  const segBytes = (dir: string): number => fs.readdirSync(dir).filter((f) => f.endsWith('.seg')).reduce((b, f) => b + fs.statSync(join(dir, f)).size, 0);

  test('full (when_full block): appends past max_size go to disk, none waits in memory; a crash keeps every one; the hard limit comes overrunBytes past max_size', async () => {
    const root = tempDir();
    const dir = join(root, 'buf');
    const max = 64 * 1024;
    const opts = { maxBytes: max, segmentBytes: 16 * 1024, spillFile: join(root, 'spill', 'out.ndjson') };
    const { q } = openQ(dir, opts);
    // About 76 KiB: past max_size, short of the hard limit.
    const all = Array.from({ length: 150 }, (_, i) => `${i}:${'z'.repeat(500)}`);
    for (let i = 0; i < all.length; i += 10) q.append(all.slice(i, i + 10));
    // Full from max_size on (the owner pauses the sources), and what came after is on disk.
    expect(q.fill()).toBeGreaterThanOrEqual(1);
    expect(q.overflowLength).toBe(0);
    expect(segBytes(dir)).toBeGreaterThan(max);
    expect(q.takes(10)).toBe(false);
    // A crash now (no close): the files as they are hold every record, in order.
    const crashed = tempDir();
    fs.cpSync(dir, crashed, { recursive: true });
    expect(drain(openQ(crashed, opts).q, 50)).toEqual(all);
    // The hard limit (sources that cannot pause are refused): overrunBytes past max_size.
    expect(q.overrunBytes).toBe(max);
    expect(q.fill()).toBeLessThan(2);
    while (segBytes(dir) < 2 * max) q.append([`more:${'z'.repeat(500)}`]);
    expect(q.fill()).toBeGreaterThanOrEqual(2);
    // Delivered: below half full the owner resumes.
    drain(q, 50);
    expect(q.fill()).toBeLessThanOrEqual(0.5);
    // Nothing waited in memory: a stop keeps no spill file.
    await q.close();
    open.splice(open.indexOf(q), 1);
    expect(fs.existsSync(opts.spillFile)).toBe(false);
  });

  test('records held in memory after a write error: close keeps them in the spill file (0600); the next open hands them out after the disk, before new appends, within max_size, and deletes the file', async () => {
    const root = tempDir();
    const dir = join(root, 'buf');
    const spillFile = join(root, 'spill', 'out.ndjson');
    const spilled: [number, string, string | undefined][] = [];
    const max = 64 * 1024;
    const opts = { maxBytes: max, segmentBytes: 16 * 1024, spillFile, onSpilled: (n: number, p: string, e?: string) => spilled.push([n, p, e]) };
    let { q, errors } = openQ(dir, opts);
    const all = Array.from({ length: 400 }, (_, i) => `${i}:${'z'.repeat(500)}`);
    for (let i = 0; i < 100; i += 10) q.append(all.slice(i, i + 10));
    const restore = failSegmentWrites();
    try {
      for (let i = 100; i < all.length; i += 10) q.append(all.slice(i, i + 10));
      expect(errors[0]).toMatch(/ENOSPC/);
      expect(q.overflowLength).toBe(300);
      expect(q.fill()).toBeGreaterThanOrEqual(1);
      await q.close();
    } finally {
      restore();
    }
    open.splice(open.indexOf(q), 1);
    expect(spilled).toEqual([[300, spillFile, undefined]]);
    expect(fs.statSync(spillFile).mode & 0o777).toBe(0o600);
    expect(fs.readFileSync(spillFile, 'utf8')).toBe(`${all.slice(100).join('\n')}\n`);

    ({ q, errors } = openQ(dir, opts));
    expect(q.replayed).toBe(all.length);
    expect(q.length).toBe(all.length);
    q.append(['new']);
    // Delivered in batches: space frees, the spilled records move to disk, within the bound.
    const got: string[] = [];
    for (;;) {
      const b = q.peek(25);
      if (b.length === 0) break;
      got.push(...b);
      q.ack(b.length);
      expect(segBytes(dir)).toBeLessThanOrEqual(max);
    }
    expect(got).toEqual([...all, 'new']);
    expect(fs.existsSync(spillFile)).toBe(false);
  });

  test('a crash after the spill file was taken back: its records come again at the next open (at least once), none lost', () => {
    const root = tempDir();
    const dir = join(root, 'buf');
    const spillFile = join(root, 'out.ndjson');
    const recs = Array.from({ length: 100 }, (_, i) => `${i}:${'s'.repeat(2000)}`);
    fs.writeFileSync(spillFile, `${recs.join('\n')}\n`, { mode: 0o600 });
    const opts = { spillFile, maxBytes: 64 * 1024, segmentBytes: 16 * 1024 };
    const a = openQ(dir, opts).q;
    // Taken into memory, the part that fits moved to disk; the file stays until all of it has left memory.
    expect(a.length).toBe(100);
    expect(a.overflowLength).toBeGreaterThan(0);
    expect(a.overflowLength).toBeLessThan(100);
    expect(segBytes(dir)).toBeLessThanOrEqual(64 * 1024);
    expect(fs.existsSync(spillFile)).toBe(true);
    // No close (a crash): the next open finds part of them on disk and all of them in the file.
    const b = openQ(dir, opts).q;
    const got = drain(b);
    expect(new Set(got)).toEqual(new Set(recs));
    expect(got.slice(-100)).toEqual(recs);
    expect(fs.existsSync(spillFile)).toBe(false);
  });

  test('a spill file of 150,000 records opens (no spread of the whole file into one call) and replays in order', () => {
    const root = tempDir();
    const spillFile = join(root, 'out.ndjson');
    const recs = Array.from({ length: 150_000 }, (_, i) => JSON.stringify({ i }));
    fs.writeFileSync(spillFile, `${recs.join('\n')}\n`, { mode: 0o600 });
    const { q } = openQ(join(root, 'buf'), { spillFile, maxBytes: 8 * 1024 * 1024 });
    expect(q.length).toBe(150_000);
    expect(drain(q, 5000)).toEqual(recs);
    expect(fs.existsSync(spillFile)).toBe(false);
  });

  test('records handed out from memory while later ones wait: no later record reaches the disk before them (order at close, no hole at a crash)', async () => {
    const root = tempDir();
    const dir = join(root, 'buf');
    const spillFile = join(root, 'out.ndjson');
    const opts = { maxBytes: 4096, segmentBytes: 1024, spillFile };
    const { q } = openQ(dir, opts);
    const recN = (i: number) => JSON.stringify({ i, pad: 'p'.repeat(40) });
    for (let i = 0; i < 30; i++) q.append([recN(i)]);
    // The disk fails for the rest: they wait in memory.
    const restore = failSegmentWrites();
    for (let i = 30; i < 100; i++) q.append([recN(i)]);
    // Delivered as a runner does (peek right after ack, no await) until a batch comes from memory.
    let b = q.peekBatch(10);
    while (!(b instanceof StringBatch)) {
      q.ack(b.count);
      b = q.peekBatch(10);
    }
    const inFlight = b.records.map((r) => (JSON.parse(r) as { i: number }).i);
    expect(inFlight.length).toBeGreaterThan(0);
    // Writes work again and the retry runs: later records must not go to disk yet.
    restore();
    q.flushOverflow();
    await new Promise((r) => setTimeout(r, 50));
    // A crash now: the files as they are.
    const crashed = tempDir();
    fs.cpSync(root, crashed, { recursive: true });
    const numbers = (rs: string[]) => rs.map((r) => (JSON.parse(r) as { i: number }).i);
    // A stop without the ack: everything from the batch in flight on, in order.
    await q.close();
    open.splice(open.indexOf(q), 1);
    const after = openQ(dir, opts).q;
    const got = numbers(drain(after));
    expect(got).toEqual(Array.from({ length: 100 - inFlight[0]! }, (_, k) => inFlight[0]! + k));
    // After the crash: what is on disk is a run without a hole (the memory part is lost).
    const c = openQ(join(crashed, 'buf'), { ...opts, spillFile: join(crashed, 'out.ndjson') }).q;
    // After the crash: the batch in flight was in memory only, so nothing after it may be
    // on disk (a hole); what is before it was delivered (some may come again: at least once).
    expect(numbers(drain(c)).filter((i) => i >= inFlight[0]!)).toEqual([]);
  });

  test('an append after close is not kept in memory: it goes to the spill file (reported) and the next open takes it back', async () => {
    const root = tempDir();
    const dir = join(root, 'buf');
    const spillFile = join(root, 'out.ndjson');
    const spilled: [number, string | undefined][] = [];
    const opts = { spillFile, onSpilled: (n: number, _p: string, e?: string) => spilled.push([n, e]) };
    const { q } = openQ(dir, opts);
    q.append(['a']);
    await q.close();
    open.splice(open.indexOf(q), 1);
    q.append(['b', 'c']);
    expect(q.overflowLength).toBe(0);
    expect(q.fill()).toBeLessThan(1);
    expect(spilled).toEqual([[2, undefined]]);
    expect(drain(openQ(dir, opts).q)).toEqual(['a', 'b', 'c']);
  });

  test('a large spill file is read a chunk at a time, never all of it into memory; a stop part-way keeps its order before later appends', async () => {
    const root = tempDir();
    const dir = join(root, 'buf');
    const spillFile = join(root, 'out.ndjson');
    const recs = Array.from({ length: 20_000 }, (_, i) => JSON.stringify({ i, pad: 'q'.repeat(80) }));
    fs.writeFileSync(spillFile, `${recs.join('\n')}\n`, { mode: 0o600 });
    const opts = { spillFile, maxBytes: 64 * 1024, segmentBytes: 16 * 1024 };
    const spillBytes = fs.statSync(spillFile).size;
    let { q } = openQ(dir, opts);
    expect(q.length).toBe(20_000);
    expect(q.fill()).toBeGreaterThanOrEqual(1);
    // cefd_buffer_bytes counts what waits in the spill file too (as `cefd buffers` does);
    // records held in memory count without their newline.
    expect(q.bytes).toBeGreaterThanOrEqual(spillBytes - q.overflowLength);
    expect(q.overflowLength).toBeLessThanOrEqual(1000);
    const got: string[] = [];
    while (got.length < 5000) {
      const b = q.peek(500);
      got.push(...b);
      q.ack(b.length);
      expect(q.overflowLength).toBeLessThanOrEqual(1000);
    }
    q.append(['new']);
    expect(q.length).toBe(20_000 - 5000 + 1);
    await q.close();
    open.splice(open.indexOf(q), 1);
    ({ q } = openQ(dir, opts));
    expect(q.overflowLength).toBeLessThanOrEqual(1000);
    got.push(...drain(q, 500));
    expect(got).toEqual([...recs, 'new']);
    expect(fs.existsSync(spillFile)).toBe(false);
  });

  test('onDisk() resolves once the records appended so far have left memory: to disk, or at close to the spill file', async () => {
    const root = tempDir();
    const opts = { maxBytes: 8192, segmentBytes: 2048, fsync: 'batch' as const, spillFile: join(root, 'out.ndjson') };
    const { q } = openQ(join(root, 'buf'), opts);
    let restore = failSegmentWrites();
    for (let i = 0; i < 100; i++) q.append([JSON.stringify({ i, pad: 'p'.repeat(60) })]);
    expect(q.overflowLength).toBeGreaterThan(0);
    let first = false;
    void q.onDisk().then(() => (first = true));
    await new Promise((r) => setTimeout(r, 20));
    expect(first).toBe(false);
    // Writes work again: the retry moves what is held to disk.
    restore();
    q.flushOverflow();
    expect(q.overflowLength).toBe(0);
    await waitFor(() => first, 30_000, 'onDisk() after the records went to disk');
    // Held again, then stopped: the spill file keeps them.
    restore = failSegmentWrites();
    q.append([JSON.stringify({ more: 'm'.repeat(60) })]);
    expect(q.overflowLength).toBeGreaterThan(0);
    let second = false;
    void q.onDisk().then(() => (second = true));
    try {
      await q.close();
    } finally {
      restore();
    }
    open.splice(open.indexOf(q), 1);
    await new Promise((r) => setImmediate(r));
    expect(second).toBe(true);
    expect(fs.existsSync(opts.spillFile)).toBe(true);
  });

  test('full with when_full drop_newest: an append that does not fit is dropped and reported, nothing held in memory', async () => {
    const root = tempDir();
    const dir = join(root, 'buf');
    const spillFile = join(root, 'out.ndjson');
    const dropped: number[] = [];
    const { q } = openQ(dir, { maxBytes: 64 * 1024, segmentBytes: 16 * 1024, whenFull: 'drop_newest', onDropped: (n) => dropped.push(n), spillFile });
    let kept = 0;
    for (let i = 0; i < 40; i++) q.append(Array.from({ length: 10 }, (_, k) => `${i * 10 + k}:${'d'.repeat(500)}`));
    kept = q.length;
    expect(q.overflowLength).toBe(0);
    expect(kept + dropped.reduce((a, b) => a + b, 0)).toBe(400);
    expect(dropped.length).toBeGreaterThan(0);
    expect(segBytes(dir)).toBeLessThanOrEqual(64 * 1024);
    await q.close();
    open.splice(open.indexOf(q), 1);
    expect(fs.existsSync(spillFile)).toBe(false);
  });

  test('an entry with a segment name that is no readable segment file (a folder, a dangling link) is skipped and reported; the rest is read', () => {
    const dir = tempDir();
    const { q } = openQ(dir, { segmentBytes: 64 * 1024 });
    q.append(['a', 'b']);
    void q.close();
    open.splice(open.indexOf(q), 1);
    const [seg] = fs.readdirSync(dir).filter((f) => f.endsWith('.seg'));
    // Names that sort after the real segment, as later segments would.
    const later = (n: number) => join(dir, `${'0'.repeat(seg!.length - 4 - String(n).length)}${n}.seg`);
    fs.mkdirSync(later(900));
    fs.symlinkSync(join(dir, 'gone'), later(901));
    const { q: again, corrupt } = openQ(dir);
    expect(corrupt).toEqual([0, 0]);
    again.append(['c']);
    expect(drain(again)).toEqual(['a', 'b', 'c']);
  });

  test('a segment file deleted while the buffer is open: its events are reported lost, the rest is delivered, the output is not stuck', () => {
    const dir = tempDir();
    const { q } = openQ(dir, { segmentBytes: 64 * 1024, maxBytes: 8 * 1024 * 1024 });
    const all = Array.from({ length: 600 }, (_, i) => `${i}:${'s'.repeat(500)}`);
    for (let i = 0; i < all.length; i += 20) q.append(all.slice(i, i + 20));
    void q.close();
    open.splice(open.indexOf(q), 1);
    // Opened again: nothing in the read cache, every block is read from its file.
    const { q: again, corrupt } = openQ(dir, { segmentBytes: 64 * 1024, maxBytes: 8 * 1024 * 1024 });
    const segs = fs.readdirSync(dir).filter((f) => f.endsWith('.seg')).sort();
    expect(segs.length).toBeGreaterThan(3);
    const gone = join(dir, segs[1]!);
    const goneBytes = fs.statSync(gone).size;
    fs.rmSync(gone);
    const got = drain(again, 50);
    expect(corrupt).toEqual([goneBytes]);
    // Every record of the other files, in order; the deleted file's records alone are missing.
    const n = (r: string) => Number(r.split(':')[0]);
    expect(got.length).toBeLessThan(all.length);
    expect(got).toEqual(all.filter((r) => got.includes(r)));
    const missing = all.map(n).filter((i) => !got.some((r) => n(r) === i));
    expect(missing.length).toBeGreaterThan(0);
    expect(missing[missing.length - 1]! - missing[0]!).toBe(missing.length - 1);
    expect(again.length).toBe(0);
    again.append(['after']);
    expect(drain(again)).toEqual(['after']);
  });

  test('the segment being written deleted, its blocks past the read cache: reported, and appends go to a new file', () => {
    const dir = tempDir();
    const { q, corrupt } = openQ(dir, { segmentBytes: 32 * 1024 * 1024, maxBytes: 64 * 1024 * 1024 });
    // 18 MiB in one segment: more than the 16 MiB of recent blocks kept in memory.
    const big = 'w'.repeat(64 * 1024);
    for (let i = 0; i < 288; i++) q.append([`${i}:${big}`]);
    const segs = fs.readdirSync(dir).filter((f) => f.endsWith('.seg'));
    expect(segs.length).toBe(1);
    fs.rmSync(join(dir, segs[0]!));
    const first = q.peek(10);
    expect(first).toEqual([]);
    expect(corrupt.length).toBe(1);
    expect(q.length).toBe(0);
    q.append(['later']);
    expect(fs.readdirSync(dir).filter((f) => f.endsWith('.seg')).length).toBe(1);
    expect(drain(q)).toEqual(['later']);
  });

  test('an unusable folder is an error at open', () => {
    const dir = tempDir();
    const file = join(dir, 'not-a-dir');
    fs.writeFileSync(file, 'x');
    expect(() => DiskQueue.open({ dir: join(file, 'sub'), maxBytes: 1 << 20, fsync: 'never', fsyncIntervalMs: 1000 })).toThrow();
  });
});

describe('DiskQueue on a full file system', () => {
  // A 256 KiB tmpfs (CI runs as root, which mount needs).
  test('ENOSPC: records are held in memory (no loss), reported, and written once space is back', async () => {
    const mnt = join(tempDir(), 'tiny');
    fs.mkdirSync(mnt);
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=256k', 'tmpfs', mnt], { stdio: 'pipe' });
    try {
      const { q, errors } = openQ(join(mnt, 'buf'), { maxBytes: 10 * 1024 * 1024 });
      const big = 'y'.repeat(2000);
      const all: string[] = [];
      for (let i = 0; i < 200; i++) {
        const r = `${i}:${big}`;
        all.push(r);
        q.append([r]);
      }
      expect(errors.length).toBe(1);
      expect(errors[0]).toMatch(/ENOSPC/);
      expect(q.writeError).not.toBeNull();
      expect(q.overflowLength).toBeGreaterThan(0);
      expect(q.fill()).toBeGreaterThanOrEqual(1);
      expect(q.length).toBe(200);
      // Deliver everything (disk part, then the memory part).
      expect(drain(q, 50)).toEqual(all);
      // Space is back (the delivered segments are gone): new records go to disk again.
      await new Promise((r) => setTimeout(r, 100));
      q.append(['after']);
      expect(q.writeError).toBeNull();
      expect(drain(q)).toEqual(['after']);
    } finally {
      for (const q of open.splice(0)) await q.close();
      execFileSync('umount', [mnt]);
    }
  });
});

describe('DiskQueue closed on a full file system', () => {
  // A 256 KiB tmpfs (CI runs as root, which mount needs).
  test('a write that fails in close() leaves no retry timer running', async () => {
    const mnt = join(tempDir(), 'tiny');
    fs.mkdirSync(mnt);
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=256k', 'tmpfs', mnt], { stdio: 'pipe' });
    const filler = join(mnt, 'filler');
    /** Fills the file system up (the filler grows until ENOSPC). */
    const fill = () => {
      const chunk = Buffer.alloc(4096, 1);
      try {
        for (;;) fs.appendFileSync(filler, chunk);
      } catch {
        // full
      }
    };
    const intervals = new Set<unknown>();
    try {
      fs.writeFileSync(filler, Buffer.alloc(200 * 1024, 1));
      // No spill file: close() writes what waits past max_size, into a full file system.
      const { q, errors } = openQ(join(mnt, 'buf'), { maxBytes: 64 * 1024, segmentBytes: 16 * 1024 });
      for (let i = 0; q.overflowLength < 20; i++) q.append([`${i}:${'y'.repeat(2000)}`]);
      expect(errors[0]).toMatch(/ENOSPC/);
      // Space back: what waits goes to disk (past max_size too); writes work again (the retry timer stops).
      fs.rmSync(filler);
      q.flushOverflow();
      expect(q.writeError).toBeNull();
      expect(q.overflowLength).toBe(0);
      // Full again, and more held in memory, for close() to write.
      fill();
      for (let i = 0; q.overflowLength < 5; i++) q.append([`again-${i}:${'y'.repeat(2000)}`]);
      const setI = globalThis.setInterval;
      const spy = vi.spyOn(globalThis, 'setInterval').mockImplementation(((fn: () => void, ms: number) => {
        const t = setI(fn, ms);
        intervals.add(t);
        return t;
      }) as typeof setInterval);
      const clearT = globalThis.clearTimeout;
      const clearI = globalThis.clearInterval;
      const spyT = vi.spyOn(globalThis, 'clearTimeout').mockImplementation(((t: NodeJS.Timeout) => (intervals.delete(t), clearT(t))) as typeof clearTimeout);
      const spyI = vi.spyOn(globalThis, 'clearInterval').mockImplementation(((t: NodeJS.Timeout) => (intervals.delete(t), clearI(t))) as typeof clearInterval);
      try {
        await q.close();
      } finally {
        spy.mockRestore();
        spyT.mockRestore();
        spyI.mockRestore();
      }
      open.splice(open.indexOf(q), 1);
      // The close-time write failed (ENOSPC)...
      expect(q.writeError).toMatch(/ENOSPC/);
      // ...and no timer it started is left running.
      expect(intervals.size).toBe(0);
    } finally {
      for (const t of intervals) clearInterval(t as NodeJS.Timeout);
      for (const q of open.splice(0)) await q.close();
      execFileSync('umount', [mnt]);
    }
  });
});

describe('DiskQueue batches', () => {
  test('records handed out from memory are never more than the batch asked for, when a smaller batch asks again (a runner with a smaller batch took the buffer over)', async () => {
    const dir = tempDir();
    // The first block is on disk; the next waits in memory (the disk failed), and is handed
    // out from there once the disk is read.
    const { q } = openQ(dir, { maxBytes: 64 });
    q.append(['first']);
    const restore = failSegmentWrites();
    q.append(Array.from({ length: 10 }, (_, i) => rec(i)));
    restore();
    expect(q.peek(10)).toEqual(['first']);
    q.ack(1);
    const all = q.peekBatch(10);
    expect(all).toBeInstanceOf(StringBatch);
    expect(all.count).toBe(10);
    const small = q.peekBatch(3);
    expect(small.count).toBe(3);
    expect(small.records).toEqual([rec(0), rec(1), rec(2)]);
    q.ack(3);
    expect(drain(q, 4)).toEqual(Array.from({ length: 7 }, (_, i) => rec(i + 3)));
  });

  test('peekBatch hands out NDJSON bytes, partial blocks included; strings on demand', () => {
    const { q } = openQ(tempDir());
    q.append(['{"a":1}', '{"b":"é"}', '{"c":3}']);
    q.appendNdjson(Buffer.from('{"d":4}\n{"e":5}\n'), 2);
    const b1 = q.peekBatch(2);
    expect(b1.count).toBe(2);
    expect(b1.ndjson?.toString()).toBe('{"a":1}\n{"b":"é"}\n');
    expect(q.peekBatch(2)).toBe(b1);
    q.ack(2);
    const b2 = q.peekBatch(10);
    expect(b2.ndjson?.toString()).toBe('{"c":3}\n{"d":4}\n{"e":5}\n');
    expect(b2.records).toEqual(['{"c":3}', '{"d":4}', '{"e":5}']);
    q.ack(3);
    expect(q.length).toBe(0);
  });

  test('property: any sequence of appends and partial acks keeps order and count, across a restart', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.tuple(fc.array(fc.string({ maxLength: 20 }).map((s) => JSON.stringify(s)), { minLength: 1, maxLength: 12 }), fc.nat({ max: 15 }), fc.boolean()), { maxLength: 25 }),
        fc.boolean(),
        async (ops, restart) => {
          const dir = tempDir();
          let { q } = openQ(dir, { segmentBytes: 512 });
          const want: string[] = [];
          const got: string[] = [];
          let i = 0;
          for (const [recs, take, asBytes] of ops) {
            if (asBytes) q.appendNdjson(Buffer.from(recs.map((r) => `${r}\n`).join('')), recs.length);
            else q.append(recs);
            want.push(...recs);
            const b = q.peekBatch(take + 1);
            got.push(...b.records);
            q.ack(b.count);
            if (restart && ++i % 7 === 0) {
              await q.close();
              open.splice(open.indexOf(q), 1);
              q = openQ(dir, { segmentBytes: 512 }).q;
            }
          }
          got.push(...drain(q, 3));
          expect(got).toEqual(want);
          await q.close();
          open.splice(open.indexOf(q), 1);
        },
      ),
      { numRuns: 150 },
    );
  });
});
